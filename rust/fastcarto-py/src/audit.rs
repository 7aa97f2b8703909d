//! The dataset audit's issue types (`fastcarto_core::audit`): arrays in, per-example arrays and
//! summary numbers out, the GIL released around the engine. The `fastcarto._audit` modules
//! shape the results into cleanlab's columns and info.

use crate::args::{contiguous, dtype_error, parse};
use crate::errors::to_py;
use fastcarto_core::audit::near_duplicate::near_duplicates as core_near_duplicates;
use fastcarto_core::audit::neighbours::Graph;
use fastcarto_core::audit::non_iid::non_iid as core_non_iid;
use fastcarto_core::audit::outlier::{
    KnnParams, Metric, OodMethod, ProbParams, knn_outliers as core_knn_outliers, prob_outliers as core_prob_outliers,
};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

type F64Array<'py> = Bound<'py, PyArray1<f64>>;
type BoolArray<'py> = Bound<'py, PyArray1<bool>>;
type I64Array<'py> = Bound<'py, PyArray1<i64>>;

/// Outlier scores from a neighbour graph: `(scores, is_issue, threshold, issue_threshold,
/// scaling_factor)`.
#[pyfunction]
#[pyo3(signature = (distances, indices, *, threshold=None, t=1.0, scaling_factor=None, metric=None))]
pub(crate) fn knn_outliers<'py>(
    py: Python<'py>,
    distances: PyReadonlyArray2<'py, f32>,
    indices: PyReadonlyArray2<'py, i64>,
    threshold: Option<f64>,
    t: f64,
    scaling_factor: Option<f64>,
    metric: Option<&str>,
) -> PyResult<(F64Array<'py>, BoolArray<'py>, f64, f64, f64)> {
    let metric: Option<Metric> = metric.map(parse).transpose()?;
    let (d, i) = (distances.as_array(), indices.as_array());
    let params = KnnParams { threshold, t, scaling_factor, metric };
    let r = py.detach(|| core_knn_outliers(&Graph::new(d, i)?, &params)).map_err(to_py)?;
    Ok((r.scores.into_pyarray(py), r.is_issue.into_pyarray(py), r.threshold, r.issue_threshold, r.scaling_factor))
}

/// Outlier scores from `pred_probs` alone: `(scores, is_issue, threshold, issue_threshold,
/// confident_thresholds or None)`.
#[pyfunction]
#[pyo3(signature = (
    pred_probs, labels=None, *, threshold=None, method="entropy", adjust_pred_probs=true,
    confident_thresholds=None, m=100, gamma=0.1
))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(crate) fn prob_outliers<'py>(
    py: Python<'py>,
    pred_probs: &Bound<'py, PyAny>,
    labels: Option<PyReadonlyArray1<'py, i64>>,
    threshold: Option<f64>,
    method: &str,
    adjust_pred_probs: bool,
    confident_thresholds: Option<Vec<f64>>,
    m: usize,
    gamma: f64,
) -> PyResult<(F64Array<'py>, BoolArray<'py>, f64, f64, Option<F64Array<'py>>)> {
    let params = ProbParams {
        threshold,
        method: OodMethod::parse(method, m, gamma).map_err(to_py)?,
        adjust_pred_probs,
        confident_thresholds,
    };
    let labels = labels.as_ref().map(|l| contiguous(l, "labels")).transpose()?;
    let r = if let Ok(a) = pred_probs.extract::<PyReadonlyArray2<'_, f32>>() {
        let view = a.as_array();
        py.detach(|| core_prob_outliers(view, labels, &params))
    } else if let Ok(a) = pred_probs.extract::<PyReadonlyArray2<'_, f64>>() {
        let view = a.as_array();
        py.detach(|| core_prob_outliers(view, labels, &params))
    } else {
        return Err(dtype_error(pred_probs, "pred_probs"));
    }
    .map_err(to_py)?;
    Ok((
        r.scores.into_pyarray(py),
        r.is_issue.into_pyarray(py),
        r.threshold,
        r.issue_threshold,
        r.confident_thresholds.map(|c| c.into_pyarray(py)),
    ))
}

/// Near duplicates in a neighbour graph: `(scores, is_issue, set_offsets, set_members, group,
/// median_nn_distance)`; row `i`'s set is `set_members[set_offsets[i]:set_offsets[i + 1]]`.
#[pyfunction]
#[pyo3(signature = (distances, indices, *, threshold=0.13))]
#[allow(clippy::type_complexity)]
pub(crate) fn near_duplicates<'py>(
    py: Python<'py>,
    distances: PyReadonlyArray2<'py, f32>,
    indices: PyReadonlyArray2<'py, i64>,
    threshold: f64,
) -> PyResult<(F64Array<'py>, BoolArray<'py>, I64Array<'py>, I64Array<'py>, I64Array<'py>, f64)> {
    let (d, i) = (distances.as_array(), indices.as_array());
    let r = py.detach(|| core_near_duplicates(&Graph::new(d, i)?, threshold)).map_err(to_py)?;
    Ok((
        r.scores.into_pyarray(py),
        r.is_issue.into_pyarray(py),
        r.set_offsets.into_pyarray(py),
        r.set_members.into_pyarray(py),
        r.group.into_pyarray(py),
        r.median_nn_distance,
    ))
}

/// The non-IID permutation test on a neighbour graph: `(scores, is_issue, p_value, statistic,
/// permutation_statistics)`.
#[pyfunction]
#[pyo3(signature = (distances, indices, *, num_permutations=25, seed=0, significance_threshold=0.05, threads=None))]
#[allow(clippy::type_complexity)]
pub(crate) fn non_iid<'py>(
    py: Python<'py>,
    distances: PyReadonlyArray2<'py, f32>,
    indices: PyReadonlyArray2<'py, i64>,
    num_permutations: usize,
    seed: u32,
    significance_threshold: f64,
    threads: Option<usize>,
) -> PyResult<(F64Array<'py>, BoolArray<'py>, f64, f64, F64Array<'py>)> {
    let (d, i) = (distances.as_array(), indices.as_array());
    let r = py
        .detach(|| core_non_iid(&Graph::new(d, i)?, num_permutations, seed, significance_threshold, threads))
        .map_err(to_py)?;
    Ok((
        r.scores.into_pyarray(py),
        r.is_issue.into_pyarray(py),
        r.p_value,
        r.statistic,
        r.permutation_statistics.into_pyarray(py),
    ))
}

/// Registers the outlier, near-duplicate and non-IID functions on the module.
pub(crate) fn register_geometry(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(knn_outliers, m)?)?;
    m.add_function(wrap_pyfunction!(prob_outliers, m)?)?;
    m.add_function(wrap_pyfunction!(near_duplicates, m)?)?;
    m.add_function(wrap_pyfunction!(non_iid, m)?)
}

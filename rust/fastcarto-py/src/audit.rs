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
use fastcarto_core::audit::{label, underperforming_group};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// What `null_scan` returns: per-row scores and flags, per-column impact, and the most common
/// NaN pattern with its rows (None when no value is NaN).
type NullResult<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<bool>>,
    Bound<'py, PyArray1<f64>>,
    Option<(String, Bound<'py, PyArray1<u64>>)>,
);

/// The `null` issue type of a 2-d float32/float64 feature matrix (any strides; a memmap streams).
#[pyfunction]
#[pyo3(signature = (features, *, threads=None))]
pub(crate) fn null_scan<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<NullResult<'py>> {
    let scan = if let Ok(a) = features.extract::<PyReadonlyArray2<'_, f32>>() {
        let view = a.as_array();
        py.detach(|| fastcarto_core::audit::null::null_scan(view, threads))
    } else if let Ok(a) = features.extract::<PyReadonlyArray2<'_, f64>>() {
        let view = a.as_array();
        py.detach(|| fastcarto_core::audit::null::null_scan(view, threads))
    } else {
        return Err(dtype_error(features, "features (2-d)"));
    }
    .map_err(to_py)?;
    let most_common = scan.most_common.map(|p| (p.pattern, p.rows.into_pyarray(py)));
    Ok((scan.scores.into_pyarray(py), scan.is_issue.into_pyarray(py), scan.column_impact.into_pyarray(py), most_common))
}

/// What `class_imbalance` returns: per-example scores and flags, the rarest class, its fraction
/// of the examples, and whether the dataset is imbalanced.
type ImbalanceResult<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<bool>>, u32, f64, bool);

/// The `class_imbalance` issue type: per-example scores and flags, the rarest class, its
/// fraction of the examples, and whether the dataset is imbalanced.
#[pyfunction]
pub(crate) fn class_imbalance<'py>(
    py: Python<'py>,
    labels: PyReadonlyArray1<'py, i64>,
    n_classes: usize,
    threshold: f64,
) -> PyResult<ImbalanceResult<'py>> {
    let labels = contiguous(&labels, "labels")?;
    let found = py
        .detach(|| fastcarto_core::audit::class_imbalance::class_imbalance(labels, n_classes, threshold))
        .map_err(to_py)?;
    Ok((
        found.scores.into_pyarray(py),
        found.is_issue.into_pyarray(py),
        found.rarest,
        found.rarest_fraction,
        found.imbalanced,
    ))
}

/// Label issues by confident learning, as cleanlab's `Datalab` finds them from `pred_probs`
/// (`fastcarto_core::audit::label::find_label_issues`). Returns a dict of arrays: `is_issue`,
/// `score`, `predicted`, `confident_thresholds`, `confident_joint`, `py`, `noise_matrix`,
/// `inverse_noise_matrix`, `joint`, and the int `num_off_diagonal`.
#[pyfunction]
#[pyo3(signature = (labels, pred_probs, *, thresholds=None, min_examples_per_class=10))]
pub(crate) fn label_issues<'py>(
    py: Python<'py>,
    labels: PyReadonlyArray1<'py, i64>,
    pred_probs: PyReadonlyArray2<'py, f64>,
    thresholds: Option<Vec<f64>>,
    min_examples_per_class: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let labels = contiguous(&labels, "labels")?;
    let probs = pred_probs.as_array();
    let opts = label::LabelOptions { thresholds, min_examples_per_class };
    let out = py.detach(|| label::find_label_issues(labels, probs, &opts)).map_err(to_py)?;
    let d = PyDict::new(py);
    d.set_item("is_issue", out.is_issue.into_pyarray(py))?;
    d.set_item("score", out.score.into_pyarray(py))?;
    d.set_item("predicted", out.predicted.into_pyarray(py))?;
    d.set_item("confident_thresholds", out.confident_thresholds.into_pyarray(py))?;
    d.set_item("confident_joint", out.confident_joint.into_pyarray(py))?;
    d.set_item("py", out.py.into_pyarray(py))?;
    d.set_item("noise_matrix", out.noise_matrix.into_pyarray(py))?;
    d.set_item("inverse_noise_matrix", out.inverse_noise_matrix.into_pyarray(py))?;
    d.set_item("joint", out.joint.into_pyarray(py))?;
    d.set_item("num_off_diagonal", out.num_off_diagonal)?;
    Ok(d)
}

/// Out-of-sample probabilities from the labels of each example's `k` nearest neighbours
/// (`fastcarto_core::audit::label::knn_pred_probs`).
#[pyfunction]
#[pyo3(signature = (labels, indices, k, n_classes))]
pub(crate) fn knn_pred_probs<'py>(
    py: Python<'py>,
    labels: PyReadonlyArray1<'py, i64>,
    indices: PyReadonlyArray2<'py, i64>,
    k: usize,
    n_classes: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let labels = contiguous(&labels, "labels")?;
    let indices = indices.as_array();
    let out = py.detach(|| label::knn_pred_probs(labels, indices, k, n_classes)).map_err(to_py)?;
    Ok(out.into_pyarray(py))
}

/// scikit-learn's DBSCAN on a kNN distance graph
/// (`fastcarto_core::audit::underperforming_group::dbscan`): a cluster id per example, -1
/// for noise.
#[pyfunction]
#[pyo3(signature = (indices, distances, *, eps=0.5, min_samples=5))]
pub(crate) fn dbscan<'py>(
    py: Python<'py>,
    indices: PyReadonlyArray2<'py, i64>,
    distances: PyReadonlyArray2<'py, f32>,
    eps: f64,
    min_samples: usize,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let (indices, distances) = (indices.as_array(), distances.as_array());
    let out = py.detach(|| underperforming_group::dbscan(indices, distances, eps, min_samples)).map_err(to_py)?;
    Ok(out.into_pyarray(py))
}

/// cleanlab's underperforming-group scores for the given clusters
/// (`fastcarto_core::audit::underperforming_group::underperforming_groups`). Returns a dict:
/// `score`, `is_issue`, `worst_cluster_id`, `worst_ratio`, `n_clusters`.
#[pyfunction]
#[pyo3(signature = (labels, pred_probs, cluster_ids, *, min_cluster_samples=5, threshold=0.1))]
pub(crate) fn underperforming_groups<'py>(
    py: Python<'py>,
    labels: PyReadonlyArray1<'py, i64>,
    pred_probs: PyReadonlyArray2<'py, f64>,
    cluster_ids: PyReadonlyArray1<'py, i64>,
    min_cluster_samples: usize,
    threshold: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let labels = contiguous(&labels, "labels")?;
    let cluster_ids = contiguous(&cluster_ids, "cluster_ids")?;
    let probs = pred_probs.as_array();
    let out = py
        .detach(|| {
            underperforming_group::underperforming_groups(labels, probs, cluster_ids, min_cluster_samples, threshold)
        })
        .map_err(to_py)?;
    let d = PyDict::new(py);
    d.set_item("score", out.score.into_pyarray(py))?;
    d.set_item("is_issue", out.is_issue.into_pyarray(py))?;
    d.set_item("worst_cluster_id", out.worst_cluster_id)?;
    d.set_item("worst_ratio", out.worst_ratio)?;
    d.set_item("n_clusters", out.n_clusters)?;
    Ok(d)
}

/// Registers this file's functions on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(null_scan, m)?)?;
    m.add_function(wrap_pyfunction!(class_imbalance, m)?)?;
    m.add_function(wrap_pyfunction!(label_issues, m)?)?;
    m.add_function(wrap_pyfunction!(knn_pred_probs, m)?)?;
    m.add_function(wrap_pyfunction!(dbscan, m)?)?;
    m.add_function(wrap_pyfunction!(underperforming_groups, m)?)
}

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

//! The dataset audit's issue types (`fastcarto_core::audit`): arrays in, arrays out, the GIL
//! released around the core.

use crate::args::{contiguous, dtype_error};
use crate::errors::to_py;
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

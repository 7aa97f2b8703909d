//! The dataset audit's issue types (`fastcarto_core::audit`): arrays in, arrays out. The Python
//! modules in `fastcarto._audit` shape the results into cleanlab's columns.

use crate::args::{contiguous, dtype_error};
use crate::errors::to_py;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

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

//! The neighbour graph (`fastcarto_core::knn`): a float32/float64 features matrix in (any
//! strides, a memory map included), `(distances, indices)` out.

use crate::args::{dtype_error, parse};
use crate::errors::to_py;
use fastcarto_core::knn::{KnnOptions, Metric};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

type Graph<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>);

/// Each row's `k` nearest other rows: `(distances float32 (n, k) ascending, indices int64
/// (n, k))`; rows with a NaN get `inf` / `-1`. `exact=None` chooses by size.
#[pyfunction]
#[pyo3(signature = (features, k, *, metric="cosine", exact=None, seed=0, threads=None))]
pub(crate) fn knn<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    k: i64,
    metric: &str,
    exact: Option<bool>,
    seed: u64,
    threads: Option<usize>,
) -> PyResult<Graph<'py>> {
    let metric: Metric = parse(metric)?;
    if k < 1 {
        return Err(PyValueError::new_err(format!("k must be at least 1, got {k}")));
    }
    let opts = KnnOptions { k: k as usize, metric, exact, seed, threads };
    let graph = if let Ok(a) = features.extract::<PyReadonlyArray2<'_, f32>>() {
        let view = a.as_array();
        py.detach(|| fastcarto_core::knn::knn(view, opts))
    } else if let Ok(a) = features.extract::<PyReadonlyArray2<'_, f64>>() {
        let view = a.as_array();
        py.detach(|| fastcarto_core::knn::knn(view, opts))
    } else {
        let ndim = features.getattr("ndim").and_then(|d| d.extract::<usize>()).ok();
        return Err(match ndim {
            Some(d) if d != 2 => PyValueError::new_err(format!("features must be a 2-D array, got {d} dimensions")),
            _ => dtype_error(features, "features"),
        });
    }
    .map_err(to_py)?;
    let shape = (graph.n, graph.k);
    let distances = Array2::from_shape_vec(shape, graph.distances).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let indices = Array2::from_shape_vec(shape, graph.indices).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((distances.into_pyarray(py), indices.into_pyarray(py)))
}

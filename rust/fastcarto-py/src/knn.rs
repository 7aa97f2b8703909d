//! The neighbour graph (`fastcarto_core::knn`): a float32/float64 features matrix in (any
//! strides, a memory map included), `(distances, indices)` out; and the exact search in blocks
//! of rows (`knn_block`, `knn_merge`, `knn_finish`) that `fastcarto.dask.knn` runs on a cluster.

use crate::args::{dtype_error, parse};
use crate::errors::to_py;
use fastcarto_core::knn::{self as blocks, KnnOptions, KnnPart, Metric};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyTypeError, PyValueError};
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

/// A part of the graph in blocks as it crosses into Python: `(start, distances float64 (q, k),
/// indices int64 (q, k), dups int64 (q, k), n_dups uint64 (q,), searchable bool (q,),
/// n_reference, n_reference_searchable)` (see `fastcarto_core::knn::KnnPart`).
type Part<'py> = (
    u64,
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray1<u64>>,
    Bound<'py, PyArray1<bool>>,
    u64,
    u64,
);

type PartIn<'py> = (
    u64,
    PyReadonlyArray2<'py, f64>,
    PyReadonlyArray2<'py, i64>,
    PyReadonlyArray2<'py, i64>,
    PyReadonlyArray1<'py, u64>,
    PyReadonlyArray1<'py, bool>,
    u64,
    u64,
);

fn part_out<'py>(py: Python<'py>, p: KnnPart) -> PyResult<Part<'py>> {
    let shape = (p.rows, p.k);
    let two = |v: Vec<f64>| Array2::from_shape_vec(shape, v).map_err(|e| PyValueError::new_err(e.to_string()));
    let two_i = |v: Vec<i64>| Array2::from_shape_vec(shape, v).map_err(|e| PyValueError::new_err(e.to_string()));
    Ok((
        p.start,
        two(p.distances)?.into_pyarray(py),
        two_i(p.indices)?.into_pyarray(py),
        two_i(p.dups)?.into_pyarray(py),
        p.n_dups.into_pyarray(py),
        p.searchable.into_pyarray(py),
        p.n_reference,
        p.n_reference_searchable,
    ))
}

fn part_in(p: &PartIn<'_>) -> PyResult<KnnPart> {
    let (start, d, i, dups, n_dups, searchable, n_reference, n_reference_searchable) = p;
    let shape = d.as_array().dim();
    if i.as_array().dim() != shape || dups.as_array().dim() != shape {
        return Err(PyValueError::new_err(format!(
            "a kNN part's distances {:?}, indices {:?} and dups {:?} must have one shape",
            shape,
            i.as_array().dim(),
            dups.as_array().dim()
        )));
    }
    let part = KnnPart {
        start: *start,
        rows: shape.0,
        k: shape.1,
        distances: d.as_array().iter().copied().collect(),
        indices: i.as_array().iter().copied().collect(),
        dups: dups.as_array().iter().copied().collect(),
        n_dups: n_dups.as_array().to_vec(),
        searchable: searchable.as_array().to_vec(),
        n_reference: *n_reference,
        n_reference_searchable: *n_reference_searchable,
    };
    part.check().map_err(to_py)?;
    Ok(part)
}

/// The exact neighbours of the query rows (global rows `q_start..`) among the reference rows
/// (global rows `r_start..`): a part to merge with the parts of the other reference blocks.
#[pyfunction]
#[pyo3(signature = (queries, q_start, reference, r_start, k, *, metric="cosine", threads=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn knn_block<'py>(
    py: Python<'py>,
    queries: &Bound<'py, PyAny>,
    q_start: usize,
    reference: &Bound<'py, PyAny>,
    r_start: usize,
    k: i64,
    metric: &str,
    threads: Option<usize>,
) -> PyResult<Part<'py>> {
    let metric: Metric = parse(metric)?;
    if k < 1 {
        return Err(PyValueError::new_err(format!("k must be at least 1, got {k}")));
    }
    let k = k as usize;
    let part = if let (Ok(a), Ok(b)) =
        (queries.extract::<PyReadonlyArray2<'_, f32>>(), reference.extract::<PyReadonlyArray2<'_, f32>>())
    {
        let (a, b) = (a.as_array(), b.as_array());
        py.detach(|| blocks::knn_block(a, q_start, b, r_start, k, metric, threads))
    } else if let (Ok(a), Ok(b)) =
        (queries.extract::<PyReadonlyArray2<'_, f64>>(), reference.extract::<PyReadonlyArray2<'_, f64>>())
    {
        let (a, b) = (a.as_array(), b.as_array());
        py.detach(|| blocks::knn_block(a, q_start, b, r_start, k, metric, threads))
    } else {
        return Err(PyTypeError::new_err("queries and reference must be 2-D arrays of one dtype, float32 or float64"));
    }
    .map_err(to_py)?;
    part_out(py, part)
}

/// Two parts of the same query rows, searched among disjoint reference rows, merged.
#[pyfunction]
pub(crate) fn knn_merge<'py>(py: Python<'py>, a: PartIn<'py>, b: PartIn<'py>) -> PyResult<Part<'py>> {
    let (mut a, b) = (part_in(&a)?, part_in(&b)?);
    py.detach(|| a.merge(&b)).map_err(to_py)?;
    part_out(py, a)
}

/// The graph rows `(distances float32, indices int64)` of a part that searched all `n` rows.
#[pyfunction]
pub(crate) fn knn_finish<'py>(py: Python<'py>, part: PartIn<'py>, n: usize) -> PyResult<Graph<'py>> {
    let part = part_in(&part)?;
    let graph = py.detach(|| part.finish(n)).map_err(to_py)?;
    let shape = (graph.n, graph.k);
    let distances = Array2::from_shape_vec(shape, graph.distances).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let indices = Array2::from_shape_vec(shape, graph.indices).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((distances.into_pyarray(py), indices.into_pyarray(py)))
}

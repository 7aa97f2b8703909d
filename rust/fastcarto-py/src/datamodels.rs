//! Datamodels (`fastcarto_core::datamodels`): the statistics class and the two fits.

use crate::errors::to_py;
use fastcarto_core::datamodels::{self as dm, FitOptions, Masks, Stats};
use numpy::{IntoPyArray, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::{Mutex, MutexGuard};

/// Sufficient statistics of masks and outputs (`XᵀX`, `XᵀY`, `ΣY`, `ΣY²`), additive.
///
/// Built by :func:`fastcarto.datamodels.statistics`, or empty and updated model by model;
/// statistics of shards of models merge exactly. Behind a lock taken with the GIL released,
/// like `State`.
///
/// Parameters
/// ----------
/// n_cols:
///     The number of training examples ``N`` (mask columns).
/// n_targets:
///     The number of targets ``K`` (output columns).
///
/// Raises
/// ------
/// fastcarto.EmptyInputError
///     No training example or no target.
/// MemoryError
///     Matrices that would not fit in memory.
///
/// Examples
/// --------
/// >>> import numpy as np, fastcarto.datamodels as fdm
/// >>> masks = np.array([[True, False, True], [False, True, True]])
/// >>> outputs = np.array([[1.0], [0.5]])
/// >>> stats = fdm.DatamodelStats(3, 1)
/// >>> stats.update(masks, outputs)
/// >>> stats.n_rows, stats.n_cols, stats.n_targets
/// (2, 3, 1)
#[pyclass(name = "DatamodelStats", module = "fastcarto._core", frozen)]
pub(crate) struct PyStats {
    inner: Mutex<Stats>,
}

fn lock(m: &Mutex<Stats>) -> MutexGuard<'_, Stats> {
    // Updates are all-or-nothing, so a lock poisoned by a panic elsewhere still holds whole statistics.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn outputs_error(obj: &Bound<'_, PyAny>) -> PyErr {
    let dtype = obj.getattr("dtype").map(|d| d.to_string()).unwrap_or_else(|_| "unknown".into());
    PyTypeError::new_err(format!("outputs must be a 2-d float32 or float64 numpy array, got dtype {dtype}"))
}

impl PyStats {
    fn update_with(
        &self,
        py: Python<'_>,
        masks: Masks<'_>,
        outputs: &Bound<'_, PyAny>,
        threads: Option<usize>,
    ) -> PyResult<()> {
        if let Ok(a) = outputs.extract::<PyReadonlyArray2<'_, f32>>() {
            let v = a.as_array();
            py.detach(|| lock(&self.inner).update(masks, v, threads)).map_err(to_py)
        } else if let Ok(a) = outputs.extract::<PyReadonlyArray2<'_, f64>>() {
            let v = a.as_array();
            py.detach(|| lock(&self.inner).update(masks, v, threads)).map_err(to_py)
        } else {
            Err(outputs_error(outputs))
        }
    }

    fn snapshot(&self, py: Python<'_>) -> Stats {
        py.detach(|| lock(&self.inner).clone())
    }
}

/// Runs `f` on the statistics of `items`, each locked once (an object may appear twice), with
/// the GIL released: no copy of matrices that may be gigabytes.
fn with_locked<R: Send>(py: Python<'_>, items: &[&PyStats], f: impl FnOnce(&[&Stats]) -> R + Send) -> R {
    let mut unique: Vec<&PyStats> = Vec::new();
    let slot: Vec<usize> = items
        .iter()
        .map(|it| match unique.iter().position(|u| std::ptr::eq(*u, *it)) {
            Some(i) => i,
            None => {
                unique.push(it);
                unique.len() - 1
            }
        })
        .collect();
    py.detach(|| {
        let guards: Vec<MutexGuard<'_, Stats>> = unique.iter().map(|u| lock(&u.inner)).collect();
        let refs: Vec<&Stats> = slot.iter().map(|&i| &*guards[i]).collect();
        f(&refs)
    })
}

#[pymethods]
impl PyStats {
    #[new]
    fn py_new(n_cols: usize, n_targets: usize) -> PyResult<Self> {
        Ok(PyStats { inner: Mutex::new(Stats::new(n_cols, n_targets).map_err(to_py)?) })
    }

    /// Folds in models whose masks are one bool (or uint8, nonzero is true) per training example.
    ///
    /// Parameters
    /// ----------
    /// masks:
    ///     ``(M, N)`` bool or uint8 numpy array: the training examples each model saw.
    /// outputs:
    ///     ``(M, K)`` float32 or float64 numpy array: each model's outputs on the targets.
    /// threads:
    ///     Worker threads (default: ``FASTCARTO_NUM_THREADS`` or all cores).
    ///
    /// Raises
    /// ------
    /// TypeError
    ///     Masks or outputs of another dtype.
    /// fastcarto.FastcartoError
    ///     Shapes that do not match the statistics or each other, or an output that is NaN or
    ///     infinite (nothing is folded in).
    ///
    /// Examples
    /// --------
    /// >>> import numpy as np, fastcarto.datamodels as fdm
    /// >>> masks = np.array([[True, False, True], [False, True, True]])
    /// >>> outputs = np.array([[1.0], [0.5]])
    /// >>> stats = fdm.DatamodelStats(3, 1)
    /// >>> stats.update(masks, outputs)
    /// >>> stats.parts()[1].tolist()
    /// [[1, 0, 1], [0, 1, 1], [1, 1, 2]]
    #[pyo3(signature = (masks, outputs, *, threads=None))]
    fn update(
        &self,
        py: Python<'_>,
        masks: &Bound<'_, PyAny>,
        outputs: &Bound<'_, PyAny>,
        threads: Option<usize>,
    ) -> PyResult<()> {
        if let Ok(m) = masks.extract::<PyReadonlyArray2<'_, bool>>() {
            self.update_with(py, Masks::Bool(m.as_array()), outputs, threads)
        } else if let Ok(m) = masks.extract::<PyReadonlyArray2<'_, u8>>() {
            self.update_with(py, Masks::Bytes(m.as_array()), outputs, threads)
        } else {
            let dtype = masks.getattr("dtype").map(|d| d.to_string()).unwrap_or_else(|_| "unknown".into());
            Err(PyTypeError::new_err(format!("masks must be a 2-d bool or uint8 numpy array, got dtype {dtype}")))
        }
    }

    /// Folds in models whose masks are `numpy.packbits(masks, axis=1, bitorder=...)` rows.
    ///
    /// Parameters
    /// ----------
    /// packed:
    ///     ``(M, ceil(N / 8))`` uint8 rows of packed bits.
    /// outputs:
    ///     ``(M, K)`` float32 or float64 outputs.
    /// n_cols:
    ///     ``N``, the number of training examples (the bits past it are ignored).
    /// little:
    ///     ``True`` for ``bitorder="little"``.
    /// threads:
    ///     Worker threads.
    ///
    /// Raises
    /// ------
    /// TypeError, fastcarto.FastcartoError
    ///     As :meth:`update`.
    ///
    /// Examples
    /// --------
    /// >>> import numpy as np, fastcarto.datamodels as fdm
    /// >>> masks = np.array([[True, False, True], [False, True, True]])
    /// >>> outputs = np.array([[1.0], [0.5]])
    /// >>> a, b = fdm.DatamodelStats(3, 1), fdm.DatamodelStats(3, 1)
    /// >>> a.update(masks, outputs)
    /// >>> b.update_packed(np.packbits(masks, axis=1), outputs, n_cols=3)
    /// >>> all(np.array_equal(x, y) for x, y in zip(a.parts(), b.parts()))
    /// True
    #[pyo3(signature = (packed, outputs, *, n_cols, little=false, threads=None))]
    fn update_packed(
        &self,
        py: Python<'_>,
        packed: PyReadonlyArray2<'_, u8>,
        outputs: &Bound<'_, PyAny>,
        n_cols: usize,
        little: bool,
        threads: Option<usize>,
    ) -> PyResult<()> {
        self.update_with(py, Masks::Packed { rows: packed.as_array(), n_cols, little }, outputs, threads)
    }

    /// Adds the statistics of other models.
    ///
    /// Parameters
    /// ----------
    /// other:
    ///     Statistics of the same training examples and targets (may be this object).
    ///
    /// Raises
    /// ------
    /// fastcarto.IncompatibleStateError
    ///     Statistics of another shape.
    ///
    /// Examples
    /// --------
    /// >>> import numpy as np, fastcarto.datamodels as fdm
    /// >>> masks = np.array([[True, False, True], [False, True, True]])
    /// >>> outputs = np.array([[1.0], [0.5]])
    /// >>> a, b = fdm.DatamodelStats(3, 1), fdm.DatamodelStats(3, 1)
    /// >>> a.update(masks[:1], outputs[:1])
    /// >>> b.update(masks[1:], outputs[1:])
    /// >>> a.merge(b)
    /// >>> a.n_rows
    /// 2
    fn merge(&self, py: Python<'_>, other: &Bound<'_, PyStats>) -> PyResult<()> {
        if std::ptr::eq(self, other.get()) {
            let copy = self.snapshot(py);
            return py.detach(|| lock(&self.inner).merge(&copy)).map_err(to_py);
        }
        let other = other.get();
        py.detach(|| {
            // Locked in address order, so `a.merge(b)` and `b.merge(a)` in two threads cannot deadlock.
            let (mut mine, theirs) = if (self as *const Self) < (other as *const Self) {
                let mine = lock(&self.inner);
                (mine, lock(&other.inner))
            } else {
                let theirs = lock(&other.inner);
                (lock(&self.inner), theirs)
            };
            mine.merge(&theirs)
        })
        .map_err(to_py)
    }

    /// A copy.
    ///
    /// Returns
    /// -------
    /// DatamodelStats
    ///     Independent of this object.
    ///
    /// Examples
    /// --------
    /// >>> import numpy as np, fastcarto.datamodels as fdm
    /// >>> masks = np.array([[True, False, True], [False, True, True]])
    /// >>> outputs = np.array([[1.0], [0.5]])
    /// >>> stats = fdm.statistics(masks, outputs)
    /// >>> copy = stats.copy()
    /// >>> stats.merge(stats)
    /// >>> stats.n_rows, copy.n_rows
    /// (4, 2)
    fn copy(&self, py: Python<'_>) -> Self {
        PyStats { inner: Mutex::new(self.snapshot(py)) }
    }

    /// The number of models folded in.
    #[getter]
    fn n_rows(&self, py: Python<'_>) -> u64 {
        py.detach(|| lock(&self.inner).n_rows())
    }

    /// The number of training examples ``N``.
    #[getter]
    fn n_cols(&self, py: Python<'_>) -> usize {
        py.detach(|| lock(&self.inner).n_cols())
    }

    /// The number of targets ``K``.
    #[getter]
    fn n_targets(&self, py: Python<'_>) -> usize {
        py.detach(|| lock(&self.inner).n_targets())
    }

    /// `(n_rows, xtx, xty, sum_y, sum_y2)` as numpy arrays.
    ///
    /// Returns
    /// -------
    /// tuple
    ///     ``n_rows`` (int), ``xtx`` ``(N, N)`` uint32, ``xty`` ``(N, K)`` float64, ``sum_y`` and
    ///     ``sum_y2`` ``(K,)`` float64: what :meth:`from_parts` takes to rebuild the statistics
    ///     (to save them, or send them between processes).
    ///
    /// Examples
    /// --------
    /// >>> import numpy as np, fastcarto.datamodels as fdm
    /// >>> masks = np.array([[True, False, True], [False, True, True]])
    /// >>> outputs = np.array([[1.0], [0.5]])
    /// >>> n_rows, xtx, xty, sum_y, sum_y2 = fdm.statistics(masks, outputs).parts()
    /// >>> n_rows, xty.ravel().tolist(), sum_y.tolist(), sum_y2.tolist()
    /// (2, [1.0, 0.5, 1.5], [1.5], [1.25])
    #[allow(clippy::type_complexity)]
    fn parts<'py>(
        &self,
        py: Python<'py>,
    ) -> (
        u64,
        Bound<'py, numpy::PyArray2<u32>>,
        Bound<'py, numpy::PyArray2<f64>>,
        Bound<'py, numpy::PyArray1<f64>>,
        Bound<'py, numpy::PyArray1<f64>>,
    ) {
        let (n, xtx, xty, sy, syy) = py.detach(|| lock(&self.inner).parts());
        (n, xtx.into_pyarray(py), xty.into_pyarray(py), sy.into_pyarray(py), syy.into_pyarray(py))
    }

    /// Statistics from the arrays `parts` gives, checked.
    ///
    /// Parameters
    /// ----------
    /// n_rows:
    ///     The number of models.
    /// xtx:
    ///     ``(N, N)`` uint32 ``XᵀX``, symmetric.
    /// xty:
    ///     ``(N, K)`` float64 ``XᵀY``.
    /// sum_y, sum_y2:
    ///     ``(K,)`` float64 sums of the outputs and of their squares.
    ///
    /// Returns
    /// -------
    /// DatamodelStats
    ///     Equal to the statistics the arrays came from.
    ///
    /// Raises
    /// ------
    /// fastcarto.FastcartoError
    ///     Arrays of inconsistent shapes, an ``xtx`` that is not a matrix of co-occurrence
    ///     counts, or non-finite sums.
    ///
    /// Examples
    /// --------
    /// >>> import numpy as np, fastcarto.datamodels as fdm
    /// >>> masks = np.array([[True, False, True], [False, True, True]])
    /// >>> outputs = np.array([[1.0], [0.5]])
    /// >>> again = fdm.DatamodelStats.from_parts(*fdm.statistics(masks, outputs).parts())
    /// >>> again.n_rows, again.n_cols
    /// (2, 3)
    #[staticmethod]
    fn from_parts(
        n_rows: u64,
        xtx: PyReadonlyArray2<'_, u32>,
        xty: PyReadonlyArray2<'_, f64>,
        sum_y: PyReadonlyArray1<'_, f64>,
        sum_y2: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<Self> {
        let s = Stats::from_parts(
            n_rows,
            xtx.as_array().to_owned(),
            xty.as_array().to_owned(),
            sum_y.as_array().to_vec(),
            sum_y2.as_array().to_vec(),
        )
        .map_err(to_py)?;
        Ok(PyStats { inner: Mutex::new(s) })
    }
}

fn fit_dict<'py>(py: Python<'py>, fit: dm::Fit) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("weights", fit.weights.into_pyarray(py))?;
    d.set_item("bias", fit.bias.into_pyarray(py))?;
    d.set_item("lam", fit.lam.into_pyarray(py))?;
    d.set_item("lambdas", fit.lambdas.into_pyarray(py))?;
    d.set_item("val_mse", fit.val_mse.into_pyarray(py))?;
    d.set_item("gap", fit.gap.into_pyarray(py))?;
    d.set_item("converged", fit.converged.into_pyarray(py))?;
    d.set_item("constant_columns", fit.constant_columns.into_pyarray(py))?;
    Ok(d)
}

/// Datamodels with λ chosen per target on the validation statistics, refit on both.
#[pyfunction]
#[pyo3(signature = (train, val, *, n_lambdas=100, lambda_ratio=1e-3, patience=Some(5), tol=1e-4, path_tol=None, max_iter=1000, step=8, threads=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn datamodels_fit<'py>(
    py: Python<'py>,
    train: &Bound<'py, PyStats>,
    val: &Bound<'py, PyStats>,
    n_lambdas: usize,
    lambda_ratio: f64,
    patience: Option<usize>,
    tol: f64,
    path_tol: Option<f64>,
    max_iter: usize,
    step: usize,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let path_tol = path_tol.unwrap_or(10.0 * tol);
    let opts = FitOptions { n_lambdas, lambda_ratio, patience, tol, path_tol, max_iter, step, ..FitOptions::default() };
    let fit = with_locked(py, &[train.get(), val.get()], |s| dm::fit(s[0], s[1], &opts, threads)).map_err(to_py)?;
    fit_dict(py, fit)
}

/// Datamodels at a given λ per target, on all the statistics' models together.
#[pyfunction]
#[pyo3(signature = (parts, lam, *, tol=1e-4, max_iter=1000, threads=None))]
pub(crate) fn datamodels_fit_fixed<'py>(
    py: Python<'py>,
    parts: Vec<Bound<'py, PyStats>>,
    lam: PyReadonlyArray1<'_, f64>,
    tol: f64,
    max_iter: usize,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let opts = FitOptions { tol, max_iter, ..FitOptions::default() };
    let lam = lam.as_array().to_vec();
    let items: Vec<&PyStats> = parts.iter().map(|p| p.get()).collect();
    let fit = with_locked(py, &items, |s| dm::fit_fixed(s, &lam, &opts, threads)).map_err(to_py)?;
    fit_dict(py, fit)
}

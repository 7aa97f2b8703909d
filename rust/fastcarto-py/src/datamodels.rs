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
/// Behind a lock taken with the GIL released, like `State`.
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
    fn copy(&self, py: Python<'_>) -> Self {
        PyStats { inner: Mutex::new(self.snapshot(py)) }
    }

    #[getter]
    fn n_rows(&self, py: Python<'_>) -> u64 {
        py.detach(|| lock(&self.inner).n_rows())
    }

    #[getter]
    fn n_cols(&self, py: Python<'_>) -> usize {
        py.detach(|| lock(&self.inner).n_cols())
    }

    #[getter]
    fn n_targets(&self, py: Python<'_>) -> usize {
        py.detach(|| lock(&self.inner).n_targets())
    }

    /// `(n_rows, xtx, xty, sum_y, sum_y2)` as numpy arrays.
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
#[pyo3(signature = (train, val, *, n_lambdas=100, lambda_ratio=1e-3, patience=Some(5), tol=1e-4, path_tol=None, max_iter=1000, step=4, threads=None))]
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
    let opts = FitOptions { n_lambdas, lambda_ratio, patience, tol, path_tol, max_iter, step };
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

//! What the engine accepts as a probability row, for checks made in Python (the warning that
//! `kind="logits"` data look like probabilities) so they use the engine's tolerance, not a copy.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Tolerance on `|sum(p) - 1|` for a probability row of `n_classes` values of `itemsize` bytes
/// (4 for float32, 8 for float64): the engine's `prob_sum_tolerance`.
#[pyfunction]
fn prob_sum_tolerance(n_classes: usize, itemsize: usize) -> PyResult<f64> {
    match itemsize {
        4 => Ok(fastcarto_core::prob_sum_tolerance::<f32>(n_classes)),
        8 => Ok(fastcarto_core::prob_sum_tolerance::<f64>(n_classes)),
        _ => Err(PyValueError::new_err(format!("itemsize must be 4 (float32) or 8 (float64), got {itemsize}"))),
    }
}

/// Registers this file's functions on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(prob_sum_tolerance, m)?)
}

//! The thread pools (`fastcarto_core::sys::pool`).

use crate::errors::to_py;
use pyo3::prelude::*;

/// Number of worker threads a call with `threads=None` uses (honours FASTCARTO_NUM_THREADS).
#[pyfunction]
#[pyo3(signature = (threads=None))]
pub(crate) fn thread_count(threads: Option<usize>) -> PyResult<usize> {
    fastcarto_core::sys::pool::thread_count(threads).map_err(to_py)
}

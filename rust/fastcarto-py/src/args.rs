//! Arguments as Python passes them, turned into the core's types: option names, contiguous
//! numpy buffers, the task, the epoch selection.

use crate::errors::to_py;
use fastcarto_core::read::EpochFilter;
use fastcarto_core::{FinalizeOptions, Task};
use numpy::PyReadonlyArray1;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PySlice;

pub(crate) fn parse<T: std::str::FromStr<Err = fastcarto_core::Error>>(s: &str) -> PyResult<T> {
    s.parse().map_err(to_py)
}

/// A contiguous view of a 1-d numpy array argument.
pub(crate) fn contiguous<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, what: &str) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| PyValueError::new_err(format!("{what} must be contiguous")))
}

pub(crate) fn task_of(n_classes: u32, multilabel: bool) -> Task {
    if multilabel { Task::MultiLabel { n_classes } } else { Task::MultiClass { n_classes } }
}

pub(crate) fn dtype_error(obj: &Bound<'_, PyAny>, what: &str) -> PyErr {
    let dtype = obj.getattr("dtype").map(|d| d.to_string()).unwrap_or_else(|_| "unknown".into());
    PyTypeError::new_err(format!("{what} must be a float32 or float64 numpy array, got dtype {dtype}"))
}

/// How a table presents the state, parsed.
pub(crate) fn finalize_options(compat: Option<&str>, ddof: u32) -> PyResult<FinalizeOptions> {
    Ok(FinalizeOptions { compat: compat.map(parse).transpose()?, ddof })
}

/// The epochs a call uses, one type for every entry point: an `int` k (the first k epochs), a
/// `slice` of epoch numbers (non-negative bounds, positive step) or a list of epoch numbers (for
/// a dense array, positions along its first axis); `None` (an absent argument) is every epoch.
/// The Python package checks and normalizes the user's `epochs=` into one of these.
#[derive(FromPyObject)]
pub(crate) enum Epochs<'py> {
    First(u32),
    Range(Bound<'py, PySlice>),
    List(Vec<u32>),
}

impl Epochs<'_> {
    /// The core's selection; `None` is every epoch.
    pub(crate) fn filter(epochs: Option<Self>) -> PyResult<EpochFilter> {
        Ok(match epochs {
            None => EpochFilter::All,
            Some(Epochs::First(k)) => EpochFilter::First(k),
            Some(Epochs::List(v)) => EpochFilter::List(v),
            Some(Epochs::Range(s)) => EpochFilter::Range {
                start: s.getattr("start")?.extract::<Option<u32>>()?.unwrap_or(0),
                stop: s.getattr("stop")?.extract()?,
                step: s.getattr("step")?.extract::<Option<u32>>()?.unwrap_or(1),
            },
        })
    }
}

//! The Recorder's checks of each batch: the engine's own rules (`fastcarto_core::validate`), so a
//! batch the Recorder keeps is one the readers accept.

use crate::arrow_ffi::PyArray;
use crate::errors::{Hints, to_py_with};
use arrow_array::Array;
use arrow_array::cast::AsArray;
use fastcarto_core::error::Example;
use fastcarto_core::validate::{EpochIds, Ids, check_rows};
use fastcarto_core::{Kind, Task};
use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// Checks batches of rows (outputs, labels, ids) for one writer, remembering each epoch's ids.
#[pyclass(name = "BatchChecker", module = "fastcarto._core")]
pub struct PyBatchChecker {
    kind: Kind,
    seen: EpochIds,
}

/// A batch's ids as numpy int64 or Arrow strings, borrowed.
enum IdColumn<'py> {
    Int(PyReadonlyArray1<'py, i64>),
    Str(arrow_array::ArrayRef),
}

impl<'py> IdColumn<'py> {
    fn extract(ids: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(a) = ids.extract::<PyReadonlyArray1<'py, i64>>() {
            return Ok(IdColumn::Int(a));
        }
        let array = ids.extract::<PyArray>()?.into_inner().0;
        if array.as_string_opt::<i32>().is_none() || array.null_count() > 0 {
            return Err(PyTypeError::new_err(
                "ids must be an int64 numpy array or an Arrow string array without nulls",
            ));
        }
        Ok(IdColumn::Str(array))
    }

    /// Calls `f` with the ids as the core takes them.
    fn with<R>(&self, f: impl FnOnce(Ids<'_>) -> R) -> PyResult<R> {
        match self {
            IdColumn::Int(a) => {
                let ids = a.as_slice().map_err(|_| PyValueError::new_err("ids must be contiguous"))?;
                Ok(f(Ids::Int(ids)))
            }
            IdColumn::Str(a) => {
                let strings: Vec<&str> = a.as_string::<i32>().iter().map(|s| s.unwrap_or_default()).collect();
                Ok(f(Ids::Str(&strings)))
            }
        }
    }
}

#[pymethods]
impl PyBatchChecker {
    /// `n_examples`: ids are positions `0..n_examples` (tracked with one bit each);
    /// `across_batches`: refuse an id already added for the same epoch.
    #[new]
    #[pyo3(signature = (*, kind, n_examples=None, across_batches=true))]
    fn new(kind: &str, n_examples: Option<u64>, across_batches: bool) -> PyResult<Self> {
        let kind: Kind = kind.parse().map_err(crate::errors::to_py)?;
        Ok(PyBatchChecker { kind, seen: EpochIds::new(n_examples, across_batches) })
    }

    /// Checks one batch of `epoch` and changes nothing: contiguous `(rows, classes)` float32 or
    /// float64 outputs, int64 labels and ids (int64 numpy or Arrow strings). Raises the engine's
    /// exception, naming the epoch, the id and its row in the batch.
    #[pyo3(signature = (outputs, labels, ids, *, epoch))]
    fn check(
        &self,
        py: Python<'_>,
        outputs: &Bound<'_, PyAny>,
        labels: PyReadonlyArray1<'_, i64>,
        ids: &Bound<'_, PyAny>,
        epoch: u32,
    ) -> PyResult<()> {
        let ids = IdColumn::extract(ids)?;
        let labels = labels.as_slice().map_err(|_| PyValueError::new_err("labels must be contiguous"))?;
        let kind = self.kind;
        let task = |cols: usize| Task::MultiClass { n_classes: cols as u32 };
        let result = if let Ok(a) = outputs.extract::<PyReadonlyArray2<'_, f32>>() {
            let (task, values) = (task(a.shape()[1]), contiguous(&a)?);
            py.detach(|| check_rows(values, labels, task, kind, epoch))
        } else if let Ok(a) = outputs.extract::<PyReadonlyArray2<'_, f64>>() {
            let (task, values) = (task(a.shape()[1]), contiguous(&a)?);
            py.detach(|| check_rows(values, labels, task, kind, epoch))
        } else {
            return Err(PyTypeError::new_err("outputs must be a 2-d float32 or float64 numpy array"));
        };
        let seen = &self.seen;
        ids.with(|ids| {
            // Rows are named by the id the caller knows, and the row of this batch.
            let name = |row: u64| {
                let row = row as usize;
                if row < ids.len() {
                    Example::Id(format!("{} (row {row} of this batch)", ids.name(row)))
                } else {
                    Example::Index(row as u64)
                }
            };
            result.map_err(|e| e.name_example(name)).and_then(|()| seen.check(epoch, ids))
        })?
        .map_err(|e| to_py_with(e, Hints::NoNanPolicy))
    }

    /// Remembers the ids of a batch that was kept (a new epoch forgets the previous one's).
    #[pyo3(signature = (ids, *, epoch))]
    fn add(&mut self, ids: &Bound<'_, PyAny>, epoch: u32) -> PyResult<()> {
        let ids = IdColumn::extract(ids)?;
        let seen = &mut self.seen;
        ids.with(|ids| seen.insert(epoch, ids))
    }
}

fn contiguous<'a, T: numpy::Element>(a: &'a PyReadonlyArray2<'_, T>) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| PyValueError::new_err("outputs must be C-contiguous"))
}

//! `State`: the per-example state (`fastcarto_core::State`) that `fastcarto.Accumulator` and
//! `fastcarto.DataMap` hold: updates, merges, tables and serialization.

use crate::args::{contiguous, dtype_error, finalize_options, parse, task_of};
use crate::errors::to_py;
use arrow_buffer::Buffer;
use fastcarto_core::{NanPolicy, State, Task, serialize};
use numpy::{PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3_arrow::input::AnyRecordBatch;
use pyo3_arrow::{PyArray, PyRecordBatch};
use std::ptr::NonNull;
use std::sync::Arc;

/// The state of every example: what `fastcarto.Accumulator` and `fastcarto.DataMap` hold.
#[pyclass(name = "State", module = "fastcarto._core")]
pub(crate) struct PyState {
    pub(crate) inner: State,
}

#[pymethods]
impl PyState {
    /// A state for `n_examples` examples that have seen nothing.
    #[staticmethod]
    #[pyo3(signature = (n_examples, n_classes, *, kind, multilabel=false, allow_label_change=false))]
    fn empty(
        n_examples: usize,
        n_classes: u32,
        kind: &str,
        multilabel: bool,
        allow_label_change: bool,
    ) -> PyResult<Self> {
        let state = State::new(n_examples, task_of(n_classes, multilabel), parse(kind)?).map_err(to_py)?;
        Ok(PyState { inner: state.with_label_changes(allow_label_change) })
    }

    /// Folds one epoch's `[rows, classes]` outputs in (all-or-nothing).
    #[pyo3(signature = (outputs, labels, *, epoch, index=None, nan_policy="raise", threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        py: Python<'_>,
        outputs: &Bound<'_, PyAny>,
        labels: PyReadonlyArray1<'_, i64>,
        epoch: u32,
        index: Option<PyReadonlyArray1<'_, u64>>,
        nan_policy: &str,
        threads: Option<usize>,
    ) -> PyResult<()> {
        let nan: NanPolicy = parse(nan_policy)?;
        let labels = contiguous(&labels, "labels")?;
        let index = match &index {
            Some(ix) => Some(contiguous(ix, "index")?),
            None => None,
        };
        let state = &mut self.inner;
        if let Ok(a) = outputs.extract::<PyReadonlyArray2<'_, f32>>() {
            let view = a.as_array();
            py.detach(|| state.update(view, labels, epoch, index, nan, threads)).map_err(to_py)
        } else if let Ok(a) = outputs.extract::<PyReadonlyArray2<'_, f64>>() {
            let view = a.as_array();
            py.detach(|| state.update(view, labels, epoch, index, nan, threads)).map_err(to_py)
        } else {
            Err(dtype_error(outputs, "outputs"))
        }
    }

    /// Merges another state of the same examples (later epochs, or other examples) into this one.
    fn merge(&mut self, py: Python<'_>, other: PyRef<'_, PyState>) -> PyResult<()> {
        let other = &other.inner;
        let state = &mut self.inner;
        py.detach(|| state.merge(other)).map_err(to_py)
    }

    /// The metrics table as a `pyarrow.RecordBatch`.
    #[pyo3(signature = (*, compat=None, ddof=0, ids=None))]
    fn finalize<'py>(
        &self,
        py: Python<'py>,
        compat: Option<&str>,
        ddof: u32,
        ids: Option<PyArray>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (opts, ids) = (finalize_options(compat, ddof)?, ids.map(|a| a.into_inner().0));
        let state = &self.inner;
        let batch = py.detach(|| fastcarto_core::finalize(state, ids, opts)).map_err(to_py)?;
        PyRecordBatch::new(batch).into_pyarrow(py)
    }

    /// Takes the metrics table out of a state that is not needed afterwards (as `finalize`):
    /// its memory goes back to the system while the table is written (memory peaks near the
    /// larger of the two, not their sum), and the state is left with no examples.
    #[pyo3(signature = (*, compat=None, ddof=0, ids=None))]
    fn take_table<'py>(
        &mut self,
        py: Python<'py>,
        compat: Option<&str>,
        ddof: u32,
        ids: Option<PyArray>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (opts, ids) = (finalize_options(compat, ddof)?, ids.map(|a| a.into_inner().0));
        let state = &mut self.inner;
        let batch = py.detach(|| fastcarto_core::take_table(state, ids, opts)).map_err(to_py)?;
        PyRecordBatch::new(batch).into_pyarrow(py)
    }

    /// The raw state as a `pyarrow.RecordBatch` (one row per example slot).
    fn to_arrow<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let batch = serialize::to_record_batch(&self.inner).map_err(to_py)?;
        PyRecordBatch::new(batch).into_pyarrow(py)
    }

    /// Rebuilds a state from `to_arrow()`'s output (any Arrow record batch or stream).
    #[staticmethod]
    fn from_arrow(data: AnyRecordBatch) -> PyResult<Self> {
        let table = data.into_table()?;
        let (batches, schema) = table.into_inner();
        let batch = arrow_concat(&schema, &batches)?;
        Ok(PyState { inner: serialize::from_record_batch(&batch).map_err(to_py)? })
    }

    /// Arrow IPC stream bytes of the raw state.
    fn to_ipc<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = serialize::to_ipc_bytes(&self.inner).map_err(to_py)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Rebuilds a state from `to_ipc()`'s bytes (what `pickle` stores), read in place: an Arrow
    /// buffer over the bytes object, which it keeps alive, without copying; the GIL is released
    /// while the state is decoded.
    #[staticmethod]
    fn from_ipc(py: Python<'_>, data: Bound<'_, PyBytes>) -> PyResult<Self> {
        let bytes = data.as_bytes();
        let buffer = match NonNull::new(bytes.as_ptr() as *mut u8) {
            Some(ptr) => {
                let len = bytes.len();
                let owner = Arc::new(std::panic::AssertUnwindSafe(data.unbind()));
                // SAFETY: `ptr` points at `len` bytes of an immutable `bytes` object, which
                // `owner` (held by the buffer) keeps alive.
                unsafe { Buffer::from_custom_allocation(ptr, len, owner) }
            }
            None => Buffer::from(bytes),
        };
        let state = py.detach(|| serialize::from_ipc_buffer(&buffer)).map_err(to_py)?;
        Ok(PyState { inner: state })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let ctor = slf.get_type().getattr("from_ipc")?;
        Ok((ctor, (slf.borrow().to_ipc(slf.py())?,)))
    }

    #[getter]
    fn n_examples(&self) -> usize {
        self.inner.n_examples()
    }
    #[getter]
    fn n_classes(&self) -> u32 {
        self.inner.task().output_columns()
    }
    #[getter]
    fn multilabel(&self) -> bool {
        matches!(self.inner.task(), Task::MultiLabel { .. })
    }
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind().as_str()
    }
    /// Whether labels may change between epochs, keeping the latest (the `aum` package does).
    #[getter]
    fn allow_label_change(&self) -> bool {
        self.inner.allows_label_change()
    }
    #[setter]
    fn set_allow_label_change(&mut self, allow: bool) {
        self.inner.set_label_changes(allow);
    }
    /// Latest epoch observed for any example, or None.
    #[getter]
    fn last_epoch(&self, py: Python<'_>) -> Option<u32> {
        let state = &self.inner;
        py.detach(|| state.last_epoch())
    }
}

fn arrow_concat(
    schema: &arrow_schema::SchemaRef,
    batches: &[arrow_array::RecordBatch],
) -> PyResult<arrow_array::RecordBatch> {
    arrow_select::concat::concat_batches(schema, batches).map_err(|e| PyValueError::new_err(e.to_string()))
}

//! `State`: the per-example state (`fastcarto_core::State`) that `fastcarto.Accumulator` and
//! `fastcarto.DataMap` hold: updates, merges, tables and serialization.

use crate::args::{contiguous, dtype_error, finalize_options, parse, task_of};
use crate::arrow_ffi::{AnyRecordBatch, PyArray, PyRecordBatch};
use crate::errors::to_py;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::Buffer;
use fastcarto_core::{FinalizeOptions, NanPolicy, State, Task, serialize};
use numpy::{PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

/// The state of every example: what `fastcarto.Accumulator` and `fastcarto.DataMap` hold.
///
/// Usable from several Python threads at once: the state sits behind a lock, taken with the GIL
/// released (the engine runs without the GIL, so a thread waiting for the lock while holding it
/// could stall the one that holds the lock), so calls from different threads run one after
/// another, each whole.
#[pyclass(name = "State", module = "fastcarto._core", frozen)]
pub(crate) struct PyState {
    inner: Mutex<State>,
}

impl PyState {
    pub(crate) fn new(state: State) -> Self {
        PyState { inner: Mutex::new(state) }
    }

    /// Runs `f` on the state (for the binding's other modules), with the GIL released.
    pub(crate) fn with_state<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut State) -> R + Send) -> R {
        self.with(py, f)
    }

    /// Runs `f` on the state, with the GIL released while waiting for the lock and running.
    fn with<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut State) -> R + Send) -> R {
        py.detach(|| f(&mut lock(&self.inner)))
    }

    /// The metrics table that `make` (`fastcarto_core::finalize` or `take_table`) builds from
    /// the state, as a `pyarrow.RecordBatch`.
    fn table<'py>(
        &self,
        py: Python<'py>,
        opts: FinalizeOptions,
        ids: Option<PyArray>,
        make: impl FnOnce(&mut State, Option<ArrayRef>, FinalizeOptions) -> fastcarto_core::Result<RecordBatch> + Send,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ids = ids.map(|a| a.into_inner().0);
        let batch = self.with(py, |state| make(state, ids, opts)).map_err(to_py)?;
        PyRecordBatch::new(batch).into_pyarrow(py)
    }
}

/// A poisoned lock only means a panic elsewhere; the engine's updates are all-or-nothing, so the
/// state is still whole.
fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        Ok(PyState::new(state.with_label_changes(allow_label_change)))
    }

    /// Folds one epoch's `[rows, classes]` outputs in (all-or-nothing).
    #[pyo3(signature = (outputs, labels, *, epoch, index=None, nan_policy="raise", threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
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
        if let Ok(a) = outputs.extract::<PyReadonlyArray2<'_, f32>>() {
            let view = a.as_array();
            self.with(py, |state| state.update(view, labels, epoch, index, nan, threads)).map_err(to_py)
        } else if let Ok(a) = outputs.extract::<PyReadonlyArray2<'_, f64>>() {
            let view = a.as_array();
            self.with(py, |state| state.update(view, labels, epoch, index, nan, threads)).map_err(to_py)
        } else {
            Err(dtype_error(outputs, "outputs"))
        }
    }

    /// Merges another state of the same examples (later epochs, or other examples) into this one.
    fn merge(&self, py: Python<'_>, other: PyRef<'_, PyState>) -> PyResult<()> {
        if std::ptr::eq(self, &*other) {
            // One lock cannot be taken twice; merging with an equal copy is what was asked.
            let copy = self.with(py, |state| state.clone());
            return self.with(py, |state| state.merge(&copy)).map_err(to_py);
        }
        // Two locks, always taken in address order, so that `a.merge(b)` and `b.merge(a)` in two
        // threads cannot each hold one and wait for the other.
        let (this, that) = (&self.inner, &other.inner);
        py.detach(|| {
            let (mut state, other) = if (this as *const Mutex<State>) < (that as *const Mutex<State>) {
                let state = lock(this);
                (state, lock(that))
            } else {
                let other = lock(that);
                (lock(this), other)
            };
            state.merge(&other)
        })
        .map_err(to_py)
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
        self.table(py, finalize_options(compat, ddof)?, ids, |state, ids, opts| {
            fastcarto_core::finalize(state, ids, opts)
        })
    }

    /// Takes the metrics table out of a state that is not needed afterwards (as `finalize`):
    /// its memory goes back to the system while the table is written (memory peaks near the
    /// larger of the two, not their sum), and the state is left with no examples.
    #[pyo3(signature = (*, compat=None, ddof=0, ids=None))]
    fn take_table<'py>(
        &self,
        py: Python<'py>,
        compat: Option<&str>,
        ddof: u32,
        ids: Option<PyArray>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.table(py, finalize_options(compat, ddof)?, ids, fastcarto_core::take_table)
    }

    /// The raw state as a `pyarrow.RecordBatch` (one row per example slot).
    fn to_arrow<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let batch = self.with(py, |state| serialize::to_record_batch(state)).map_err(to_py)?;
        PyRecordBatch::new(batch).into_pyarrow(py)
    }

    /// Rebuilds a state from `to_arrow()`'s output (any Arrow record batch or stream).
    #[staticmethod]
    fn from_arrow(data: AnyRecordBatch) -> PyResult<Self> {
        let table = data.into_table()?;
        let (batches, schema) = table.into_inner();
        let batch = arrow_concat(&schema, &batches)?;
        Ok(PyState::new(serialize::from_record_batch(&batch).map_err(to_py)?))
    }

    /// Arrow IPC stream bytes of the raw state.
    fn to_ipc<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.with(py, |state| serialize::to_ipc_bytes(state)).map_err(to_py)?;
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
        Ok(PyState::new(state))
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let ctor = slf.get_type().getattr("from_ipc")?;
        Ok((ctor, (slf.get().to_ipc(slf.py())?,)))
    }

    #[getter]
    fn n_examples(&self, py: Python<'_>) -> usize {
        self.with(py, |state| state.n_examples())
    }
    #[getter]
    fn n_classes(&self, py: Python<'_>) -> u32 {
        self.with(py, |state| state.task().output_columns())
    }
    #[getter]
    fn multilabel(&self, py: Python<'_>) -> bool {
        self.with(py, |state| matches!(state.task(), Task::MultiLabel { .. }))
    }
    #[getter]
    fn kind(&self, py: Python<'_>) -> &'static str {
        self.with(py, |state| state.kind().as_str())
    }
    /// Whether labels may change between epochs, keeping the latest (the `aum` package does).
    #[getter]
    fn allow_label_change(&self, py: Python<'_>) -> bool {
        self.with(py, |state| state.allows_label_change())
    }
    #[setter]
    fn set_allow_label_change(&self, py: Python<'_>, allow: bool) {
        self.with(py, |state| state.set_label_changes(allow));
    }
    /// Latest epoch observed for any example, or None.
    #[getter]
    fn last_epoch(&self, py: Python<'_>) -> Option<u32> {
        self.with(py, |state| state.last_epoch())
    }
}

fn arrow_concat(
    schema: &arrow_schema::SchemaRef,
    batches: &[arrow_array::RecordBatch],
) -> PyResult<arrow_array::RecordBatch> {
    arrow_select::concat::concat_batches(schema, batches).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Merges two states of examples known by id (what `read_keyed` returns: the state and its ids,
/// `None` for `0..n`) into the state of the union of their ids and those ids
/// (`fastcarto_core::merge_by_id`), with the GIL released.
#[pyfunction]
pub(crate) fn merge_by_id(
    py: Python<'_>,
    a: PyRef<'_, PyState>,
    a_ids: Option<PyArray>,
    b: PyRef<'_, PyState>,
    b_ids: Option<PyArray>,
) -> PyResult<(PyState, Py<PyAny>)> {
    let a_ids = a_ids.map(|ids| ids.into_inner().0);
    let b_ids = b_ids.map(|ids| ids.into_inner().0);
    let (this, that) = (&a.inner, &b.inner);
    let (state, ids) = py
        .detach(|| {
            if std::ptr::eq(this, that) {
                let state = lock(this);
                return fastcarto_core::merge_by_id(&state, a_ids.as_ref(), &state, b_ids.as_ref());
            }
            // Two locks, always taken in address order (as `merge`), so that two threads
            // merging the same pair in opposite orders cannot each hold one and wait.
            let (first, second) = if (this as *const Mutex<State>) < (that as *const Mutex<State>) {
                let first = lock(this);
                (first, lock(that))
            } else {
                let second = lock(that);
                (lock(this), second)
            };
            fastcarto_core::merge_by_id(&first, a_ids.as_ref(), &second, b_ids.as_ref())
        })
        .map_err(to_py)?;
    let ids = match ids {
        Some(ids) => PyArray::from_array_ref(ids).to_pyarrow(py)?.unbind(),
        None => py.None(),
    };
    Ok((PyState::new(state), ids))
}

//! `fastcarto._core`: the Python face of `fastcarto-core`.
//!
//! Nothing here computes: functions borrow numpy buffers (zero-copy), release the GIL around the
//! engine, and convert results and errors. The public, documented API is the `fastcarto`
//! Python package that wraps this module.

mod errors;

use arrow_buffer::Buffer;
use errors::to_py;
use fastcarto_core::KeyedState;
use fastcarto_core::read::long::Columns;
use fastcarto_core::read::npy::{MappedNpy, NpyView, dims};
use fastcarto_core::read::{self, EpochFilter, FileFormat, ReadOptions};
use fastcarto_core::sys::pool as parallel;
use fastcarto_core::{FinalizeOptions, Kind, NanPolicy, State, Task, serialize};
use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3_arrow::input::AnyRecordBatch;
use pyo3_arrow::{PyArray, PyRecordBatch};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::Arc;

fn parse<T: std::str::FromStr<Err = fastcarto_core::Error>>(s: &str) -> PyResult<T> {
    s.parse().map_err(to_py)
}

/// A contiguous view of a 1-d numpy array argument.
fn contiguous<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, what: &str) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| PyValueError::new_err(format!("{what} must be contiguous")))
}

fn task_of(n_classes: u32, multilabel: bool) -> Task {
    if multilabel { Task::MultiLabel { n_classes } } else { Task::MultiClass { n_classes } }
}

fn dtype_error(obj: &Bound<'_, PyAny>, what: &str) -> PyErr {
    let dtype = obj.getattr("dtype").map(|d| d.to_string()).unwrap_or_else(|_| "unknown".into());
    PyTypeError::new_err(format!("{what} must be a float32 or float64 numpy array, got dtype {dtype}"))
}

/// The state of every example: what `fastcarto.Accumulator` and `fastcarto.DataMap` hold.
#[pyclass(name = "State", module = "fastcarto._core")]
struct PyState {
    inner: State,
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

/// How a table presents the state, parsed.
fn finalize_options(compat: Option<&str>, ddof: u32) -> PyResult<FinalizeOptions> {
    Ok(FinalizeOptions { compat: compat.map(parse).transpose()?, ddof })
}

/// The metrics table of a dense `[epochs, examples, classes]` input (a float32/float64 array, or
/// the path of a `.npy` file, memory-mapped), in one pass that never holds the per-example state
/// (`fastcarto_core::compute_dense_table`).
#[pyfunction]
#[pyo3(signature = (outputs, labels, *, kind, epochs, multilabel=false, nan_policy="raise", threads=None, compat=None, ddof=0))]
#[allow(clippy::too_many_arguments)]
fn map_dense<'py>(
    py: Python<'py>,
    outputs: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'_, i64>,
    kind: &str,
    epochs: Vec<usize>,
    multilabel: bool,
    nan_policy: &str,
    threads: Option<usize>,
    compat: Option<&str>,
    ddof: u32,
) -> PyResult<Bound<'py, PyAny>> {
    let (kind, nan) = (parse(kind)?, parse(nan_policy)?);
    let opts = finalize_options(compat, ddof)?;
    let labels = contiguous(&labels, "labels")?;
    let run = |c: usize| task_of(c as u32, multilabel);
    let table = if let Ok(path) = outputs.extract::<PathBuf>() {
        py.detach(|| {
            let map = MappedNpy::open(&path)?;
            let view = map.view()?;
            let task = run(dims(&view).2);
            match view {
                NpyView::F32(v) => {
                    fastcarto_core::compute_dense_table(v, &epochs, labels, task, kind, nan, threads, opts)
                }
                NpyView::F64(v) => {
                    fastcarto_core::compute_dense_table(v, &epochs, labels, task, kind, nan, threads, opts)
                }
            }
        })
    } else if let Ok(a) = outputs.extract::<PyReadonlyArray3<'_, f32>>() {
        let (view, task) = (a.as_array(), run(a.shape()[2]));
        py.detach(|| fastcarto_core::compute_dense_table(view, &epochs, labels, task, kind, nan, threads, opts))
    } else if let Ok(a) = outputs.extract::<PyReadonlyArray3<'_, f64>>() {
        let (view, task) = (a.as_array(), run(a.shape()[2]));
        py.detach(|| fastcarto_core::compute_dense_table(view, &epochs, labels, task, kind, nan, threads, opts))
    } else {
        return Err(dtype_error(outputs, "outputs"));
    };
    PyRecordBatch::new(table.map_err(to_py)?).into_pyarrow(py)
}

/// Shape `(epochs, examples, classes)` and dtype name of a `.npy` file, read from its header.
#[pyfunction]
fn inspect_npy(py: Python<'_>, path: PathBuf) -> PyResult<((usize, usize, usize), &'static str)> {
    py.detach(|| {
        let map = MappedNpy::open(&path)?;
        let view = map.view()?;
        let name = match view {
            NpyView::F32(_) => "float32",
            NpyView::F64(_) => "float64",
        };
        Ok((dims(&view), name))
    })
    .map_err(to_py)
}

/// Which epochs a read keeps: `("all",)`, `("first", k)`, `("range", start, stop_or_None,
/// step)` or `("list", [epochs])`.
fn epoch_filter(spec: &Bound<'_, PyAny>) -> PyResult<EpochFilter> {
    let kind: String = spec.get_item(0)?.extract()?;
    match kind.as_str() {
        "all" => Ok(EpochFilter::All),
        "range" => Ok(EpochFilter::Range {
            start: spec.get_item(1)?.extract()?,
            stop: spec.get_item(2)?.extract()?,
            step: spec.get_item(3)?.extract()?,
        }),
        "list" => Ok(EpochFilter::List(spec.get_item(1)?.extract()?)),
        "first" => Ok(EpochFilter::First(spec.get_item(1)?.extract()?)),
        other => Err(PyValueError::new_err(format!("unknown epoch selection {other:?}"))),
    }
}

fn read_options<'a>(
    kind: &str,
    columns: (String, String, String, Option<String>),
    nan_policy: &str,
    epochs: &Bound<'_, PyAny>,
    require_complete: bool,
    progress: Option<&'a (dyn Fn(u64, u64, u64) + Sync)>,
) -> PyResult<ReadOptions<'a>> {
    let (epoch, id, label, outputs) = columns;
    Ok(ReadOptions {
        kind: parse(kind)?,
        columns: Columns { epoch, id, label, outputs },
        nan_policy: parse(nan_policy)?,
        epochs: epoch_filter(epochs)?,
        require_complete,
        progress,
    })
}

/// Calls a Python progress callback `(bytes_done, bytes_total, rows)` from engine threads.
fn progress_fn(cb: &Option<Py<PyAny>>) -> Option<impl Fn(u64, u64, u64) + Sync + '_> {
    cb.as_ref().map(|cb| {
        move |done: u64, total: u64, rows: u64| {
            // A failing progress bar must not abort the read.
            Python::attach(|py| drop(cb.call1(py, (done, total, rows))));
        }
    })
}

/// Runs a keyed read with the GIL released, in the requested thread pool, and converts its
/// (state, ids) result.
#[allow(clippy::too_many_arguments)]
fn keyed_read<'py>(
    py: Python<'py>,
    kind: &str,
    columns: (String, String, String, Option<String>),
    nan_policy: &str,
    epochs: &Bound<'py, PyAny>,
    require_complete: bool,
    progress: Option<Py<PyAny>>,
    threads: Option<usize>,
    read: impl FnOnce(&ReadOptions<'_>) -> fastcarto_core::Result<KeyedState> + Send,
) -> PyResult<(PyState, Py<PyAny>)> {
    let cb = progress_fn(&progress);
    let cb = cb.as_ref().map(|f| f as &(dyn Fn(u64, u64, u64) + Sync));
    let opts = read_options(kind, columns, nan_policy, epochs, require_complete, cb)?;
    let (state, ids) = py
        .detach(|| parallel::run(threads, usize::MAX, || read(&opts)?.into_state()))
        .map_err(to_py)?
        .map_err(to_py)?;
    let ids = match ids {
        Some(ids) => PyArray::from_array_ref(ids).to_pyarrow(py)?.unbind(),
        None => py.None(),
    };
    Ok((PyState { inner: state }, ids))
}

/// Reads a keyed long table (file, directory or glob) into (state, ids).
#[pyfunction]
#[pyo3(signature = (source, *, kind, columns, nan_policy, epochs, require_complete, progress=None, threads=None))]
#[allow(clippy::too_many_arguments)]
fn read_path<'py>(
    py: Python<'py>,
    source: &str,
    kind: &str,
    columns: (String, String, String, Option<String>),
    nan_policy: &str,
    epochs: &Bound<'py, PyAny>,
    require_complete: bool,
    progress: Option<Py<PyAny>>,
    threads: Option<usize>,
) -> PyResult<(PyState, Py<PyAny>)> {
    keyed_read(py, kind, columns, nan_policy, epochs, require_complete, progress, threads, |opts| {
        read::read_path(source, opts)
    })
}

/// Reads a keyed long table from an Arrow stream (anything with `__arrow_c_stream__`).
#[pyfunction]
#[pyo3(signature = (data, *, kind, columns, nan_policy, epochs, require_complete, progress=None, threads=None))]
#[allow(clippy::too_many_arguments)]
fn read_stream<'py>(
    py: Python<'py>,
    data: AnyRecordBatch,
    kind: &str,
    columns: (String, String, String, Option<String>),
    nan_policy: &str,
    epochs: &Bound<'py, PyAny>,
    require_complete: bool,
    progress: Option<Py<PyAny>>,
    threads: Option<usize>,
) -> PyResult<(PyState, Py<PyAny>)> {
    let reader = data.into_reader()?;
    keyed_read(py, kind, columns, nan_policy, epochs, require_complete, progress, threads, |opts| {
        read::read_batches(reader, opts)
    })
}

/// (path, format, epoch in the name, size in bytes).
type DiscoveredFile = (PathBuf, &'static str, Option<u32>, u64);

/// The data files of a source: `[(path, format, epoch_in_name or None, size)]`.
#[pyfunction]
fn discover(py: Python<'_>, source: &str) -> PyResult<Vec<DiscoveredFile>> {
    let files = py.detach(|| read::discover(source)).map_err(to_py)?;
    Ok(files
        .into_iter()
        .map(|f| {
            let format = match f.format {
                FileFormat::IpcFile => "ipc-file",
                FileFormat::IpcStream => "ipc-stream",
                FileFormat::Parquet => "parquet",
                FileFormat::CartographyJsonl => "cartography-jsonl",
                FileFormat::Npy => "npy",
            };
            (f.path, format, f.name_epoch, f.size)
        })
        .collect())
}

/// Folds one `.npy` file per epoch (`[(path, epoch)]`, every file `[examples, classes]`).
#[pyfunction]
#[pyo3(signature = (files, labels, *, kind, nan_policy="raise", epochs=None, threads=None))]
fn compute_npy_epochs(
    py: Python<'_>,
    files: Vec<(PathBuf, u32)>,
    labels: PyReadonlyArray1<'_, i64>,
    kind: &str,
    nan_policy: &str,
    epochs: Option<&Bound<'_, PyAny>>,
    threads: Option<usize>,
) -> PyResult<PyState> {
    let epochs = epochs.map(epoch_filter).transpose()?.unwrap_or_default();
    let kind: Kind = parse(kind)?;
    let nan: NanPolicy = parse(nan_policy)?;
    let labels = contiguous(&labels, "labels")?;
    let state = py
        .detach(|| parallel::run(threads, usize::MAX, || read::read_npy_epochs(&files, labels, kind, nan, &epochs)))
        .map_err(to_py)?
        .map_err(to_py)?;
    Ok(PyState { inner: state })
}

/// Number of worker threads a call with `threads=None` uses (honours FASTCARTO_NUM_THREADS).
#[pyfunction]
#[pyo3(signature = (threads=None))]
fn thread_count(threads: Option<usize>) -> PyResult<usize> {
    fastcarto_core::sys::pool::thread_count(threads).map_err(to_py)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<PyState>()?;
    m.add_function(wrap_pyfunction!(map_dense, m)?)?;
    m.add_function(wrap_pyfunction!(inspect_npy, m)?)?;
    m.add_function(wrap_pyfunction!(thread_count, m)?)?;
    m.add_function(wrap_pyfunction!(read_path, m)?)?;
    m.add_function(wrap_pyfunction!(read_stream, m)?)?;
    m.add_function(wrap_pyfunction!(discover, m)?)?;
    m.add_function(wrap_pyfunction!(compute_npy_epochs, m)?)?;
    errors::register(m)?;
    Ok(())
}

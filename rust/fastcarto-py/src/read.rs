//! Reading files and Arrow streams (`fastcarto_core::read`): long tables by id, per-epoch `.npy`
//! files, and the discovery of a source's files.

use crate::args::{Epochs, contiguous, parse};
use crate::arrow_ffi::{AnyRecordBatch, PyArray};
use crate::errors::to_py;
use crate::state::PyState;
use arrow_array::RecordBatchReader;
use fastcarto_core::read::long::Columns;
use fastcarto_core::read::{self, EpochFilter, ReadOptions};
use fastcarto_core::sys::pool;
use fastcarto_core::{Kind, NanPolicy};
use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::path::PathBuf;

fn read_options<'a>(
    kind: &str,
    columns: (String, String, String, Option<String>),
    nan_policy: &str,
    epochs: EpochFilter,
    require_complete: bool,
    progress: Option<&'a (dyn Fn(u64, u64, u64) + Sync)>,
) -> PyResult<ReadOptions<'a>> {
    let (epoch, id, label, outputs) = columns;
    Ok(ReadOptions {
        kind: parse(kind)?,
        columns: Columns { epoch, id, label, outputs },
        nan_policy: parse(nan_policy)?,
        epochs,
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

/// What a keyed read takes its rows from: a file, directory or glob (a `str`), or Arrow data
/// (anything with `__arrow_c_stream__` or `__arrow_c_array__`).
pub(crate) enum KeyedSource {
    Path(String),
    Arrow(Box<dyn RecordBatchReader + Send>),
}

impl<'py> FromPyObject<'_, 'py> for KeyedSource {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        match obj.cast::<PyString>() {
            Ok(path) => Ok(Self::Path(path.to_cow()?.into_owned())),
            Err(_) => Ok(Self::Arrow(obj.extract::<AnyRecordBatch>()?.into_reader()?)),
        }
    }
}

/// Reads a keyed long table (a file, directory or glob, or an Arrow stream) into (state, ids),
/// with the GIL released, in the requested thread pool.
#[pyfunction]
#[pyo3(signature = (source, *, kind, columns, nan_policy, epochs=None, require_complete, progress=None, threads=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_keyed<'py>(
    py: Python<'py>,
    source: KeyedSource,
    kind: &str,
    columns: (String, String, String, Option<String>),
    nan_policy: &str,
    epochs: Option<Epochs<'py>>,
    require_complete: bool,
    progress: Option<Py<PyAny>>,
    threads: Option<usize>,
) -> PyResult<(PyState, Py<PyAny>)> {
    let cb = progress_fn(&progress);
    let cb = cb.as_ref().map(|f| f as &(dyn Fn(u64, u64, u64) + Sync));
    let opts = read_options(kind, columns, nan_policy, Epochs::filter(epochs)?, require_complete, cb)?;
    let fold = || {
        let state = match source {
            KeyedSource::Path(path) => read::read_path(&path, &opts),
            KeyedSource::Arrow(reader) => read::read_batches(reader, &opts),
        }?;
        state.into_state()
    };
    let (state, ids) = py.detach(|| pool::run(threads, usize::MAX, fold)).map_err(to_py)?.map_err(to_py)?;
    let ids = match ids {
        Some(ids) => PyArray::from_array_ref(ids).to_pyarrow(py)?.unbind(),
        None => py.None(),
    };
    Ok((PyState::new(state), ids))
}

/// (path, format, epoch in the name, size in bytes).
type DiscoveredFile = (PathBuf, &'static str, Option<u32>, u64);

/// The data files of a source: `[(path, format, epoch_in_name or None, size)]`.
#[pyfunction]
pub(crate) fn discover(py: Python<'_>, source: &str) -> PyResult<Vec<DiscoveredFile>> {
    let files = py.detach(|| read::discover(source)).map_err(to_py)?;
    Ok(files.into_iter().map(|f| (f.path, f.format.name(), f.name_epoch, f.size)).collect())
}

/// Folds one `.npy` file per epoch (`[(path, epoch)]`, every file `[examples, classes]`).
#[pyfunction]
#[pyo3(signature = (files, labels, *, kind, nan_policy="raise", epochs=None, threads=None))]
pub(crate) fn compute_npy_epochs(
    py: Python<'_>,
    files: Vec<(PathBuf, u32)>,
    labels: PyReadonlyArray1<'_, i64>,
    kind: &str,
    nan_policy: &str,
    epochs: Option<Epochs<'_>>,
    threads: Option<usize>,
) -> PyResult<PyState> {
    let epochs = Epochs::filter(epochs)?;
    let kind: Kind = parse(kind)?;
    let nan: NanPolicy = parse(nan_policy)?;
    let labels = contiguous(&labels, "labels")?;
    let state = py
        .detach(|| pool::run(threads, usize::MAX, || read::read_npy_epochs(&files, labels, kind, nan, &epochs)))
        .map_err(to_py)?
        .map_err(to_py)?;
    Ok(PyState::new(state))
}

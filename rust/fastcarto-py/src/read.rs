//! Reading files and Arrow streams (`fastcarto_core::read`): long tables by id, per-epoch `.npy`
//! files, and the discovery of a source's files.

use crate::args::{Epochs, contiguous, parse};
use crate::arrow_ffi::{AnyRecordBatch, PyArray};
use crate::errors::to_py;
use crate::state::PyState;
use arrow_array::RecordBatchReader;
use fastcarto_core::read::id_range::{IdBound, IdRange};
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
        id_range: None,
        epoch_at_a_time: false,
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
    /// Files in the order to read them, each with the epoch its name gives.
    Files(Vec<(PathBuf, Option<u32>)>),
    Arrow(Box<dyn RecordBatchReader + Send>),
}

impl<'py> FromPyObject<'_, 'py> for KeyedSource {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(path) = obj.cast::<PyString>() {
            return Ok(Self::Path(path.to_cow()?.into_owned()));
        }
        if obj.cast::<pyo3::types::PyList>().is_ok() {
            return Ok(Self::Files(obj.extract()?));
        }
        Ok(Self::Arrow(obj.extract::<AnyRecordBatch>()?.into_reader()?))
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
            KeyedSource::Files(list) => read::read_files(&listed_files(list)?, &opts),
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

/// What `read_keyed_part` returns: the state and its ids (`None`, `None` when the part has no
/// rows in the selected epochs), the epochs it holds, its rows, and whether it was folded one
/// epoch at a time.
type Part = (Option<PyState>, Py<PyAny>, Vec<u32>, u64, bool);

fn listed_files(list: Vec<(PathBuf, Option<u32>)>) -> fastcarto_core::Result<Vec<read::DataFile>> {
    list.into_iter().map(|(path, epoch)| read::DataFile::at(path, epoch)).collect()
}

/// One end of an id range as Python gives it: an int or a str.
#[derive(FromPyObject)]
pub(crate) enum PyIdBound {
    Int(i64),
    Str(String),
}

impl From<PyIdBound> for IdBound {
    fn from(b: PyIdBound) -> Self {
        match b {
            PyIdBound::Int(v) => IdBound::Int(v),
            PyIdBound::Str(v) => IdBound::Str(v),
        }
    }
}

/// Reads one part of a keyed read split over several processes (`fastcarto.dask`): as
/// `read_keyed`, without the checks on the whole read (`check_keyed_parts` makes them once every
/// part is read and merged with `merge_by_id`). With `id_range=(lo, hi)` (either end `None`),
/// only the examples with `lo <= id < hi` are folded.
#[pyfunction]
#[pyo3(signature = (source, *, kind, columns, nan_policy, epochs=None, threads=None, id_range=None, epoch_at_a_time=false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_keyed_part<'py>(
    py: Python<'py>,
    source: KeyedSource,
    kind: &str,
    columns: (String, String, String, Option<String>),
    nan_policy: &str,
    epochs: Option<Epochs<'py>>,
    threads: Option<usize>,
    id_range: Option<(Option<PyIdBound>, Option<PyIdBound>)>,
    epoch_at_a_time: bool,
) -> PyResult<Part> {
    let mut opts = read_options(kind, columns, nan_policy, part_filter(Epochs::filter(epochs)?), false, None)?;
    opts.id_range = match id_range {
        None => None,
        Some((lo, hi)) => Some(IdRange::new(lo.map(Into::into), hi.map(Into::into)).map_err(to_py)?),
    };
    opts.epoch_at_a_time = epoch_at_a_time;
    if opts.id_range.is_some() && matches!(source, KeyedSource::Arrow(_)) {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "id_range splits a read of files; an Arrow stream is one part as it is",
        ));
    }
    let fold = || {
        let (state, by_epoch) = match source {
            KeyedSource::Path(path) => read::read_path_part(&path, &opts),
            KeyedSource::Files(list) => read::read_files_part(&listed_files(list)?, &opts),
            KeyedSource::Arrow(reader) => read::read_batches_part(reader, &opts).map(|s| (s, false)),
        }?;
        let (epochs, rows) = (state.epochs().collect::<Vec<_>>(), state.rows());
        if rows == 0 && state.n_examples() == 0 {
            return Ok((None, epochs, rows, by_epoch));
        }
        Ok::<_, fastcarto_core::Error>((Some(state.into_state()?), epochs, rows, by_epoch))
    };
    let (state, epochs, rows, by_epoch) =
        py.detach(|| pool::run(threads, usize::MAX, fold)).map_err(to_py)?.map_err(to_py)?;
    Ok(match state {
        None => (None, py.None(), epochs, rows, by_epoch),
        Some((state, ids)) => {
            let ids = match ids {
                Some(ids) => PyArray::from_array_ref(ids).to_pyarrow(py)?.unbind(),
                None => py.None(),
            };
            (Some(PyState::new(state)), ids, epochs, rows, by_epoch)
        }
    })
}

/// Split points that divide the ids of the first batch of each file (`[(path, epoch in its
/// name)]`) into `parts` ranges of about equal size (`read_keyed_part`'s `id_range`):
/// increasing ints or strs, fewer than `parts - 1` when there are few distinct ids.
#[pyfunction]
#[pyo3(signature = (files, *, kind, columns, parts))]
pub(crate) fn id_split_points(
    py: Python<'_>,
    files: Vec<(PathBuf, Option<u32>)>,
    kind: &str,
    columns: (String, String, String, Option<String>),
    parts: usize,
) -> PyResult<Vec<Py<PyAny>>> {
    let opts = read_options(kind, columns, "raise", EpochFilter::All, false, None)?;
    let files = listed_files(files).map_err(to_py)?;
    let points = py.detach(|| read::id_range::split_points(&files, &opts, parts)).map_err(to_py)?;
    points
        .into_iter()
        .map(|p| match p {
            IdBound::Int(v) => Ok(v.into_pyobject(py)?.into_any().unbind()),
            IdBound::Str(v) => Ok(PyString::new(py, &v).into_any().unbind()),
        })
        .collect()
}

/// "The first k epochs" selects `0..k` in each part; that all of them are present is checked on
/// the whole (`check_keyed_parts`).
fn part_filter(filter: EpochFilter) -> EpochFilter {
    match filter {
        EpochFilter::First(k) => EpochFilter::Range { start: 0, stop: Some(k), step: 1 },
        other => other,
    }
}

/// The checks on the whole of a read split into parts (`read_keyed_part`), after the parts are
/// merged into `state` with `ids`: some rows, every selected epoch present (`epochs`: the union
/// of the parts'), and with `require_complete` every example seen at each of them.
#[pyfunction]
#[pyo3(signature = (state, ids, *, rows, epochs_present, epochs=None, require_complete))]
pub(crate) fn check_keyed_parts<'py>(
    py: Python<'py>,
    state: Option<PyRef<'py, PyState>>,
    ids: Option<PyArray>,
    rows: u64,
    epochs_present: Vec<u32>,
    epochs: Option<Epochs<'py>>,
    require_complete: bool,
) -> PyResult<()> {
    let mut opts = ReadOptions::new(Kind::Logits);
    opts.epochs = Epochs::filter(epochs)?;
    let ids = ids.map(|ids| ids.into_inner().0);
    let n_epochs = epochs_present.len() as u32;
    read::check_parts(rows, &epochs_present, &opts).map_err(to_py)?;
    match state {
        Some(state) if require_complete => state
            .with_state(py, |s| fastcarto_core::state::by_id::check_complete(s, ids.as_ref(), n_epochs))
            .map_err(to_py),
        _ => Ok(()),
    }
}

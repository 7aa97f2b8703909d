//! Dense inputs: `[epochs, examples, classes]` arrays and `.npy` files, folded straight into the
//! metrics table (`fastcarto_core::compute_dense_table`).

use crate::args::{Epochs, contiguous, dtype_error, finalize_options, parse, task_of};
use crate::arrow_ffi::PyRecordBatch;
use crate::errors::to_py;
use fastcarto_core::read::npy::{MappedNpy, NpyView, dims};
use numpy::{PyReadonlyArray1, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::prelude::*;
use std::path::PathBuf;

/// The metrics table of a dense `[epochs, examples, classes]` input (a float32/float64 array, or
/// the path of a `.npy` file, memory-mapped), in one pass that never holds the per-example state
/// (`fastcarto_core::compute_dense_table`).
#[pyfunction]
#[pyo3(signature = (outputs, labels, *, kind, epochs=None, multilabel=false, nan_policy="raise", threads=None, compat=None, ddof=0))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn map_dense<'py>(
    py: Python<'py>,
    outputs: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'_, i64>,
    kind: &str,
    epochs: Option<Epochs<'py>>,
    multilabel: bool,
    nan_policy: &str,
    threads: Option<usize>,
    compat: Option<&str>,
    ddof: u32,
) -> PyResult<Bound<'py, PyAny>> {
    let (kind, nan) = (parse(kind)?, parse(nan_policy)?);
    let epochs = Epochs::filter(epochs)?;
    let opts = finalize_options(compat, ddof)?;
    let labels = contiguous(&labels, "labels")?;
    let run = |c: usize| task_of(c as u32, multilabel);
    let table = if let Ok(path) = outputs.extract::<PathBuf>() {
        py.detach(|| {
            let map = MappedNpy::open(&path)?;
            map.read(|view| {
                let (n_epochs, _, cols) = dims(&view);
                let (task, epochs) = (run(cols), epochs.positions(n_epochs)?);
                match view {
                    NpyView::F32(v) => {
                        fastcarto_core::compute_dense_table(v, &epochs, labels, task, kind, nan, threads, opts)
                    }
                    NpyView::F64(v) => {
                        fastcarto_core::compute_dense_table(v, &epochs, labels, task, kind, nan, threads, opts)
                    }
                }
            })
        })
    } else if let Ok(a) = outputs.extract::<PyReadonlyArray3<'_, f32>>() {
        let (view, task) = (a.as_array(), run(a.shape()[2]));
        let epochs = epochs.positions(a.shape()[0]).map_err(to_py)?;
        py.detach(|| fastcarto_core::compute_dense_table(view, &epochs, labels, task, kind, nan, threads, opts))
    } else if let Ok(a) = outputs.extract::<PyReadonlyArray3<'_, f64>>() {
        let (view, task) = (a.as_array(), run(a.shape()[2]));
        let epochs = epochs.positions(a.shape()[0]).map_err(to_py)?;
        py.detach(|| fastcarto_core::compute_dense_table(view, &epochs, labels, task, kind, nan, threads, opts))
    } else {
        return Err(dtype_error(outputs, "outputs"));
    };
    PyRecordBatch::new(table.map_err(to_py)?).into_pyarrow(py)
}

/// Shape `(epochs, examples, classes)` and dtype name of a `.npy` file, read from its header.
#[pyfunction]
pub(crate) fn inspect_npy(py: Python<'_>, path: PathBuf) -> PyResult<((usize, usize, usize), &'static str)> {
    py.detach(|| {
        let map = MappedNpy::open(&path)?;
        map.read(|view| {
            let name = match view {
                NpyView::F32(_) => "float32",
                NpyView::F64(_) => "float64",
            };
            Ok((dims(&view), name))
        })
    })
    .map_err(to_py)
}

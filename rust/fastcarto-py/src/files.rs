//! The file suffixes the readers take, from the core, so Python lists none of its own.

use fastcarto_core::read::{DATA_SUFFIXES, TABLE_SUFFIXES};
use pyo3::prelude::*;

/// Adds `TABLE_SUFFIXES` (long tables) and `DATA_SUFFIXES` (everything `discover` reads) to the
/// module, each a tuple of lower-case suffixes with their dot (`".arrow"`, ...).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let dotted = |suffixes: &[&str]| suffixes.iter().map(|s| format!(".{s}")).collect::<Vec<_>>();
    m.add("TABLE_SUFFIXES", pyo3::types::PyTuple::new(m.py(), dotted(TABLE_SUFFIXES))?)?;
    m.add("DATA_SUFFIXES", pyo3::types::PyTuple::new(m.py(), dotted(DATA_SUFFIXES))?)?;
    Ok(())
}

/// The epoch a data file's path names (`epoch_3.parquet`, `epoch=3/part-0.parquet`,
/// `dynamics_epoch_3.jsonl`), or None: what `discover` reads from a path relative to the
/// directory it walks, for files listed elsewhere (object storage through fsspec).
#[pyfunction]
pub(crate) fn epoch_in_name(path: &str) -> Option<u32> {
    fastcarto_core::read::epoch_from_name(std::path::Path::new(path))
}

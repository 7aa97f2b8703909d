//! `fastcarto._core`: the Python face of `fastcarto-core`.
//!
//! Nothing here computes: functions borrow numpy buffers (zero-copy), release the GIL around the
//! engine, and convert results and errors. One module per part of the core it binds: `state`
//! (the per-example state), `dense` (arrays and `.npy` files), `read` (files and streams),
//! `pool` (threads), `knn` (the neighbour graph); `args` turns arguments into the core's types
//! and `errors` maps errors. The public, documented API is the `fastcarto` Python package that
//! wraps this module.

mod args;
mod arrow_ffi;
mod audit;
mod checks;
mod datamodels;
mod dense;
mod errors;
mod files;
mod knn;
mod pool;
mod probs;
mod read;
mod state;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<state::PyState>()?;
    m.add_function(wrap_pyfunction!(state::merge_by_id, m)?)?;
    m.add_function(wrap_pyfunction!(dense::map_dense, m)?)?;
    m.add_function(wrap_pyfunction!(dense::inspect_npy, m)?)?;
    m.add_function(wrap_pyfunction!(pool::thread_count, m)?)?;
    m.add_function(wrap_pyfunction!(read::read_keyed, m)?)?;
    m.add_function(wrap_pyfunction!(read::discover, m)?)?;
    m.add_function(wrap_pyfunction!(read::compute_npy_epochs, m)?)?;
    m.add_function(wrap_pyfunction!(read::read_keyed_part, m)?)?;
    m.add_function(wrap_pyfunction!(read::check_keyed_parts, m)?)?;
    m.add_function(wrap_pyfunction!(read::id_split_points, m)?)?;
    m.add_function(wrap_pyfunction!(files::epoch_in_name, m)?)?;
    m.add_class::<checks::PyBatchChecker>()?;
    m.add_class::<datamodels::PyStats>()?;
    m.add_function(wrap_pyfunction!(datamodels::datamodels_fit, m)?)?;
    m.add_function(wrap_pyfunction!(datamodels::datamodels_fit_fixed, m)?)?;
    m.add_function(wrap_pyfunction!(knn::knn, m)?)?;
    m.add_function(wrap_pyfunction!(knn::knn_block, m)?)?;
    m.add_function(wrap_pyfunction!(knn::knn_merge, m)?)?;
    m.add_function(wrap_pyfunction!(knn::knn_finish, m)?)?;
    audit::register_geometry(m)?;
    files::register(m)?;
    errors::register(m)?;
    probs::register(m)?;
    audit::register(m)?;
    Ok(())
}

//! The dataset audit's numeric work: one module per issue type of cleanlab's `Datalab`, each
//! a pure function of arrays reproducing cleanlab 2.x's definitions and constants (documented in
//! `docs/audit.md`). The Python package (`fastcarto._audit`) shapes their results into
//! cleanlab's columns and summaries.

pub mod class_imbalance;
pub mod label;
pub mod near_duplicate;
pub mod neighbours;
pub mod non_iid;
pub mod null;
pub mod outlier;
pub(crate) mod stats;
pub mod underperforming_group;

use rayon::prelude::*;

/// Checks that every label is a class in `0..n_classes`, with the engine's one label check
/// (its error names the first bad example).
pub(crate) fn check_labels(labels: &[i64], n_classes: usize) -> crate::error::Result<()> {
    crate::fold::validate_labels(labels, crate::metrics::Task::MultiClass { n_classes: n_classes as u32 }).map(drop)
}

/// Rows per parallel task.
const CHUNK: usize = 1 << 12;

/// `f(i)` for every row `i < n`, in parallel on fastcarto's pool when `n` is large (the result
/// does not depend on the thread count).
pub(crate) fn per_row<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    crate::sys::pool::run_default(n, || (0..n).into_par_iter().with_min_len(CHUNK).map(&f).collect())
}

//! k-nearest neighbours of every row of a features matrix among the other rows: the graph the
//! dataset audit's issue types (outliers, near-duplicates, non-IID order) read.
//!
//! - [`exact`](self::exact): blocked brute force. Distances come from dot products computed by a
//!   matrix-multiply kernel (`matrixmultiply`), `‖x−y‖² = ‖x‖² + ‖y‖² − 2x·y` on centred rows
//!   (cosine: `1 − x̂·ŷ` on unit rows), a short list of `k + EXTRA` candidates per row, then
//!   the final distances recomputed exactly in `f64` from the input rows (so cancellation in the
//!   dot-product form can neither make a distance negative nor reorder near-duplicates).
//! - [`knn_block`], [`KnnPart`]: the exact search in blocks of rows, for a cluster.
//! - [`ivf`](self::ivf): approximate, above [`EXACT_MAX_ROWS`] rows: k-means cells, each row
//!   searched exactly (same kernel) among the rows of the cells nearest to it.
//!
//! Rows with a NaN are neither searched nor returned: their graph row is `+inf` / `-1`. Ties are
//! broken by the lower row number, and a row is never its own neighbour. Exact duplicates are
//! then put first at distance 0 as cleanlab's `correct_knn_distances_and_indices` does
//! ([`dups`](self::dups)).

mod blocks;
mod dups;
mod exact;
mod ivf;
mod pack;
mod topk;

pub use blocks::{KnnPart, knn_block};

use crate::error::{Error, Result};
use crate::kernel::math::Real;
use crate::sys::pool;
use ndarray::ArrayView2;

/// Above this many searchable rows [`knn`] uses the approximate index unless told otherwise:
/// there exact search costs more than the rest of the audit together (see `docs/audit.md`).
pub const EXACT_MAX_ROWS: usize = 30_000;

/// The distance between two rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// `‖x − y‖₂`.
    Euclidean,
    /// `1 − x·y / (‖x‖‖y‖)`, as scikit-learn's `cosine_distances` (a zero row is at distance 1
    /// from every row), clipped to `[0, 2]`.
    Cosine,
}

impl std::str::FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "euclidean" => Ok(Metric::Euclidean),
            "cosine" => Ok(Metric::Cosine),
            _ => Err(Error::invalid(format!("unknown metric {s:?}; expected \"euclidean\" or \"cosine\""))),
        }
    }
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Euclidean => "euclidean",
            Metric::Cosine => "cosine",
        }
    }
}

/// How to search.
#[derive(Debug, Clone, Copy)]
pub struct KnnOptions {
    pub k: usize,
    pub metric: Metric,
    /// `Some(true)`: exact; `Some(false)`: approximate; `None`: exact up to [`EXACT_MAX_ROWS`].
    pub exact: Option<bool>,
    /// Seeds the approximate index's k-means (its only random step).
    pub seed: u64,
    pub threads: Option<usize>,
}

/// Row `i`'s `k` nearest other rows, row-major `(n, k)`: distances ascending (`f32`), row numbers
/// (`i64`; `-1` with distance `+inf` for rows with a NaN).
#[derive(Debug, Clone, PartialEq)]
pub struct KnnGraph {
    pub n: usize,
    pub k: usize,
    pub distances: Vec<f32>,
    pub indices: Vec<i64>,
}

/// The neighbour graph of the rows of `x` (`n × d`, any strides: a memory map works, blocks are
/// read as they are needed).
pub fn knn<T: Real>(x: ArrayView2<'_, T>, opts: KnnOptions) -> Result<KnnGraph> {
    let (n, d) = x.dim();
    let k = opts.k;
    if n == 0 || d == 0 {
        return Err(Error::Empty(format!("features have shape ({n}, {d}); need at least 2 rows and 1 column")));
    }
    if k == 0 {
        return Err(Error::invalid("k must be at least 1"));
    }
    if k >= n {
        return Err(Error::invalid(format!(
            "k={k} neighbours need at least k+1 rows, features have {n}; pass a smaller k"
        )));
    }
    let valid = searchable_rows(x)?;
    let m = valid.len();
    if k >= m {
        return Err(Error::invalid(format!(
            "k={k} neighbours need at least k+1 rows without NaN, features have {m} of {n}; pass a smaller k"
        )));
    }
    let exact = opts.exact.unwrap_or(m <= EXACT_MAX_ROWS);
    // Quadratic work: worth the pool from a few thousand rows on, whatever `MIN_PARALLEL_ROWS` says.
    let work_rows = if m >= 2048 { usize::MAX } else { 0 };
    pool::run(opts.threads, work_rows, || {
        let src = pack::Source::new(x, valid, opts.metric);
        let cand = if exact { exact::search(&src, k) } else { ivf::search(&src, k, opts.seed) };
        let mut graph = src.refine(&cand, k, n);
        dups::correct(&src, &mut graph);
        graph
    })
}

/// Positions of the rows without NaN; an infinite value is an error (no distance to it is finite).
fn searchable_rows<T: Real>(x: ArrayView2<'_, T>) -> Result<Vec<u32>> {
    if x.nrows() > u32::MAX as usize {
        return Err(Error::invalid(format!("{} rows: at most {} are supported", x.nrows(), u32::MAX)));
    }
    let mut valid = Vec::with_capacity(x.nrows());
    for (i, row) in x.outer_iter().enumerate() {
        let mut nan = false;
        for &v in row.iter() {
            if !v.is_finite() {
                if v.to_f64().is_nan() {
                    nan = true;
                } else {
                    return Err(Error::invalid(format!(
                        "features row {i} has an infinite value; replace it (NaN marks a row to leave out)"
                    )));
                }
            }
        }
        if !nan {
            valid.push(i as u32);
        }
    }
    Ok(valid)
}

#[cfg(test)]
mod tests;

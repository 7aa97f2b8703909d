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

/// The sum numpy's `add.reduce` gives for a contiguous float64 array (pairwise summation with
/// 8 accumulators and blocks of 128), so that means compared with a strict `<` (cleanlab's
/// cluster scores) or averaged thresholds round as cleanlab's do.
pub(crate) fn numpy_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum(&a[..n2]) + numpy_sum(&a[n2..])
    }
}

/// numpy's `mean` of a contiguous float64 array (NaN when empty).
pub(crate) fn numpy_mean(a: &[f64]) -> f64 {
    numpy_sum(a) / a.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_matches_plain_sum_on_integers() {
        for n in [0usize, 1, 7, 8, 9, 127, 128, 129, 1000] {
            let a: Vec<f64> = (0..n).map(|i| i as f64).collect();
            assert_eq!(numpy_sum(&a), (n * n.saturating_sub(1) / 2) as f64);
        }
    }
}

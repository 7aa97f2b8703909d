//! The `null` issue type (cleanlab's `NullIssueManager`): rows whose features are missing.
//!
//! For `n` rows of `d` features, with `nulls(i)` the NaN entries of row `i`:
//! - `score(i) = (d - nulls(i)) / d` (the fraction of present values; 1 = complete),
//! - `is_null_issue(i) = nulls(i) == d` (every feature missing),
//! - `column_impact(j)` = the fraction of rows whose feature `j` is NaN,
//! - the most common pattern of missing features among rows with at least one NaN, as
//!   cleanlab writes it (one `0`/`1` character per column), with the rows that have it; ties go
//!   to the pattern seen first (cleanlab counts with `collections.Counter`, which keeps
//!   insertion order).
//!
//! Only NaN counts as missing (`pandas.isna` on a float array); infinities are values.
//! The rows are scanned in parallel blocks, so a memory-mapped matrix streams through once.

use crate::error::{Error, Result};
use crate::kernel::math::Real;
use crate::sys::pool;
use ndarray::{ArrayView2, s};
use rayon::prelude::*;
use std::collections::HashMap;

/// Rows per parallel task: large enough that a task's pattern table and column counts cost
/// little next to reading its rows.
const BLOCK_ROWS: usize = 8192;

/// NaN mask (one bit per column) -> rows with exactly it, ascending.
type Patterns = HashMap<Vec<u64>, Vec<u64>, foldhash::fast::RandomState>;

/// The null scan of a feature matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct NullScan {
    /// Per row: the fraction of its features that are present (not NaN).
    pub scores: Vec<f64>,
    /// Per row: every feature is NaN.
    pub is_issue: Vec<bool>,
    /// Per column: the fraction of rows in which it is NaN.
    pub column_impact: Vec<f64>,
    /// The most common pattern of NaN columns among rows with at least one NaN, if any row has one.
    pub most_common: Option<NullPattern>,
}

/// A pattern of missing features and the rows that have exactly it.
#[derive(Debug, Clone, PartialEq)]
pub struct NullPattern {
    /// One character per column, `1` where the value is NaN (cleanlab's spelling).
    pub pattern: String,
    /// Rows with this pattern, ascending.
    pub rows: Vec<u64>,
}

/// What one block of rows contributes.
struct Block {
    nulls: Vec<u32>,
    column_nulls: Vec<u64>,
    patterns: Patterns,
}

/// Scans `features` (`n` rows, `d` columns; any strides) for NaN, in parallel on `threads`
/// workers (`None`: `FASTCARTO_NUM_THREADS` or every core).
pub fn null_scan<T: Real>(features: ArrayView2<'_, T>, threads: Option<usize>) -> Result<NullScan> {
    let (n, d) = features.dim();
    if n == 0 {
        return Err(Error::Empty("features have no rows".into()));
    }
    if d == 0 {
        return Err(Error::invalid("features have no columns; pass a 2-d array of shape (examples, features)"));
    }
    let blocks = pool::run(threads, n, || {
        (0..n.div_ceil(BLOCK_ROWS)).into_par_iter().map(|b| scan_block(features, b * BLOCK_ROWS)).collect::<Vec<_>>()
    })?;

    let words = d.div_ceil(64);
    let mut nulls = Vec::with_capacity(n);
    let mut column_nulls = vec![0u64; d];
    let mut patterns = Patterns::default();
    for block in blocks {
        nulls.extend_from_slice(&block.nulls);
        for (total, c) in column_nulls.iter_mut().zip(&block.column_nulls) {
            *total += c;
        }
        // Blocks come in row order, so appending keeps each pattern's rows ascending.
        for (mask, rows) in block.patterns {
            patterns.entry(mask).or_default().extend(rows);
        }
    }
    let most_common = patterns
        .into_iter()
        .max_by(|(_, a), (_, b)| a.len().cmp(&b.len()).then(b[0].cmp(&a[0])))
        .map(|(mask, rows)| NullPattern { pattern: spell(&mask, d, words), rows });

    let (df, nf) = (d as f64, n as f64);
    Ok(NullScan {
        scores: nulls.iter().map(|&k| (d - k as usize) as f64 / df).collect(),
        is_issue: nulls.iter().map(|&k| k as usize == d).collect(),
        column_impact: column_nulls.iter().map(|&c| c as f64 / nf).collect(),
        most_common,
    })
}

fn scan_block<T: Real>(features: ArrayView2<'_, T>, start: usize) -> Block {
    let (n, d) = features.dim();
    let end = (start + BLOCK_ROWS).min(n);
    let words = d.div_ceil(64);
    let mut block =
        Block { nulls: Vec::with_capacity(end - start), column_nulls: vec![0; d], patterns: Patterns::default() };
    let mut mask = vec![0u64; words];
    for (i, row) in features.slice(s![start..end, ..]).rows().into_iter().enumerate() {
        let mut count = 0u32;
        mask.fill(0);
        for (j, x) in row.iter().enumerate() {
            if x.to_f64().is_nan() {
                count += 1;
                mask[j / 64] |= 1 << (j % 64);
                block.column_nulls[j] += 1;
            }
        }
        block.nulls.push(count);
        if count > 0 {
            let row = (start + i) as u64;
            match block.patterns.get_mut(mask.as_slice()) {
                Some(rows) => rows.push(row),
                None => {
                    block.patterns.insert(mask.clone(), vec![row]);
                }
            }
        }
    }
    block
}

/// The mask as cleanlab prints a null pattern: `1` for a NaN column, `0` otherwise.
fn spell(mask: &[u64], d: usize, words: usize) -> String {
    debug_assert_eq!(mask.len(), words);
    (0..d).map(|j| if mask[j / 64] >> (j % 64) & 1 == 1 { '1' } else { '0' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use proptest::prelude::*;

    /// The plain definition, one row at a time.
    fn reference(x: &Array2<f64>) -> NullScan {
        let (n, d) = x.dim();
        let mut order: Vec<String> = Vec::new();
        let mut rows_of: std::collections::HashMap<String, Vec<u64>> = Default::default();
        let mut scores = vec![];
        let mut is_issue = vec![];
        for (i, row) in x.rows().into_iter().enumerate() {
            let nulls = row.iter().filter(|v| v.is_nan()).count();
            scores.push((d - nulls) as f64 / d as f64);
            is_issue.push(nulls == d);
            if nulls > 0 {
                let p: String = row.iter().map(|v| if v.is_nan() { '1' } else { '0' }).collect();
                if !rows_of.contains_key(&p) {
                    order.push(p.clone());
                }
                rows_of.entry(p).or_default().push(i as u64);
            }
        }
        let mut best: Option<&String> = None;
        for p in &order {
            if best.is_none_or(|b| rows_of[p].len() > rows_of[b].len()) {
                best = Some(p);
            }
        }
        let column_impact =
            (0..d).map(|j| x.column(j).iter().filter(|v| v.is_nan()).count() as f64 / n as f64).collect();
        NullScan {
            scores,
            is_issue,
            column_impact,
            most_common: best.map(|p| NullPattern { pattern: p.clone(), rows: rows_of[p].clone() }),
        }
    }

    fn matrix() -> impl Strategy<Value = Array2<f64>> {
        (1usize..40, 1usize..70).prop_flat_map(|(n, d)| {
            proptest::collection::vec(
                prop_oneof![3 => Just(f64::NAN), 5 => -1e3f64..1e3, 1 => Just(f64::INFINITY)],
                n * d,
            )
            .prop_map(move |v| Array2::from_shape_vec((n, d), v).unwrap())
        })
    }

    proptest! {
        #[test]
        fn matches_the_definition(x in matrix()) {
            prop_assert_eq!(null_scan(x.view(), Some(1)).unwrap(), reference(&x));
            // Strided views and float32 give the same answer.
            let t = x.t().to_owned();
            prop_assert_eq!(null_scan(t.t(), Some(2)).unwrap(), reference(&x));
            prop_assert_eq!(null_scan(x.mapv(|v| v as f32).view(), None).unwrap(), reference(&x));
        }
    }

    #[test]
    fn blocks_merge_in_row_order() {
        // Rows across several blocks; the tie between two patterns goes to the one seen first.
        let n = 3 * BLOCK_ROWS + 5;
        let mut x = Array2::<f32>::zeros((n, 3));
        for i in [10, BLOCK_ROWS + 1, 2 * BLOCK_ROWS + 7] {
            x[[i, 2]] = f32::NAN;
        }
        for i in [5, BLOCK_ROWS + 2, n - 1] {
            x[[i, 0]] = f32::NAN;
        }
        let scan = null_scan(x.view(), Some(2)).unwrap();
        let best = scan.most_common.unwrap();
        assert_eq!(best.pattern, "100");
        assert_eq!(best.rows, vec![5, BLOCK_ROWS as u64 + 2, n as u64 - 1]);
        assert_eq!(scan.column_impact[1], 0.0);
    }

    #[test]
    fn rejects_empty_input() {
        assert!(matches!(null_scan(Array2::<f64>::zeros((0, 3)).view(), None), Err(Error::Empty(_))));
        assert!(matches!(null_scan(Array2::<f64>::zeros((3, 0)).view(), None), Err(Error::InvalidInput(_))));
    }
}

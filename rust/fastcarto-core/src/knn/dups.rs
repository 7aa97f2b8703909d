//! cleanlab's exact-duplicate correction (`cleanlab/internal/neighbor/knn_graph.py`,
//! `correct_knn_distances_and_indices`), so graphs match cleanlab's when rows repeat.
//!
//! For each set `S` of identical rows (ascending row numbers, as `np.unique` + `np.where` give
//! them), with `s = min(|S| − 1, k)`:
//! - `|S| ≥ k + 1`: rows `S[0..=k]` get the other `k` of `S[0..=k]` (ascending), rows after
//!   them get `S[0..k]`; all their distances are 0.
//! - otherwise: each row of `S` gets the other `s` members (ascending) at distance 0, then the
//!   first `k − s` of its own neighbours that are not in `S`, in their order, with their
//!   distances.
//!
//! The exact search already returns this (duplicates at `f64` distance 0, ties by lower row)
//! except where a cosine distance of identical rows rounds above 0, and the approximate search
//! may miss duplicates in other cells: the correction makes both agree with cleanlab.

use super::KnnGraph;
use super::pack::Source;
use crate::kernel::math::Real;

/// A hash of the input row at position `p` (equal rows, `-0.0` and `0.0` alike, hash equal).
pub(crate) fn row_hash<T: Real>(src: &Source<'_, T>, p: usize) -> u64 {
    src.row_key(p)
        .fold(0xcbf2_9ce4_8422_2325u64, |h, v| (h.rotate_left(5) ^ v.to_bits()).wrapping_mul(0x517c_c1b7_2722_0a95))
}

/// The sets of identical searchable rows (positions, ascending), two or more each.
fn duplicate_sets<T: Real>(src: &Source<'_, T>) -> Vec<Vec<u32>> {
    let m = src.m();
    let mut keyed: Vec<(u64, u32)> = (0..m).map(|p| (row_hash(src, p), p as u32)).collect();
    keyed.sort_unstable();
    let same = |p: u32, q: u32| src.row_key(p as usize).eq(src.row_key(q as usize));
    let mut sets = Vec::new();
    let mut i = 0;
    while i < m {
        let mut j = i + 1;
        while j < m && keyed[j].0 == keyed[i].0 {
            j += 1;
        }
        if j - i > 1 {
            // Equal hashes: split into classes of equal rows (almost always one class).
            let mut classes: Vec<Vec<u32>> = Vec::new();
            for &(_, p) in &keyed[i..j] {
                match classes.iter_mut().find(|c| same(c[0], p)) {
                    Some(c) => c.push(p),
                    None => classes.push(vec![p]),
                }
            }
            sets.extend(classes.into_iter().filter(|c| c.len() > 1));
        }
        i = j;
    }
    sets
}

/// Applies the correction to `graph` in place.
pub(crate) fn correct<T: Real>(src: &Source<'_, T>, graph: &mut KnnGraph) {
    let k = graph.k;
    for set in duplicate_sets(src) {
        let rows: Vec<i64> = set.iter().map(|&p| i64::from(src.valid[p as usize])).collect();
        for &r in &rows {
            let others: Vec<i64> = rows.iter().copied().filter(|&o| o != r).take(k).collect();
            let span = r as usize * k..(r as usize + 1) * k;
            correct_row(&mut graph.distances[span.clone()], &mut graph.indices[span], r, &others, rows.len() - 1);
        }
    }
}

/// The correction of row `own`'s graph row (`dist`, `idx`, `k` entries), given the lowest row
/// numbers of the other rows identical to it (`dups`, ascending, at most `k`) and how many
/// there are (`n_dups`).
pub(crate) fn correct_row(dist: &mut [f32], idx: &mut [i64], own: i64, dups: &[i64], n_dups: usize) {
    let k = idx.len();
    if n_dups == 0 {
        return;
    }
    if n_dups >= k {
        // The set has more than k rows: the first k+1 list each other, later rows the first k.
        idx.copy_from_slice(&dups[..k]);
        dist.fill(0.0);
        return;
    }
    let s = n_dups;
    let in_set = |i: i64| i == own || dups.contains(&i);
    let entries = || dist.iter().zip(idx.iter()).map(|(&d, &i)| (d, i));
    let mut fill: Vec<(f32, i64)> = entries().filter(|&(_, i)| !in_set(i)).take(k - s).collect();
    // Fewer than `k − s` outsiders (the row listed itself): cleanlab then takes the next
    // entries in order whatever they are; so do we.
    if fill.len() < k - s {
        let extra: Vec<(f32, i64)> = entries().filter(|&(_, i)| in_set(i)).take(k - s - fill.len()).collect();
        fill.extend(extra);
    }
    for (u, &o) in dups.iter().enumerate() {
        idx[u] = o;
        dist[u] = 0.0;
    }
    for (u, (d, i)) in fill.into_iter().enumerate() {
        dist[s + u] = d;
        idx[s + u] = i;
    }
}

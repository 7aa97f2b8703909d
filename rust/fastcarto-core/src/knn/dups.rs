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

/// The sets of identical searchable rows (positions, ascending), two or more each.
fn duplicate_sets<T: Real>(src: &Source<'_, T>) -> Vec<Vec<u32>> {
    let m = src.m();
    let hash = |p: usize| {
        src.row_key(p)
            .fold(0xcbf2_9ce4_8422_2325u64, |h, v| (h.rotate_left(5) ^ v.to_bits()).wrapping_mul(0x517c_c1b7_2722_0a95))
    };
    let mut keyed: Vec<(u64, u32)> = (0..m).map(|p| (hash(p), p as u32)).collect();
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
        let s = (rows.len() - 1).min(k);
        let head = &rows[..=s];
        for (t, &r) in rows.iter().enumerate() {
            let r = r as usize;
            let (dist, idx) = (&mut graph.distances[r * k..(r + 1) * k], &mut graph.indices[r * k..(r + 1) * k]);
            if rows.len() > k {
                let others: Vec<i64> =
                    if t <= k { head.iter().copied().filter(|&o| o != rows[t]).collect() } else { rows[..k].to_vec() };
                idx.copy_from_slice(&others);
                dist.fill(0.0);
            } else {
                let rest: Vec<(f32, i64)> = dist
                    .iter()
                    .zip(idx.iter())
                    .filter(|(_, i)| !rows.contains(i))
                    .map(|(&d, &i)| (d, i))
                    .take(k - s)
                    .collect();
                // Fewer than `k − s` outsiders (the row listed itself): cleanlab then takes the
                // next entries in order whatever they are; so do we.
                let mut fill: Vec<(f32, i64)> = rest;
                if fill.len() < k - s {
                    let extra: Vec<(f32, i64)> = dist
                        .iter()
                        .zip(idx.iter())
                        .filter(|(_, i)| rows.contains(i))
                        .map(|(&d, &i)| (d, i))
                        .take(k - s - fill.len())
                        .collect();
                    fill.extend(extra);
                }
                for (u, &o) in head.iter().filter(|&&o| o != rows[t]).enumerate() {
                    idx[u] = o;
                    dist[u] = 0.0;
                }
                for (u, (d, i)) in fill.into_iter().enumerate() {
                    dist[s + u] = d;
                    idx[s + u] = i;
                }
            }
        }
    }
}

//! The `near_duplicate` issue type: cleanlab 2.9's `NearDuplicateIssueManager`.
//!
//! With `m = max(median nearest-neighbour distance, 1e-6)`: row `j` is a near duplicate of row
//! `i` when `j` is among `i`'s neighbours at distance `< threshold * m` (threshold 0.13), or the
//! other way round. Each row's `near_duplicate_sets` entry lists its own such neighbours in
//! graph order, then the rows that list it and that it does not list, ascending: exactly the
//! lists cleanlab's two passes build. A row is flagged when its list is not empty. Score:
//! `1 - exp(-d / m)` of its nearest-neighbour distance `d`, 0 where `d <= 1e-8`
//! (`np.isclose(d, 0)`).
//!
//! Beyond cleanlab, the connected groups of that relation (a union-find): rows that are near
//! duplicates through a chain of pairs share a group.

use super::neighbours::Graph;
use super::stats::{median_sorted, sorted};
use crate::error::{Error, Result};

/// cleanlab's default `threshold`.
pub const DEFAULT_THRESHOLD: f64 = 0.13;
/// cleanlab's `EPSILON`: the least median distance (a dataset of duplicates still has a radius
/// of zero, not a division by zero).
const EPSILON: f64 = 1e-6;
/// `np.isclose(d, 0)`'s absolute tolerance.
const ZERO_DISTANCE: f64 = 1e-8;

/// What [`near_duplicates`] finds.
#[derive(Clone, Debug)]
pub struct NearDuplicates {
    pub scores: Vec<f64>,
    pub is_issue: Vec<bool>,
    /// Row `i`'s near duplicates are `set_members[set_offsets[i]..set_offsets[i + 1]]`.
    pub set_offsets: Vec<i64>,
    pub set_members: Vec<i64>,
    /// Connected group of each flagged row (numbered by their first row), -1 if not flagged.
    pub group: Vec<i64>,
    /// `max(median nearest-neighbour distance, 1e-6)` over rows with a neighbour.
    pub median_nn_distance: f64,
}

/// Near duplicates in a neighbour graph (module docs). Rows without neighbours are not flagged
/// and score 1.
pub fn near_duplicates(graph: &Graph<'_>, threshold: f64) -> Result<NearDuplicates> {
    if !(threshold >= 0.0 && threshold.is_finite()) {
        return Err(Error::invalid(format!("near_duplicate threshold must be a finite number >= 0, got {threshold}")));
    }
    let n = graph.n();
    let nn: Vec<Option<f64>> = (0..n).map(|i| graph.nearest(i).map(|(_, d)| f64::from(d))).collect();
    let present = sorted(nn.iter().flatten().copied().collect());
    let median = if present.is_empty() { EPSILON } else { median_sorted(&present).max(EPSILON) };
    let radius = threshold * median;

    // First pass: each row's own neighbours inside the radius, in graph order (CSR).
    let mut own_offsets = Vec::with_capacity(n + 1);
    let mut own = Vec::new();
    own_offsets.push(0usize);
    for i in 0..n {
        own.extend(graph.neighbours(i).filter(|&(_, d)| f64::from(d) < radius).map(|(j, _)| j));
        own_offsets.push(own.len());
    }
    // Reverse edges, by counting: row j's listers in ascending order (i runs ascending).
    let mut rev_offsets = vec![0usize; n + 1];
    for &j in &own {
        rev_offsets[j + 1] += 1;
    }
    for j in 0..n {
        rev_offsets[j + 1] += rev_offsets[j];
    }
    let mut fill = rev_offsets.clone();
    let mut rev = vec![0usize; own.len()];
    for i in 0..n {
        for &j in &own[own_offsets[i]..own_offsets[i + 1]] {
            rev[fill[j]] = i;
            fill[j] += 1;
        }
    }
    let mut set_offsets = Vec::with_capacity(n + 1);
    let mut set_members = Vec::with_capacity(own.len() * 2);
    set_offsets.push(0i64);
    for j in 0..n {
        let mine = &own[own_offsets[j]..own_offsets[j + 1]];
        set_members.extend(mine.iter().map(|&x| x as i64));
        let mut last = None;
        for &i in &rev[rev_offsets[j]..rev_offsets[j + 1]] {
            // A row listing j twice adds itself once; one j lists already is not added again.
            if last != Some(i) && !mine.contains(&i) {
                set_members.push(i as i64);
            }
            last = Some(i);
        }
        set_offsets.push(set_members.len() as i64);
    }
    let is_issue: Vec<bool> = set_offsets.windows(2).map(|w| w[1] > w[0]).collect();
    let group = groups(n, &own_offsets, &own, &is_issue);

    let temperature = 1.0 / median;
    let scores = nn
        .iter()
        .map(|d| match *d {
            None => 1.0,
            Some(d) if d.abs() <= ZERO_DISTANCE => 0.0,
            Some(d) => 1.0 - (-temperature * d).exp(),
        })
        .collect();
    Ok(NearDuplicates { scores, is_issue, set_offsets, set_members, group, median_nn_distance: median })
}

/// Connected components of the near-duplicate edges (union-find with path halving), numbered
/// in order of their first row; -1 for rows in no pair.
fn groups(n: usize, offsets: &[usize], edges: &[usize], is_issue: &[bool]) -> Vec<i64> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for i in 0..n {
        for &j in &edges[offsets[i]..offsets[i + 1]] {
            let (a, b) = (find(&mut parent, i), find(&mut parent, j));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut label = vec![-1i64; n];
    let mut next = 0i64;
    let mut out = vec![-1i64; n];
    for i in 0..n {
        if !is_issue[i] {
            continue;
        }
        let root = find(&mut parent, i);
        if label[root] < 0 {
            label[root] = next;
            next += 1;
        }
        out[i] = label[root];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};
    use proptest::prelude::*;

    /// cleanlab's `_neighbors_within_radius`, literally: first pass, then appending `i` to each
    /// of its near duplicates' lists that lacks it.
    fn reference(d: &Array2<f32>, idx: &Array2<i64>, radius: f64) -> Vec<Vec<i64>> {
        let n = d.nrows();
        let mut sets: Vec<Vec<i64>> = (0..n)
            .map(|i| {
                (0..d.ncols())
                    .filter(|&c| idx[[i, c]] >= 0 && f64::from(d[[i, c]]) < radius)
                    .map(|c| idx[[i, c]])
                    .collect()
            })
            .collect();
        for i in 0..n {
            let mine = sets[i].clone();
            for j in mine {
                if !sets[j as usize].contains(&(i as i64)) {
                    sets[j as usize].push(i as i64);
                }
            }
        }
        sets
    }

    #[test]
    fn pairs_and_chains() {
        // 0-1 exact duplicates, 2 near 1, 3 and 4 far.
        let d = array![[0.0f32, 1.0], [0.0, 0.01], [0.01, 1.0], [1.0, 2.0], [1.0, 2.0]];
        let idx = array![[1i64, 2], [0, 2], [1, 0], [4, 0], [3, 0]];
        let r = near_duplicates(&Graph::new(d.view(), idx.view()).unwrap(), 0.13).unwrap();
        assert_eq!(r.median_nn_distance, 0.01f32 as f64);
        assert_eq!(r.is_issue, vec![true, true, false, false, false]);
        assert_eq!(r.scores[0], 0.0);
        assert_eq!(r.group, vec![0, 0, -1, -1, -1]);
    }

    #[test]
    fn negative_or_nan_threshold_is_an_error() {
        let d = array![[1.0f32], [1.0]];
        let idx = array![[1i64], [0]];
        let g = Graph::new(d.view(), idx.view()).unwrap();
        assert!(near_duplicates(&g, -0.1).is_err());
        assert!(near_duplicates(&g, f64::NAN).is_err());
    }

    proptest! {
        #[test]
        fn sets_match_cleanlabs_two_passes(
            n in 2usize..30, k in 1usize..5, seed in any::<u64>(), threshold in 0.0f64..3.0
        ) {
            let k = k.min(n - 1);
            let mut s = seed;
            let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s };
            let mut d = Array2::<f32>::zeros((n, k));
            let mut idx = Array2::<i64>::zeros((n, k));
            for i in 0..n {
                let mut row: Vec<f32> = (0..k).map(|_| (next() % 8) as f32 / 4.0).collect();
                row.sort_by(f32::total_cmp);
                for c in 0..k {
                    d[[i, c]] = row[c];
                    idx[[i, c]] = ((i as u64 + 1 + next() % (n as u64 - 1)) % n as u64) as i64;
                }
                if next() % 10 == 0 {
                    idx.row_mut(i).fill(-1);
                    d.row_mut(i).fill(f32::INFINITY);
                }
            }
            let r = near_duplicates(&Graph::new(d.view(), idx.view()).unwrap(), threshold).unwrap();
            let want = reference(&d, &idx, threshold * r.median_nn_distance);
            for (i, want) in want.iter().enumerate() {
                let got = &r.set_members[r.set_offsets[i] as usize..r.set_offsets[i + 1] as usize];
                prop_assert_eq!(got, &want[..]);
                prop_assert_eq!(r.is_issue[i], !want.is_empty());
                prop_assert_eq!(r.group[i] >= 0, r.is_issue[i]);
                for &j in got {
                    prop_assert_eq!(r.group[j as usize], r.group[i]);
                }
            }
        }
    }
}

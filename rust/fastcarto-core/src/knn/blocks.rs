//! The exact graph in blocks, for a cluster: the best neighbours of a block of query rows among
//! a block of reference rows ([`knn_block`]), partial results of one query block merged
//! across reference blocks in any order ([`KnnPart::merge`]), and the graph rows they give
//! ([`KnnPart::finish`]). The result equals [`knn`](super::knn) with `exact: Some(true)` on
//! all the rows.
//!
//! Why it is the same graph: a final distance is computed in `f64` from the two input rows
//! alone (the euclidean centring only shapes the `f32` candidate scores; the cosine row
//! norms are per row), so a pair's distance does not depend on the block it was searched in;
//! lists are ordered by (distance, row number) everywhere, so merging the per-block best `k`
//! gives the best `k` overall. The duplicate correction ([`super::dups`]) needs each row's
//! identical rows: every block reports the lowest `k` of them and their count, which merge
//! by the same rule.

use super::dups::{correct_row, row_hash};
use super::exact::EXTRA;
use super::pack::Source;
use super::topk::{Cands, Rows, alpha, scan_all};
use super::{KnnGraph, Metric, searchable_rows};
use crate::error::{Error, Result};
use crate::kernel::math::Real;
use crate::sys::pool;
use ndarray::{ArrayView2, Axis, concatenate};
use rayon::prelude::*;

/// The best neighbours of a block of query rows among the reference rows searched so far.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnPart {
    /// The global row number of the first query row, and how many query rows.
    pub start: u64,
    pub rows: usize,
    pub k: usize,
    /// `rows × k` row-major, ascending by (distance, row number); `+inf` / `-1` past the
    /// neighbours found.
    pub distances: Vec<f64>,
    pub indices: Vec<i64>,
    /// `rows × k`: the lowest row numbers of the other rows identical to the query, ascending;
    /// `-1` past them.
    pub dups: Vec<i64>,
    /// How many other rows are identical to the query.
    pub n_dups: Vec<u64>,
    /// Whether the query row is searched (has no NaN).
    pub searchable: Vec<bool>,
    /// Reference rows searched, all and without NaN.
    pub n_reference: u64,
    pub n_reference_searchable: u64,
}

/// `queries` (global rows `q_start..`) searched among `reference` (global rows `r_start..`);
/// a row is never its own neighbour, whichever blocks it is in.
#[allow(clippy::too_many_arguments)]
pub fn knn_block<T: Real>(
    queries: ArrayView2<'_, T>,
    q_start: usize,
    reference: ArrayView2<'_, T>,
    r_start: usize,
    k: usize,
    metric: Metric,
    threads: Option<usize>,
) -> Result<KnnPart> {
    let (q, d) = queries.dim();
    let r = reference.nrows();
    if reference.ncols() != d {
        return Err(Error::invalid(format!(
            "query rows have {d} columns but reference rows {}; blocks must come from one features matrix",
            reference.ncols()
        )));
    }
    if d == 0 {
        return Err(Error::Empty("features have no columns".into()));
    }
    if k == 0 {
        return Err(Error::invalid("k must be at least 1"));
    }
    let fits = |start: usize, len: usize| start.checked_add(len).is_some_and(|e| e <= u32::MAX as usize);
    if !fits(q_start, q) || !fits(r_start, r) {
        return Err(Error::invalid(format!("row numbers beyond {} are not supported", u32::MAX)));
    }
    let qv = searchable_rows(queries)?;
    let rv = searchable_rows(reference)?;
    let (nq, nr) = (qv.len(), rv.len());
    let x = concatenate(Axis(0), &[queries, reference]).map_err(|e| Error::invalid(e.to_string()))?;
    let valid: Vec<u32> = qv.iter().copied().chain(rv.iter().map(|&i| i + q as u32)).collect();
    let q_rows: Vec<u32> = qv.iter().map(|&i| (q_start + i as usize) as u32).collect();
    let r_rows: Vec<u32> = rv.iter().map(|&i| (r_start + i as usize) as u32).collect();
    let work = if nq.saturating_mul(nr) >= 1 << 22 { usize::MAX } else { 0 };
    let (best, dups) = pool::run(threads, work, || {
        let src = Source::new(x.view(), valid, metric);
        let pack = |positions: std::ops::Range<usize>| {
            let pos: Vec<u32> = (positions.start as u32..positions.end as u32).collect();
            let (mut data, mut off) = (vec![0.0f32; pos.len() * d], vec![0.0f32; pos.len()]);
            src.pack(&pos, &mut data, &mut off);
            (data, off)
        };
        // The kernel's positions are the global row numbers: they identify a row across
        // blocks (so a query skips itself) and break ties by the lower row.
        let kc = (k + EXTRA).min(nr).max(1);
        let mut cands = Cands::new(nq, kc);
        if nq > 0 && nr > 0 {
            let (qd, qo) = pack(0..nq);
            let (rd, ro) = pack(nq..nq + nr);
            let qr = Rows { data: &qd, offset: &qo, pos: &q_rows };
            let rr = Rows { data: &rd, offset: &ro, pos: &r_rows };
            scan_all(qr, rr, d, alpha(metric == Metric::Cosine), cands.as_mut());
        }
        let position = |g: u32| nq + r_rows.binary_search(&g).expect("a candidate is a reference row");
        let best: Vec<Vec<(f64, i64)>> = (0..nq)
            .into_par_iter()
            .map(|p| {
                let (_, pos) = cands.row(p);
                let mut best: Vec<(f64, i64)> = pos
                    .iter()
                    .filter(|&&g| g != u32::MAX)
                    .map(|&g| (src.distance(p, position(g)), i64::from(g)))
                    .collect();
                best.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                best.truncate(k);
                best
            })
            .collect();
        // Identical rows: reference rows by hash, each query's hash looked up and compared.
        let mut keyed: Vec<(u64, u32)> = (0..nr).map(|t| (row_hash(&src, nq + t), r_rows[t])).collect();
        keyed.par_sort_unstable();
        let dups: Vec<(Vec<i64>, u64)> = (0..nq)
            .into_par_iter()
            .map(|p| {
                let h = row_hash(&src, p);
                let lo = keyed.partition_point(|e| e.0 < h);
                let mut same = Vec::new();
                let mut count = 0u64;
                for &(_, g) in keyed[lo..].iter().take_while(|e| e.0 == h) {
                    if g != q_rows[p] && src.row_key(p).eq(src.row_key(position(g))) {
                        count += 1;
                        if same.len() < k {
                            same.push(i64::from(g));
                        }
                    }
                }
                (same, count)
            })
            .collect();
        (best, dups)
    })?;
    let mut part = KnnPart {
        start: q_start as u64,
        rows: q,
        k,
        distances: vec![f64::INFINITY; q * k],
        indices: vec![-1; q * k],
        dups: vec![-1; q * k],
        n_dups: vec![0; q],
        searchable: vec![false; q],
        n_reference: r as u64,
        n_reference_searchable: nr as u64,
    };
    for (p, (list, (same, count))) in best.into_iter().zip(dups).enumerate() {
        let row = qv[p] as usize;
        part.searchable[row] = true;
        for (t, (dist, g)) in list.into_iter().enumerate() {
            part.distances[row * k + t] = dist;
            part.indices[row * k + t] = g;
        }
        part.dups[row * k..row * k + same.len()].copy_from_slice(&same);
        part.n_dups[row] = count;
    }
    Ok(part)
}

impl KnnPart {
    /// Checks that the arrays fit together (a part that crossed a process boundary as arrays).
    pub fn check(&self) -> Result<()> {
        let (q, k) = (self.rows, self.k);
        let ok = k > 0
            && self.distances.len() == q * k
            && self.indices.len() == q * k
            && self.dups.len() == q * k
            && self.n_dups.len() == q
            && self.searchable.len() == q
            && self.n_reference_searchable <= self.n_reference;
        if !ok {
            return Err(Error::invalid("kNN partial results do not fit together (rows, k or array lengths differ)"));
        }
        Ok(())
    }

    /// Adds the neighbours found in other reference rows (disjoint from those searched so far).
    pub fn merge(&mut self, other: &KnnPart) -> Result<()> {
        self.check()?;
        other.check()?;
        if (self.start, self.rows, self.k) != (other.start, other.rows, other.k) || self.searchable != other.searchable
        {
            return Err(Error::Incompatible(format!(
                "kNN partial results of query rows {}.. ({} rows, k={}) and {}.. ({} rows, k={})",
                self.start, self.rows, self.k, other.start, other.rows, other.k
            )));
        }
        let k = self.k;
        let before = |a: (f64, i64), b: (f64, i64)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).is_lt();
        for row in 0..self.rows {
            let span = row * k..(row + 1) * k;
            let mine: Vec<(f64, i64)> =
                self.distances[span.clone()].iter().copied().zip(self.indices[span.clone()].iter().copied()).collect();
            let theirs: Vec<(f64, i64)> = other.distances[span.clone()]
                .iter()
                .copied()
                .zip(other.indices[span.clone()].iter().copied())
                .collect();
            let (mut a, mut b) = (0, 0);
            for t in 0..k {
                let take_a = b == k || (a < k && before(mine[a], theirs[b]));
                let e = if take_a { mine[a] } else { theirs[b] };
                if take_a {
                    a += 1
                } else {
                    b += 1
                }
                if e.1 >= 0 && t > 0 && self.indices[row * k + t - 1] == e.1 {
                    return Err(overlap(e.1));
                }
                self.distances[row * k + t] = e.0;
                self.indices[row * k + t] = e.1;
            }
            let mut same: Vec<i64> =
                self.dups[span.clone()].iter().chain(&other.dups[span.clone()]).copied().filter(|&g| g >= 0).collect();
            same.sort_unstable();
            if let Some(w) = same.windows(2).find(|w| w[0] == w[1]) {
                return Err(overlap(w[0]));
            }
            same.resize(k.max(same.len()), -1);
            self.dups[span].copy_from_slice(&same[..k]);
            self.n_dups[row] += other.n_dups[row];
        }
        self.n_reference += other.n_reference;
        self.n_reference_searchable += other.n_reference_searchable;
        Ok(())
    }

    /// The graph rows of the query block, once every one of the `n` rows was searched.
    pub fn finish(&self, n: usize) -> Result<KnnGraph> {
        self.check()?;
        let k = self.k;
        if self.n_reference != n as u64 {
            return Err(Error::invalid(format!(
                "the query rows were searched among {} rows, the features have {n}: every reference block must be \
                 merged exactly once",
                self.n_reference
            )));
        }
        if k >= n {
            return Err(Error::invalid(format!(
                "k={k} neighbours need at least k+1 rows, features have {n}; pass a smaller k"
            )));
        }
        let m = self.n_reference_searchable;
        if k as u64 >= m {
            return Err(Error::invalid(format!(
                "k={k} neighbours need at least k+1 rows without NaN, features have {m} of {n}; pass a smaller k"
            )));
        }
        let mut graph = KnnGraph {
            n: self.rows,
            k,
            distances: self.distances.iter().map(|&d| d as f32).collect(),
            indices: self.indices.clone(),
        };
        for row in (0..self.rows).filter(|&r| self.searchable[r]) {
            let span = row * k..(row + 1) * k;
            if self.indices[span.clone()].contains(&-1) {
                return Err(Error::invalid(format!("query row {row} has fewer than k neighbours: rows are missing")));
            }
            let listed = self.n_dups[row].min(k as u64) as usize;
            let dups = &self.dups[row * k..row * k + listed];
            let own = (self.start + row as u64) as i64;
            let n_dups = usize::try_from(self.n_dups[row]).unwrap_or(usize::MAX);
            correct_row(&mut graph.distances[span.clone()], &mut graph.indices[span], own, dups, n_dups);
        }
        Ok(graph)
    }
}

fn overlap(row: i64) -> Error {
    Error::invalid(format!("row {row} was searched twice: reference blocks must not overlap"))
}

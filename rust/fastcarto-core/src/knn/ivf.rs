//! Approximate search with an inverted file (IVF): k-means splits the rows into about `√m`
//! cells; each row is searched exactly, with the same kernel as the exact search, among the rows
//! of the cells that the rows of its own cell have among their [`NPROBE`] nearest centroids.
//! Deterministic given the seed: the seed picks the k-means sample and initial centroids, and
//! every later step is a fixed-order computation independent of the thread count.

use super::Metric;
use super::exact::EXTRA;
use super::pack::Source;
use super::topk::{Cands, CandsMut, Rows, TILE_DB, TILE_Q, alpha, scan, scan_all};
use crate::kernel::math::Real;
use rayon::prelude::*;

/// Nearest centroids each row contributes to its cell's search list.
pub(crate) const NPROBE: usize = 8;
/// A cell searches at most this many cells per probe: the ones its rows probe most often. The
/// union of its rows' probes is small on clustered data, but on data without clusters (an
/// isotropic Gaussian) it grows towards every cell, and the search towards brute force.
const MAX_CELLS_PER_PROBE: usize = 4;
/// Lloyd iterations and training rows per centroid.
const ITERS: usize = 10;
const TRAIN_PER_CELL: usize = 32;

/// SplitMix64 (Steele, Lea & Flood 2014): a small, well-mixed generator for the seeded choices.
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2⁻³² for `n < 2³²`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

/// Copies the packed rows `at` of `rows` (row-major, `d` wide) and their offsets.
fn gather(rows: Rows<'_>, at: &[u32], d: usize) -> (Vec<f32>, Vec<f32>) {
    let mut data = vec![0.0f32; at.len() * d];
    data.par_chunks_mut(d).zip(at.par_iter()).for_each(|(o, &p)| {
        o.copy_from_slice(&rows.data[p as usize * d..(p as usize + 1) * d]);
    });
    (data, at.iter().map(|&p| rows.offset[p as usize]).collect())
}

/// The approximate `k + EXTRA` best candidates of every searchable row.
pub(crate) fn search<T: Real>(src: &Source<'_, T>, k: usize, seed: u64) -> Cands {
    search_probing(src, k, seed, NPROBE)
}

/// [`search`] with `nprobe` centroids per row.
pub(crate) fn search_probing<T: Real>(src: &Source<'_, T>, k: usize, seed: u64, nprobe: usize) -> Cands {
    let (m, d) = (src.m(), src.d);
    let kc = (k + EXTRA).min(m - 1);
    let cosine = src.metric == Metric::Cosine;
    let a = alpha(cosine);
    let (data, off, pos) = src.pack_range(0..m);
    let all = Rows { data: &data, offset: &off, pos: &pos };
    let nlist = ((m as f64).sqrt().round() as usize).clamp(1, m);
    let nprobe = nprobe.clamp(1, nlist);
    let max_cells = MAX_CELLS_PER_PROBE * nprobe;
    let (cent, cnorm) = kmeans(all, d, nlist, cosine, &mut SplitMix(seed));
    let cells: Vec<u32> = (0..nlist as u32).collect();
    let centroids = Rows { data: &cent, offset: &cnorm, pos: &cells };
    // Queries against centroids: no query is a centroid, so none is skipped as itself.
    let nobody = vec![u32::MAX; m];
    let mut probes = Cands::new(m, nprobe);
    scan_all(Rows { pos: &nobody, ..all }, centroids, d, a, probes.as_mut());
    drop(nobody);

    // Rows in cell order (by nearest centroid, then position).
    let mut start = vec![0usize; nlist + 1];
    for p in 0..m {
        start[probes.pos[p * nprobe] as usize + 1] += 1;
    }
    for c in 0..nlist {
        start[c + 1] += start[c];
    }
    let mut order = vec![0u32; m];
    let mut fill = start.clone();
    for p in 0..m {
        let c = probes.pos[p * nprobe] as usize;
        order[fill[c]] = p as u32;
        fill[c] += 1;
    }
    let (cdata, coff) = gather(all, &order, d);
    drop(data);
    let by_cell = Rows { data: &cdata, offset: &coff, pos: &order };

    let found: Vec<Cands> = (0..nlist)
        .into_par_iter()
        .map_init(Vec::new, |scratch, c| {
            let (s0, s1) = (start[c], start[c + 1]);
            let lists = cells_to_search(&order[s0..s1], &probes, max_cells);
            let mut out = Cands::new(s1 - s0, kc);
            for q0 in (s0..s1).step_by(TILE_Q) {
                let q1 = (q0 + TILE_Q).min(s1);
                let q = by_cell.slice(q0..q1, d);
                let (r0, r1) = ((q0 - s0) * kc, (q1 - s0) * kc);
                let mut part = CandsMut { kc, score: &mut out.score[r0..r1], pos: &mut out.pos[r0..r1] };
                for &u in &lists {
                    let (u0, u1) = (start[u as usize], start[u as usize + 1]);
                    for b in (u0..u1).step_by(TILE_DB) {
                        scan(q, by_cell.slice(b..(b + TILE_DB).min(u1), d), d, a, &mut part, scratch);
                    }
                }
            }
            out
        })
        .collect();
    let mut cands = Cands::new(m, kc);
    for (c, found) in found.iter().enumerate() {
        for (t, &p) in order[start[c]..start[c + 1]].iter().enumerate() {
            let (s, q) = found.row(t);
            let p = p as usize;
            cands.score[p * kc..(p + 1) * kc].copy_from_slice(s);
            cands.pos[p * kc..(p + 1) * kc].copy_from_slice(q);
        }
    }

    // A row whose probed cells hold fewer than `k` other rows is searched against all rows.
    let short: Vec<u32> = (0..m as u32).filter(|&p| cands.pos[p as usize * kc + k - 1] == u32::MAX).collect();
    if !short.is_empty() {
        let mut place = vec![0u32; m];
        for (t, &p) in order.iter().enumerate() {
            place[p as usize] = t as u32;
        }
        let at: Vec<u32> = short.iter().map(|&p| place[p as usize]).collect();
        let (qd, qo) = gather(by_cell, &at, d);
        let mut more = Cands::new(short.len(), kc);
        scan_all(Rows { data: &qd, offset: &qo, pos: &short }, by_cell, d, a, more.as_mut());
        for (t, &p) in short.iter().enumerate() {
            let (s, q) = more.row(t);
            let p = p as usize;
            cands.score[p * kc..(p + 1) * kc].copy_from_slice(s);
            cands.pos[p * kc..(p + 1) * kc].copy_from_slice(q);
        }
    }
    cands
}

/// The cells a cell's rows (`members`) are searched in: those their probes name, most often
/// named first (ties: lower cell), at most `max_cells`, in cell order.
fn cells_to_search(members: &[u32], probes: &Cands, max_cells: usize) -> Vec<u32> {
    let mut named: Vec<u32> = members.iter().flat_map(|&p| probes.row(p as usize).1.iter().copied()).collect();
    named.sort_unstable();
    let mut counted: Vec<(usize, u32)> = named.chunk_by(|a, b| a == b).map(|run| (run.len(), run[0])).collect();
    if counted.len() > max_cells {
        counted.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        counted.truncate(max_cells);
    }
    let mut cells: Vec<u32> = counted.into_iter().map(|c| c.1).collect();
    cells.sort_unstable();
    cells
}

/// `nlist` centroids of a seeded sample of `rows` by Lloyd's algorithm (spherical for cosine:
/// centroids renormalized to unit length), with their score offsets.
fn kmeans(rows: Rows<'_>, d: usize, nlist: usize, cosine: bool, rng: &mut SplitMix) -> (Vec<f32>, Vec<f32>) {
    let m = rows.len();
    let ns = (nlist * TRAIN_PER_CELL).min(m);
    let mut idx: Vec<u32> = (0..m as u32).collect();
    for i in 0..ns {
        let j = i + rng.below(m - i);
        idx.swap(i, j);
    }
    idx.truncate(ns);
    // The first `nlist` of the random sample start the centroids.
    let (mut cent, mut cnorm) = gather(rows, &idx[..nlist], d);
    idx.sort_unstable();
    let (sdata, soff) = gather(rows, &idx, d);
    let nobody = vec![u32::MAX; ns];
    let sample = Rows { data: &sdata, offset: &soff, pos: &nobody };
    let cells: Vec<u32> = (0..nlist as u32).collect();
    let a = alpha(cosine);
    for _ in 0..ITERS {
        let mut nearest = Cands::new(ns, 1);
        scan_all(sample, Rows { data: &cent, offset: &cnorm, pos: &cells }, d, a, nearest.as_mut());
        let mut sum = vec![0.0f64; nlist * d];
        let mut count = vec![0usize; nlist];
        for t in 0..ns {
            let c = nearest.pos[t] as usize;
            count[c] += 1;
            for (s, &v) in sum[c * d..(c + 1) * d].iter_mut().zip(&sdata[t * d..(t + 1) * d]) {
                *s += f64::from(v);
            }
        }
        for c in 0..nlist {
            let row = &mut cent[c * d..(c + 1) * d];
            if count[c] == 0 {
                // An empty cell restarts at a random training row.
                let t = rng.below(ns);
                row.copy_from_slice(&sdata[t * d..(t + 1) * d]);
            } else {
                for (o, s) in row.iter_mut().zip(&sum[c * d..(c + 1) * d]) {
                    *o = (s / count[c] as f64) as f32;
                }
            }
            let sq = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
            if cosine {
                if sq > 0.0 {
                    let inv = 1.0 / sq.sqrt();
                    row.iter_mut().for_each(|v| *v = (f64::from(*v) * inv) as f32);
                }
                cnorm[c] = 0.0;
            } else {
                cnorm[c] = sq as f32;
            }
        }
    }
    (cent, cnorm)
}

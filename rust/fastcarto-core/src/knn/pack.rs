//! The searchable rows of the input, read block by block into the `f32` form the kernel
//! multiplies, and the exact `f64` distances that replace the kernel's scores at the end.

use super::topk::Cands;
use super::{KnnGraph, Metric};
use crate::kernel::math::Real;
use ndarray::ArrayView2;
use rayon::prelude::*;

/// The input and what packing needs: which rows are searchable and how to normalize them.
pub(crate) struct Source<'a, T> {
    x: ArrayView2<'a, T>,
    /// Position → input row, increasing (so lower position is lower row).
    pub valid: Vec<u32>,
    pub d: usize,
    pub metric: Metric,
    /// Euclidean: the column means (distances do not change when every row is shifted, and
    /// centred rows have smaller norms, so `‖x‖² + ‖y‖² − 2x·y` cancels less).
    mean: Vec<f64>,
    /// Euclidean: `1 / max |x − mean|`, so packed values lie in `[-1, 1]` whatever the input's
    /// range (a `float64` input beyond `f32`'s range still packs to finite values).
    scale: f64,
    /// Cosine, per position: `max |x|` and `‖x / max |x|‖`, the row's norm in two factors that
    /// cannot overflow.
    row_max: Vec<f64>,
    row_norm: Vec<f64>,
}

impl<'a, T: Real> Source<'a, T> {
    pub fn new(x: ArrayView2<'a, T>, valid: Vec<u32>, metric: Metric) -> Self {
        let d = x.ncols();
        let mut s =
            Source { x, valid, d, metric, mean: vec![0.0; d], scale: 1.0, row_max: Vec::new(), row_norm: Vec::new() };
        match metric {
            Metric::Euclidean => {
                let m = s.valid.len() as f64;
                let mut mean = vec![0.0f64; d];
                for &r in &s.valid {
                    for (a, &v) in mean.iter_mut().zip(x.row(r as usize).iter()) {
                        *a += v.to_f64();
                    }
                }
                mean.iter_mut().for_each(|a| *a /= m);
                let mut big = 0.0f64;
                for &r in &s.valid {
                    for (a, &v) in mean.iter().zip(x.row(r as usize).iter()) {
                        big = big.max((v.to_f64() - a).abs());
                    }
                }
                s.mean = mean;
                s.scale = if big > 0.0 && big.is_finite() { 1.0 / big } else { 1.0 };
            }
            Metric::Cosine => {
                let (mx, nx): (Vec<f64>, Vec<f64>) = s
                    .valid
                    .par_iter()
                    .map(|&r| {
                        let row = x.row(r as usize);
                        let mx = row.iter().fold(0.0f64, |a, &v| a.max(v.to_f64().abs()));
                        if mx == 0.0 {
                            return (0.0, 0.0);
                        }
                        let nx = row.iter().map(|&v| (v.to_f64() / mx).powi(2)).sum::<f64>().sqrt();
                        (mx, nx)
                    })
                    .unzip();
                s.row_max = mx;
                s.row_norm = nx;
            }
        }
        s
    }

    pub fn m(&self) -> usize {
        self.valid.len()
    }

    /// Writes the packed rows of `positions` into `out` (`len × d`) and their score offsets.
    pub fn pack(&self, positions: &[u32], out: &mut [f32], offset: &mut [f32]) {
        let d = self.d;
        out.par_chunks_mut(d * 256).zip(offset.par_chunks_mut(256)).enumerate().for_each(|(c, (out, off))| {
            for (t, (o, f)) in out.chunks_mut(d).zip(off.iter_mut()).enumerate() {
                let p = positions[c * 256 + t] as usize;
                let row = self.x.row(self.valid[p] as usize);
                match self.metric {
                    Metric::Euclidean => {
                        let mut sq = 0.0f64;
                        for ((o, &v), a) in o.iter_mut().zip(row.iter()).zip(&self.mean) {
                            let y = ((v.to_f64() - a) * self.scale) as f32;
                            *o = y;
                            sq += f64::from(y) * f64::from(y);
                        }
                        *f = sq as f32;
                    }
                    Metric::Cosine => {
                        let (mx, nx) = (self.row_max[p], self.row_norm[p]);
                        for (o, &v) in o.iter_mut().zip(row.iter()) {
                            *o = if mx == 0.0 { 0.0 } else { (v.to_f64() / mx / nx) as f32 };
                        }
                        *f = 0.0;
                    }
                }
            }
        });
    }

    /// All positions `range` packed: (rows, offsets, positions).
    pub fn pack_range(&self, range: std::ops::Range<usize>) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
        let pos: Vec<u32> = (range.start as u32..range.end as u32).collect();
        let (mut data, mut off) = (vec![0.0f32; pos.len() * self.d], vec![0.0f32; pos.len()]);
        self.pack(&pos, &mut data, &mut off);
        (data, off, pos)
    }

    /// The exact distance between the rows at positions `p` and `q`, in `f64`.
    pub fn distance(&self, p: usize, q: usize) -> f64 {
        let (a, b) = (self.x.row(self.valid[p] as usize), self.x.row(self.valid[q] as usize));
        match self.metric {
            Metric::Euclidean => {
                a.iter().zip(b.iter()).map(|(&u, &v)| (u.to_f64() - v.to_f64()).powi(2)).sum::<f64>().sqrt()
            }
            Metric::Cosine => {
                let (ma, mb) = (self.row_max[p], self.row_max[q]);
                if ma == 0.0 || mb == 0.0 {
                    // scikit-learn normalizes a zero row to zero: cosine 0, distance 1.
                    return 1.0;
                }
                let dot = a.iter().zip(b.iter()).map(|(&u, &v)| (u.to_f64() / ma) * (v.to_f64() / mb)).sum::<f64>();
                (1.0 - dot / (self.row_norm[p] * self.row_norm[q])).clamp(0.0, 2.0)
            }
        }
    }

    /// The graph: each position's candidates rescored exactly, the best `k` by (distance, row)
    /// written at its input row; rows with a NaN get `+inf` / `-1`.
    pub fn refine(&self, cand: &Cands, k: usize, n: usize) -> KnnGraph {
        let mut distances = vec![f32::INFINITY; n * k];
        let mut indices = vec![-1i64; n * k];
        let rows: Vec<(Vec<f32>, Vec<i64>)> = (0..self.m())
            .into_par_iter()
            .map(|p| {
                let (_, pos) = cand.row(p);
                let mut best: Vec<(f64, u32)> =
                    pos.iter().filter(|&&q| q != u32::MAX).map(|&q| (self.distance(p, q as usize), q)).collect();
                best.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                best.truncate(k);
                (
                    best.iter().map(|b| b.0 as f32).collect(),
                    best.iter().map(|b| i64::from(self.valid[b.1 as usize])).collect(),
                )
            })
            .collect();
        for (p, (d, i)) in rows.into_iter().enumerate() {
            let r = self.valid[p] as usize;
            distances[r * k..r * k + d.len()].copy_from_slice(&d);
            indices[r * k..r * k + i.len()].copy_from_slice(&i);
        }
        KnnGraph { n, k, distances, indices }
    }

    /// The input row at position `p`, as `f64` values with `-0.0` read as `0.0` (so rows
    /// compare as numpy's `unique` compares them).
    pub fn row_key(&self, p: usize) -> impl Iterator<Item = f64> + '_ {
        self.x.row(self.valid[p] as usize).into_iter().map(|&v| v.to_f64() + 0.0)
    }
}

//! Sufficient statistics of a least-squares problem on subset masks, in one pass and additive.
//!
//! For masks `X` (`M x N`, 0/1) and outputs `Y` (`M x K`), a datamodel fit needs only
//! `n = M`, `XᵀX` (`N x N` counts: how many models trained on both `i` and `j`; its diagonal is
//! the column sums), `XᵀY` (`N x K`), `ΣY` and `ΣY²` (`K`). They are sums over models, so the
//! statistics of two shards of models add up to those of their union ([`Stats::merge`]), and
//! masks larger than memory are folded one chunk of rows at a time ([`Stats::update`]).
//!
//! `XᵀX` comes from popcounts: each chunk of rows is transposed into one bitset per column
//! (64 models a word), and `(XᵀX)_ij = popcount(col_i & col_j)`, exact in integers. `XᵀY` is a
//! matrix product in `f64` on the chunk.

use crate::error::{Error, Result};
use multiversion::multiversion;
use ndarray::{Array2, ArrayView2, Axis, s};
use rayon::prelude::*;

/// How the masks of a chunk are laid out.
#[derive(Clone, Copy, Debug)]
pub enum Masks<'a> {
    /// One byte per (model, training example): zero is "not in the subset", anything else is.
    Bytes(ArrayView2<'a, u8>),
    /// One `bool` per (model, training example).
    Bool(ArrayView2<'a, bool>),
    /// `numpy.packbits(masks, axis=1)`: `ceil(N / 8)` bytes per model; `little` is
    /// `bitorder="little"` (else the first column is the byte's most significant bit).
    Packed { rows: ArrayView2<'a, u8>, n_cols: usize, little: bool },
}

impl Masks<'_> {
    fn n_rows(&self) -> usize {
        match self {
            Masks::Bytes(v) => v.nrows(),
            Masks::Bool(v) => v.nrows(),
            Masks::Packed { rows, .. } => rows.nrows(),
        }
    }

    fn n_cols(&self) -> usize {
        match self {
            Masks::Bytes(v) => v.ncols(),
            Masks::Bool(v) => v.ncols(),
            Masks::Packed { n_cols, .. } => *n_cols,
        }
    }

    /// Whether model `r` trained on example `j`.
    #[inline]
    fn get(&self, r: usize, j: usize) -> bool {
        match self {
            Masks::Bytes(v) => v[(r, j)] != 0,
            Masks::Bool(v) => v[(r, j)],
            Masks::Packed { rows, little, .. } => {
                let byte = rows[(r, j / 8)];
                let bit = if *little { j % 8 } else { 7 - j % 8 };
                (byte >> bit) & 1 == 1
            }
        }
    }
}

/// Rows folded per chunk: the chunk's dense `f64` copy of the masks (for `XᵀY`) stays near 32 MiB.
fn chunk_rows(n_cols: usize) -> usize {
    ((1usize << 22) / n_cols.max(1)).clamp(64, 8192) / 64 * 64
}

/// The sufficient statistics of a set of models (see the module's documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    n_rows: u64,
    n_cols: usize,
    n_targets: usize,
    /// `N x N` row-major, the upper triangle of the symmetric `XᵀX` (the diagonal holds the
    /// column sums); the strictly lower triangle is zero. Mirroring it after every chunk of
    /// models would cost `N²/2` scattered writes per chunk; readers take `(min, max)` instead.
    xtx: Vec<u32>,
    /// `N x K` row-major.
    xty: Vec<f64>,
    sum_y: Vec<f64>,
    sum_y2: Vec<f64>,
}

impl Stats {
    /// Empty statistics for `n_cols` training examples and `n_targets` outputs per model.
    pub fn new(n_cols: usize, n_targets: usize) -> Result<Self> {
        if n_cols == 0 || n_targets == 0 {
            return Err(Error::Empty(format!(
                "datamodels need at least one training example and one target (got {n_cols} and {n_targets})"
            )));
        }
        let gram = n_cols.checked_mul(n_cols).filter(|g| g.checked_mul(8).is_some());
        let cross = n_cols.checked_mul(n_targets).filter(|g| g.checked_mul(8).is_some());
        let (Some(gram), Some(cross)) = (gram, cross) else {
            return Err(Error::OutOfMemory { what: "datamodel statistics".into(), bytes: u128::MAX });
        };
        Ok(Stats {
            n_rows: 0,
            n_cols,
            n_targets,
            xtx: try_zeroed(gram, "the mask Gram matrix")?,
            xty: try_zeroed(cross, "masksᵀ outputs")?,
            sum_y: vec![0.0; n_targets],
            sum_y2: vec![0.0; n_targets],
        })
    }

    /// Builds statistics from their parts (as [`Stats::parts`] gives them), checking them.
    pub fn from_parts(
        n_rows: u64,
        xtx: Array2<u32>,
        xty: Array2<f64>,
        sum_y: Vec<f64>,
        sum_y2: Vec<f64>,
    ) -> Result<Self> {
        let (n, k) = xty.dim();
        if xtx.dim() != (n, n) || sum_y.len() != k || sum_y2.len() != k {
            return Err(Error::invalid(format!(
                "statistics parts do not fit together: xtx {:?}, xty {:?}, sum_y {}, sum_y2 {}",
                xtx.dim(),
                xty.dim(),
                sum_y.len(),
                sum_y2.len()
            )));
        }
        let mut s = Stats::new(n, k)?;
        s.n_rows = n_rows;
        s.xtx = xtx.iter().copied().collect();
        s.xty = xty.iter().copied().collect();
        s.sum_y = sum_y;
        s.sum_y2 = sum_y2;
        for i in 0..n {
            for j in 0..n {
                if s.xtx[i * n + j] != s.xtx[j * n + i] || s.xtx[i * n + j] > s.xtx[i * n + i].min(s.xtx[j * n + j]) {
                    return Err(Error::invalid(format!("xtx is not a matrix of co-occurrence counts at ({i}, {j})")));
                }
            }
            if u64::from(s.xtx[i * n + i]) > n_rows {
                return Err(Error::invalid(format!("column {i} counts more models than n_rows ({n_rows})")));
            }
        }
        for i in 0..n {
            s.xtx[i * n..i * n + i].fill(0);
        }
        if s.xty.iter().chain(&s.sum_y).chain(&s.sum_y2).any(|v| !v.is_finite()) {
            return Err(Error::invalid("statistics hold a NaN or infinite value"));
        }
        Ok(s)
    }

    /// The parts: `(n_rows, XᵀX, XᵀY, ΣY, ΣY²)`.
    pub fn parts(&self) -> (u64, Array2<u32>, Array2<f64>, Vec<f64>, Vec<f64>) {
        let (n, k) = (self.n_cols, self.n_targets);
        (
            self.n_rows,
            Array2::from_shape_fn((n, n), |(i, j)| self.xtx_at(i, j)),
            Array2::from_shape_vec((n, k), self.xty.clone()).expect("n x k"),
            self.sum_y.clone(),
            self.sum_y2.clone(),
        )
    }

    pub fn n_rows(&self) -> u64 {
        self.n_rows
    }
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }
    pub fn n_targets(&self) -> usize {
        self.n_targets
    }
    /// `XᵀX`'s upper triangle, row-major (the strictly lower triangle is zero).
    pub(crate) fn xtx_upper(&self) -> &[u32] {
        &self.xtx
    }
    /// `(XᵀX)_ij`.
    pub(crate) fn xtx_at(&self, i: usize, j: usize) -> u32 {
        self.xtx[i.min(j) * self.n_cols + i.max(j)]
    }
    pub(crate) fn xty(&self) -> &[f64] {
        &self.xty
    }
    pub(crate) fn sum_y(&self) -> &[f64] {
        &self.sum_y
    }
    pub(crate) fn sum_y2(&self) -> &[f64] {
        &self.sum_y2
    }

    /// Folds a chunk of models in: `masks` (`R x N`) and their `outputs` (`R x K`, `f32` or
    /// `f64`). All or nothing: on error the statistics are unchanged.
    pub fn update<T: Copy + Into<f64> + Sync>(
        &mut self,
        masks: Masks<'_>,
        outputs: ArrayView2<'_, T>,
        threads: Option<usize>,
    ) -> Result<()> {
        let r = masks.n_rows();
        if masks.n_cols() != self.n_cols {
            return Err(Error::invalid(format!(
                "masks have {} columns (training examples) but the statistics were started with {}",
                masks.n_cols(),
                self.n_cols
            )));
        }
        if let Masks::Packed { rows, n_cols, .. } = masks
            && rows.ncols() != n_cols.div_ceil(8)
        {
            return Err(Error::invalid(format!(
                "bit-packed masks of {n_cols} columns need {} bytes per row, got {}",
                n_cols.div_ceil(8),
                rows.ncols()
            )));
        }
        if outputs.dim() != (r, self.n_targets) {
            return Err(Error::invalid(format!(
                "outputs have shape {:?} but masks have {r} rows and the statistics {} targets",
                outputs.dim(),
                self.n_targets
            )));
        }
        if let Some(((row, col), v)) = outputs.indexed_iter().find(|(_, v)| !(**v).into().is_finite()) {
            return Err(Error::invalid(format!(
                "outputs hold a non-finite value ({}) at model {}, target {col}; drop or repair that model's row",
                Into::<f64>::into(*v),
                self.n_rows + row as u64
            )));
        }
        let total = self.n_rows + r as u64;
        if total > u64::from(u32::MAX) {
            return Err(Error::invalid(format!("at most {} models are supported, got {total}", u32::MAX)));
        }
        if r == 0 {
            return Ok(());
        }
        let (n, k) = (self.n_cols, self.n_targets);
        let work = r.saturating_mul(n).saturating_mul(n.max(k)) / 64;
        let (xtx, xty, sum_y, sum_y2) = (&mut self.xtx, &mut self.xty, &mut self.sum_y, &mut self.sum_y2);
        crate::sys::pool::run(threads, work, || {
            let step = chunk_rows(n);
            let mut start = 0;
            while start < r {
                let end = (start + step).min(r);
                let chunk = match masks {
                    Masks::Bytes(v) => Masks::Bytes(v.slice_move(s![start..end, ..])),
                    Masks::Bool(v) => Masks::Bool(v.slice_move(s![start..end, ..])),
                    Masks::Packed { rows, n_cols, little } => {
                        Masks::Packed { rows: rows.slice_move(s![start..end, ..]), n_cols, little }
                    }
                };
                let out = outputs.slice(s![start..end, ..]);
                let dense = out.mapv(|v| v.into());
                fold_gram(xtx, chunk, n);
                fold_cross(xty, chunk, dense.view(), n, k);
                for row in dense.rows() {
                    for ((s, s2), &v) in sum_y.iter_mut().zip(sum_y2.iter_mut()).zip(row) {
                        *s += v;
                        *s2 += v * v;
                    }
                }
                start = end;
            }
        })?;
        self.n_rows = total;
        Ok(())
    }

    /// Adds the statistics of other models (another shard of the same experiment).
    pub fn merge(&mut self, other: &Stats) -> Result<()> {
        if (self.n_cols, self.n_targets) != (other.n_cols, other.n_targets) {
            return Err(Error::Incompatible(format!(
                "statistics of {} training examples x {} targets and of {} x {}",
                self.n_cols, self.n_targets, other.n_cols, other.n_targets
            )));
        }
        let total = self.n_rows + other.n_rows;
        if total > u64::from(u32::MAX) {
            return Err(Error::invalid(format!("at most {} models are supported, got {total}", u32::MAX)));
        }
        self.n_rows = total;
        self.xtx.iter_mut().zip(&other.xtx).for_each(|(a, b)| *a += b);
        self.xty.iter_mut().zip(&other.xty).for_each(|(a, b)| *a += b);
        self.sum_y.iter_mut().zip(&other.sum_y).for_each(|(a, b)| *a += b);
        self.sum_y2.iter_mut().zip(&other.sum_y2).for_each(|(a, b)| *a += b);
        Ok(())
    }
}

fn try_zeroed<T: Default + Clone>(len: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::OutOfMemory {
        what: what.into(),
        bytes: (len as u128) * std::mem::size_of::<T>() as u128,
    })?;
    v.resize(len, T::default());
    Ok(v)
}

/// Adds the chunk's co-occurrence counts to `xtx` (its upper triangle).
fn fold_gram(xtx: &mut [u32], masks: Masks<'_>, n: usize) {
    let r = masks.n_rows();
    let words = r.div_ceil(64);
    // One bitset per column: bit `t` of column `j` is model `t` of the chunk.
    let mut cols = vec![0u64; n * words];
    cols.par_chunks_mut(words * 64.min(n)).enumerate().for_each(|(block, out)| {
        let j0 = block * 64.min(n);
        for t in 0..r {
            let (w, bit) = (t / 64, 1u64 << (t % 64));
            for (jj, col) in out.chunks_mut(words).enumerate() {
                if masks.get(t, j0 + jj) {
                    col[w] |= bit;
                }
            }
        }
    });
    let cols = &cols;
    // Row i of the upper triangle (rows shrink with i; work stealing evens the shares out).
    xtx.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        let ci = &cols[i * words..(i + 1) * words];
        popcount_row(ci, cols, words, i, row);
    });
}

#[multiversion(targets("x86_64+avx2+fma+popcnt", "x86_64+popcnt", "aarch64+neon"))]
fn popcount_row(ci: &[u64], cols: &[u64], words: usize, i: usize, row: &mut [u32]) {
    for (j, out) in row.iter_mut().enumerate().skip(i) {
        let cj = &cols[j * words..(j + 1) * words];
        let count: u32 = ci.iter().zip(cj).map(|(a, b)| (a & b).count_ones()).sum();
        *out += count;
    }
}

/// Adds `Xᵀ Y` of the chunk to `xty`, parallel over blocks of targets.
fn fold_cross(xty: &mut [f64], masks: Masks<'_>, outputs: ArrayView2<'_, f64>, n: usize, k: usize) {
    let r = masks.n_rows();
    let mut xt = vec![0.0f64; n * r];
    xt.par_chunks_mut(r).enumerate().for_each(|(j, col)| {
        for (t, v) in col.iter_mut().enumerate() {
            if masks.get(t, j) {
                *v = 1.0;
            }
        }
    });
    let x = ArrayView2::from_shape((n, r), &xt).expect("n x r");
    let mut acc = ndarray::ArrayViewMut2::from_shape((n, k), xty).expect("n x k");
    let threads = rayon::current_num_threads().max(1);
    let block = k.div_ceil(threads).max(16);
    let mut blocks: Vec<_> = acc.axis_chunks_iter_mut(Axis(1), block).collect();
    blocks.par_iter_mut().enumerate().for_each(|(b, out)| {
        let y = outputs.slice(s![.., b * block..b * block + out.ncols()]);
        ndarray::linalg::general_mat_mul(1.0, &x, &y, 1.0, out);
    });
}

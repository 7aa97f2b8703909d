//! The many-target lasso: one coordinate-descent solver per target, in parallel over targets,
//! all reading one shared Gram matrix of the standardized masks.
//!
//! Per target `k` the problem is scikit-learn's `Lasso(alpha=λ, fit_intercept=True)` on masks
//! standardized by `StandardScaler` (population standard deviation):
//!
//! ```text
//! min_{w,b}  1/(2n) Σ_m (y_m − b − Σ_j x̃_mj w_j)²  +  λ Σ_j |w_j|,   x̃_mj = (x_mj − μ_j) / σ_j
//! ```
//!
//! The bias is unpenalized, so it is `ȳ` and the problem only sees, from the statistics,
//! `G̃_ij = ((XᵀX)_ij/n − μ_i μ_j) / (σ_i σ_j)` and `c̃_j = ((XᵀY)_jk/n − μ_j ȳ) / σ_j`.
//! Coordinate descent keeps `q = c̃ − G̃ w` (the correlation of each column with the
//! residual): updating `w_j` is a soft threshold of `q_j + G̃_jj w_j` and one `axpy` with row
//! `j` of `G̃`. A column that is all ones or all zeros (`σ_j = 0`) cannot be told apart from the
//! bias: its weight is zero.
//!
//! Targets are solved [`PB`] at a time in the lanes of a block (see [`super::path`]): a sweep
//! visits every column (the coordinate update is also the KKT check, as `q` is kept exact on
//! every column), and the changes of a group of columns are applied lane by lane with rows of
//! `G̃` read once for the block. A solve stops when the largest change of a sweep is below `tol`
//! times the largest weight *and* the duality gap is below `tol` times the variance of `y`
//! (scikit-learn's two tests, in units of the `1/n` objective). The results are those of plain
//! cyclic coordinate descent, target by target.
//!
//! [`fit`] follows the datamodels protocol (Ilyas et al., 2022, appendix): a log-spaced path of
//! `n_lambdas` values from `λ_max = max_j |c̃_j|` (where every weight is zero) down to
//! `lambda_ratio · λ_max`, warm-started; the validation error of each λ from the validation
//! models' statistics; early stop when it has not improved for `patience` values; and a refit
//! on training and validation models together at the chosen λ. The path first visits every
//! `step`-th λ (and the last), then the grid λ nearest the vertex of the parabola through the
//! best of those and its two neighbours, warm-started from the best: the validation curve is
//! smooth and flat at its minimum, so this lands next to the full path's choice in a fraction
//! of the solves. The solves along the path only choose λ, so they stop at `path_tol` (default
//! `10 · tol`) and run in `f32`; the refit is `f64` and meets `tol`.

use super::stats::Stats;
use crate::error::{Error, Result};
use multiversion::multiversion;
use ndarray::Array2;
use rayon::prelude::*;

/// Options of [`fit`] and [`fit_fixed`].
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Values of λ on the path.
    pub n_lambdas: usize,
    /// `λ_min / λ_max` (scikit-learn's `eps`).
    pub lambda_ratio: f64,
    /// Stop the path when this many λ in a row did not improve the validation error; `None`
    /// walks the whole path.
    pub patience: Option<usize>,
    /// Convergence tolerance (scikit-learn's `tol`) of the final fit.
    pub tol: f64,
    /// Convergence tolerance of the solves along the path, which only choose λ.
    pub path_tol: f64,
    /// Sweeps (full or over the active set) allowed per solve.
    pub max_iter: usize,
    /// The path first visits every `step`-th λ, then every λ between the two neighbours of the
    /// best of those (1: every λ in order, as scikit-learn's `lasso_path`).
    pub step: usize,
    /// Run the path in `f64` rather than `f32` (it always does when `path_tol` is below `1e-5`).
    pub path_f64: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            n_lambdas: 100,
            lambda_ratio: 1e-3,
            patience: Some(5),
            tol: 1e-4,
            path_tol: 1e-3,
            max_iter: 1000,
            step: 8,
            path_f64: false,
        }
    }
}

impl FitOptions {
    fn check(&self) -> Result<()> {
        if self.n_lambdas == 0 {
            return Err(Error::invalid("n_lambdas must be at least 1"));
        }
        if !(self.lambda_ratio > 0.0 && self.lambda_ratio <= 1.0) {
            return Err(Error::invalid(format!("lambda_ratio must be in (0, 1], got {}", self.lambda_ratio)));
        }
        if !(self.tol > 0.0 && self.tol.is_finite()) {
            return Err(Error::invalid(format!("tol must be positive, got {}", self.tol)));
        }
        if !(self.path_tol > 0.0 && self.path_tol.is_finite()) {
            return Err(Error::invalid(format!("path_tol must be positive, got {}", self.path_tol)));
        }
        if self.max_iter == 0 {
            return Err(Error::invalid("max_iter must be at least 1"));
        }
        Ok(())
    }
}

/// Fitted datamodels.
#[derive(Clone, Debug)]
pub struct Fit {
    /// `N x K`, in raw mask units: the prediction for a mask `x` is `x · weights[:, k] + bias[k]`.
    pub weights: Array2<f64>,
    pub bias: Vec<f64>,
    /// The λ of each target (NaN for a constant target, whose weights are all zero).
    pub lam: Vec<f64>,
    /// `K x n_lambdas`: the path of each target (empty for [`fit_fixed`]).
    pub lambdas: Array2<f64>,
    /// `K x n_lambdas`: the validation mean squared error along the path; NaN past the early stop.
    pub val_mse: Array2<f64>,
    /// The duality gap of the final solve, in units of the `1/(2n)` objective.
    pub gap: Vec<f64>,
    /// Whether the final solve met the tolerance within `max_iter` sweeps.
    pub converged: Vec<bool>,
    /// Columns that are constant over the models of the final fit (their weights are zero).
    pub constant_columns: Vec<usize>,
}

/// The standardized design of a set of models, shared by every target.
pub(super) struct Design {
    pub(super) n: usize,
    rows: f64,
    mean: Vec<f64>,
    /// `σ_j`, zero for a constant column.
    pub(super) scale: Vec<f64>,
    /// `N x N` row-major standardized Gram matrix (divided by `n`); zero rows for constant columns.
    pub(super) gram: Vec<f64>,
}

impl Design {
    fn new(parts: &[&Stats]) -> Result<Design> {
        let n = parts[0].n_cols();
        let rows = parts.iter().map(|s| s.n_rows()).sum::<u64>();
        if rows == 0 {
            return Err(Error::Empty("no models to fit datamodels on".into()));
        }
        let count = |i: usize, j: usize| parts.iter().map(|s| u64::from(s.xtx_at(i, j))).sum::<u64>();
        let rows_f = rows as f64;
        let mut mean = Vec::with_capacity(n);
        let mut scale = Vec::with_capacity(n);
        for j in 0..n {
            let c = count(j, j);
            let mu = c as f64 / rows_f;
            mean.push(mu);
            // Exact test in integers: a column is constant when every model has it or none does.
            scale.push(if c == 0 || c == rows { 0.0 } else { (mu - mu * mu).sqrt() });
        }
        let mut gram = Vec::new();
        gram.try_reserve_exact(n * n)
            .map_err(|_| Error::OutOfMemory { what: "the Gram matrix".into(), bytes: (n * n * 8) as u128 })?;
        gram.resize(n * n, 0.0);
        let (m, sc) = (&mean, &scale);
        gram.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            if sc[i] == 0.0 {
                return;
            }
            for (j, g) in row.iter_mut().enumerate() {
                if sc[j] != 0.0 {
                    *g = (count(i, j) as f64 / rows_f - m[i] * m[j]) / (sc[i] * sc[j]);
                }
            }
        });
        Ok(Design { n, rows: rows_f, mean, scale, gram })
    }

    /// The columns a solve visits: not constant, with a positive diagonal.
    pub(super) fn columns(&self) -> Vec<usize> {
        (0..self.n).filter(|&j| self.scale[j] != 0.0 && self.gram[j * self.n + j] > 0.0).collect()
    }

    /// `(c̃, ȳ, var(y))` of target `k`.
    pub(super) fn target(&self, parts: &[&Stats], k: usize) -> (Vec<f64>, f64, f64) {
        let kk = parts[0].n_targets();
        let sy: f64 = parts.iter().map(|s| s.sum_y()[k]).sum();
        let syy: f64 = parts.iter().map(|s| s.sum_y2()[k]).sum();
        let ybar = sy / self.rows;
        let var = (syy / self.rows - ybar * ybar).max(0.0);
        let c = (0..self.n)
            .map(|j| {
                if self.scale[j] == 0.0 {
                    return 0.0;
                }
                let xy: f64 = parts.iter().map(|s| s.xty()[j * kk + k]).sum();
                (xy / self.rows - self.mean[j] * ybar) / self.scale[j]
            })
            .collect();
        (c, ybar, var)
    }

    /// Raw weights and bias from standardized weights.
    pub(super) fn raw(&self, w: &[f64], ybar: f64) -> (Vec<f64>, f64) {
        let beta: Vec<f64> = w.iter().zip(&self.scale).map(|(w, s)| if *s == 0.0 { 0.0 } else { w / s }).collect();
        let bias = ybar - beta.iter().zip(&self.mean).map(|(b, m)| b * m).sum::<f64>();
        (beta, bias)
    }
}

/// The validation models' statistics, with `XᵀX` converted once for the validation error.
///
/// The counts are stored as `f32`, exact up to `2²⁴` models, so that the pass over `XᵀX` that
/// every λ visited makes reads half the bytes of `f64` (it is bound by memory); more models
/// keep `f64`.
pub(super) struct Val<'a> {
    stats: &'a Stats,
    xtx: Xtx,
}

enum Xtx {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl<'a> Val<'a> {
    fn new(stats: &'a Stats) -> Result<Self> {
        let n = stats.n_cols();
        let oom =
            |w: usize| Error::OutOfMemory { what: "the validation Gram matrix".into(), bytes: (n * n * w) as u128 };
        let xtx = if stats.n_rows() < 1 << 24 {
            let mut v = Vec::new();
            v.try_reserve_exact(n * n).map_err(|_| oom(4))?;
            // Exact: every count is below 2²⁴.
            v.extend(stats.xtx_upper().iter().map(|&c| c as f32));
            Xtx::F32(v)
        } else {
            let mut v = Vec::new();
            v.try_reserve_exact(n * n).map_err(|_| oom(8))?;
            v.extend(stats.xtx_upper().iter().map(|&c| f64::from(c)));
            Xtx::F64(v)
        };
        Ok(Val { stats, xtx })
    }

    /// `(Σ_{j>i} XᵀX_ij β_j, XᵀX_ii)`, over `above` (the non-zero `β_j`, `j > i`) or, when
    /// `dense`, over every `j > i`.
    fn row_dot(&self, i: usize, beta: &[f64], above: &[usize], dense: bool) -> (f64, f64) {
        let n = beta.len();
        match &self.xtx {
            Xtx::F32(x) => {
                let row = &x[i * n..(i + 1) * n];
                let d = if dense {
                    dot32(&row[i + 1..], &beta[i + 1..])
                } else {
                    above.iter().map(|&j| f64::from(row[j]) * beta[j]).sum()
                };
                (d, f64::from(row[i]))
            }
            Xtx::F64(x) => {
                let row = &x[i * n..(i + 1) * n];
                let d = if dense {
                    dot(&row[i + 1..], &beta[i + 1..])
                } else {
                    above.iter().map(|&j| row[j] * beta[j]).sum()
                };
                (d, row[i])
            }
        }
    }

    /// The validation mean squared error of raw weights `beta` and bias `bias` for target `k`:
    /// `Σ_m (y_m − b − x_m·β)² / n_v`, expanded so that only the statistics are needed. The
    /// quadratic term `βᵀ(XᵀX)β = Σ_i β_i² XᵀX_ii + 2 Σ_{i<j} β_i XᵀX_ij β_j` reads the upper
    /// triangle only: per non-zero `β_i` a dot product of row `i` right of the diagonal with
    /// `β` (contiguous and vectorized when `β` is dense, over the non-zero entries only when
    /// it is sparse).
    pub(super) fn mse(&self, k: usize, beta: &[f64], bias: f64) -> f64 {
        let s = self.stats;
        let (n, kk) = (s.n_cols(), s.n_targets());
        let nv = s.n_rows() as f64;
        let nz: Vec<usize> = (0..n).filter(|&i| beta[i] != 0.0).collect();
        let dense = 4 * nz.len() >= n;
        let (sy, syy) = (s.sum_y()[k], s.sum_y2()[k]);
        let (mut lin, mut quad, mut sx) = (0.0, 0.0, 0.0);
        for (p, &i) in nz.iter().enumerate() {
            let w = beta[i];
            let (rb, diag) = self.row_dot(i, beta, &nz[p + 1..], dense);
            lin += w * s.xty()[i * kk + k];
            sx += w * diag;
            quad += w * (w * diag + 2.0 * rb);
        }
        let sse = syy - 2.0 * lin - 2.0 * bias * sy + quad + 2.0 * bias * sx + nv * bias * bias;
        sse.max(0.0) / nv
    }
}

/// `Σ_i a_i b_i` with `a` widened to `f64`, in independent partial sums so that it vectorizes.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn dot32(a: &[f32], b: &[f64]) -> f64 {
    const L: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| f64::from(*x) * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..L {
            acc[l] += f64::from(x[l]) * y[l];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `Σ_i a_i b_i`, in independent partial sums so that it vectorizes.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    const L: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..L {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// One target's path: `(raw weights at the best λ, best λ, λ path, validation curve)`.
pub(super) type PathOut = (Vec<f64>, f64, Vec<f64>, Vec<f64>);

use super::path::{PB, Refit, refit_block};

/// Refits targets in blocks of [`PB`], `order` grouping targets of similar cost together;
/// results in target order.
fn refit_all(
    d: &Design,
    parts: &[&Stats],
    order: &[usize],
    lam: &[f64],
    beta0: &[&[f64]],
    opts: &FitOptions,
) -> Vec<Refit> {
    let cols = d.columns();
    let blocks: Vec<Vec<Refit>> = order
        .par_chunks(PB)
        .map(|ks| {
            let l: Vec<f64> = ks.iter().map(|&k| lam[k]).collect();
            let b0: Vec<&[f64]> = ks.iter().map(|&k| beta0[k]).collect();
            refit_block(d, &cols, parts, ks, &l, &b0, opts)
        })
        .collect();
    let mut out: Vec<Option<Refit>> = (0..lam.len()).map(|_| None).collect();
    for (&k, r) in order.iter().zip(blocks.into_iter().flatten()) {
        out[k] = Some(r);
    }
    out.into_iter().map(|r| r.expect("every target is refitted")).collect()
}

fn check_parts(parts: &[&Stats]) -> Result<()> {
    let (n, k) = (parts[0].n_cols(), parts[0].n_targets());
    if parts.iter().any(|s| (s.n_cols(), s.n_targets()) != (n, k)) {
        return Err(Error::Incompatible("training and validation statistics differ in shape".into()));
    }
    Ok(())
}

fn assemble(d: &Design, k: usize, fits: Vec<Refit>, lam: Vec<f64>) -> Fit {
    let n = d.n;
    let mut weights = Array2::zeros((n, k));
    let (mut bias, mut gap, mut converged) = (Vec::with_capacity(k), Vec::with_capacity(k), Vec::with_capacity(k));
    for (t, (beta, b, g, ok)) in fits.into_iter().enumerate() {
        weights.column_mut(t).iter_mut().zip(beta).for_each(|(o, v)| *o = v);
        bias.push(b);
        gap.push(g);
        converged.push(ok);
    }
    let constant_columns = (0..n).filter(|&j| d.scale[j] == 0.0).collect();
    Fit {
        weights,
        bias,
        lam,
        lambdas: Array2::zeros((k, 0)),
        val_mse: Array2::zeros((k, 0)),
        gap,
        converged,
        constant_columns,
    }
}

/// Fits one datamodel per target with λ chosen on `val` (see the module's documentation).
pub fn fit(train: &Stats, val: &Stats, opts: &FitOptions, threads: Option<usize>) -> Result<Fit> {
    opts.check()?;
    check_parts(&[train, val])?;
    if train.n_rows() < 2 || val.n_rows() < 1 {
        return Err(Error::Empty(format!(
            "choosing λ needs at least 2 training and 1 validation models, got {} and {}",
            train.n_rows(),
            val.n_rows()
        )));
    }
    let (n, k) = (train.n_cols(), train.n_targets());
    let work = n.saturating_mul(k).saturating_mul(64);
    let paths = {
        let d = Design::new(&[train])?;
        let val = Val::new(val)?;
        crate::sys::pool::run(threads, work, || {
            let ks: Vec<usize> = (0..k).collect();
            super::path::paths(&d, train, &val, &ks, opts)
        })?
    };
    let parts = [train, val];
    let d = Design::new(&parts)?;
    let lam: Vec<f64> = paths.iter().map(|p| p.1).collect();
    // Targets of similar support share a block: a block costs what its densest lane does.
    let mut order: Vec<usize> = (0..k).collect();
    let nnz: Vec<usize> = paths.iter().map(|p| p.0.iter().filter(|v| **v != 0.0).count()).collect();
    order.sort_by_key(|&t| std::cmp::Reverse(nnz[t]));
    let beta0: Vec<&[f64]> = paths.iter().map(|p| p.0.as_slice()).collect();
    let fits = crate::sys::pool::run(threads, work, || refit_all(&d, &parts, &order, &lam, &beta0, opts))?;
    let mut out = assemble(&d, k, fits, lam);
    let n_l = opts.n_lambdas;
    out.lambdas = Array2::from_shape_fn((k, n_l), |(t, i)| paths[t].2[i]);
    out.val_mse = Array2::from_shape_fn((k, n_l), |(t, i)| paths[t].3[i]);
    Ok(out)
}

/// Fits one datamodel per target at a given λ per target (no path, no validation) on the models
/// of all `parts` together.
pub fn fit_fixed(parts: &[&Stats], lam: &[f64], opts: &FitOptions, threads: Option<usize>) -> Result<Fit> {
    opts.check()?;
    if parts.is_empty() {
        return Err(Error::Empty("no statistics to fit".into()));
    }
    check_parts(parts)?;
    let (n, k) = (parts[0].n_cols(), parts[0].n_targets());
    if lam.len() != k {
        return Err(Error::invalid(format!("{} values of λ for {k} targets", lam.len())));
    }
    if let Some(l) = lam.iter().find(|l| !(l.is_finite() && **l > 0.0)) {
        return Err(Error::invalid(format!("λ must be positive and finite, got {l}")));
    }
    let d = Design::new(parts)?;
    let zeros = vec![0.0; n];
    let work = n.saturating_mul(k).saturating_mul(64);
    let order: Vec<usize> = (0..k).collect();
    let beta0 = vec![zeros.as_slice(); k];
    let fits = crate::sys::pool::run(threads, work, || refit_all(&d, parts, &order, lam, &beta0, opts))?;
    Ok(assemble(&d, k, fits, lam.to_vec()))
}

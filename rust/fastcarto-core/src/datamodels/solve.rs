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
//! Each solve alternates full sweeps (every column: the KKT check, which lets violators in)
//! with sweeps over the active set (the non-zero weights), and stops when the largest change of
//! a sweep is below `tol` times the largest weight *and* the duality gap is below `tol` times
//! the variance of `y` (scikit-learn's two tests, in units of the `1/n` objective).
//!
//! [`fit`] follows the datamodels protocol (Ilyas et al., 2022, appendix): a log-spaced path of
//! `n_lambdas` values from `λ_max = max_j |c̃_j|` (where every weight is zero) down to
//! `lambda_ratio · λ_max`, warm-started; the validation error of each λ from the validation
//! models' statistics; early stop when it has not improved for `patience` values; and a refit
//! on training and validation models together at the chosen λ.

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
    /// Convergence tolerance (scikit-learn's `tol`).
    pub tol: f64,
    /// Sweeps (full or over the active set) allowed per solve.
    pub max_iter: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions { n_lambdas: 100, lambda_ratio: 1e-3, patience: Some(5), tol: 1e-4, max_iter: 1000 }
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
struct Design {
    n: usize,
    rows: f64,
    mean: Vec<f64>,
    /// `σ_j`, zero for a constant column.
    scale: Vec<f64>,
    /// `N x N` row-major standardized Gram matrix (divided by `n`); zero rows for constant columns.
    gram: Vec<f64>,
}

impl Design {
    fn new(parts: &[&Stats]) -> Result<Design> {
        let n = parts[0].n_cols();
        let rows = parts.iter().map(|s| s.n_rows()).sum::<u64>();
        if rows == 0 {
            return Err(Error::Empty("no models to fit datamodels on".into()));
        }
        let count = |i: usize, j: usize| parts.iter().map(|s| u64::from(s.xtx()[i * n + j])).sum::<u64>();
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

    fn row(&self, j: usize) -> &[f64] {
        &self.gram[j * self.n..(j + 1) * self.n]
    }

    /// `(c̃, ȳ, var(y))` of target `k`.
    fn target(&self, parts: &[&Stats], k: usize) -> (Vec<f64>, f64, f64) {
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
    fn raw(&self, w: &[f64], ybar: f64) -> (Vec<f64>, f64) {
        let beta: Vec<f64> = w.iter().zip(&self.scale).map(|(w, s)| if *s == 0.0 { 0.0 } else { w / s }).collect();
        let bias = ybar - beta.iter().zip(&self.mean).map(|(b, m)| b * m).sum::<f64>();
        (beta, bias)
    }
}

#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

fn soft(z: f64, lam: f64) -> f64 {
    if z > lam {
        z - lam
    } else if z < -lam {
        z + lam
    } else {
        0.0
    }
}

/// Coordinate descent on one target.
struct Cd<'a> {
    d: &'a Design,
    c: Vec<f64>,
    var: f64,
    w: Vec<f64>,
    /// `c̃ − G̃ w`.
    q: Vec<f64>,
    active: Vec<usize>,
}

/// How a solve ended.
struct Solved {
    gap: f64,
    converged: bool,
}

impl<'a> Cd<'a> {
    fn new(d: &'a Design, c: Vec<f64>, var: f64, w: Vec<f64>) -> Self {
        let mut q = c.clone();
        for (j, &wj) in w.iter().enumerate() {
            if wj != 0.0 {
                axpy(&mut q, -wj, d.row(j));
            }
        }
        Cd { d, c, var, w, q, active: Vec::new() }
    }

    /// Updates `w_j`; returns `|Δw_j|`.
    #[inline]
    fn update(&mut self, j: usize, lam: f64) -> f64 {
        let gjj = self.d.gram[j * self.d.n + j];
        if self.d.scale[j] == 0.0 || gjj <= 0.0 {
            return 0.0;
        }
        let old = self.w[j];
        let new = soft(self.q[j] + gjj * old, lam) / gjj;
        if new == old {
            return 0.0;
        }
        self.w[j] = new;
        axpy(&mut self.q, old - new, self.d.row(j));
        (new - old).abs()
    }

    /// One sweep over `cols` (all columns when `None`): `(max |Δw|, max |w|)`.
    fn sweep(&mut self, cols: Option<&[usize]>, lam: f64) -> (f64, f64) {
        let (mut dmax, mut wmax) = (0.0f64, 0.0f64);
        match cols {
            Some(cols) => {
                for &j in cols {
                    dmax = dmax.max(self.update(j, lam));
                    wmax = wmax.max(self.w[j].abs());
                }
            }
            None => {
                for j in 0..self.d.n {
                    dmax = dmax.max(self.update(j, lam));
                    wmax = wmax.max(self.w[j].abs());
                }
            }
        }
        (dmax, wmax)
    }

    /// The duality gap at `lam` (scikit-learn's, divided by `n`).
    fn gap(&self, lam: f64) -> f64 {
        let (mut wc, mut wq, mut l1, mut qmax) = (0.0, 0.0, 0.0, 0.0f64);
        for j in 0..self.d.n {
            let w = self.w[j];
            wc += w * self.c[j];
            wq += w * self.q[j];
            l1 += w.abs();
            if self.d.scale[j] != 0.0 {
                qmax = qmax.max(self.q[j].abs());
            }
        }
        let r2 = (self.var - 2.0 * wc + (wc - wq)).max(0.0);
        let ry = self.var - wc;
        let cst = if qmax > lam { lam / qmax } else { 1.0 };
        0.5 * r2 * (1.0 + cst * cst) + lam * l1 - cst * ry
    }

    fn solve(&mut self, lam: f64, opts: &FitOptions) -> Solved {
        let tol_gap = opts.tol * self.var;
        let mut sweeps = 0;
        loop {
            let (dmax, wmax) = self.sweep(None, lam);
            sweeps += 1;
            let mut gap = f64::NAN;
            if wmax == 0.0 || dmax <= opts.tol * wmax {
                gap = self.gap(lam);
                if gap <= tol_gap {
                    return Solved { gap, converged: true };
                }
            }
            if sweeps >= opts.max_iter {
                let gap = if gap.is_nan() { self.gap(lam) } else { gap };
                return Solved { gap, converged: gap <= tol_gap };
            }
            let mut active = std::mem::take(&mut self.active);
            active.clear();
            active.extend((0..self.d.n).filter(|&j| self.w[j] != 0.0));
            while sweeps < opts.max_iter {
                let (dmax, wmax) = self.sweep(Some(&active), lam);
                sweeps += 1;
                if wmax == 0.0 || dmax <= opts.tol * wmax {
                    break;
                }
            }
            self.active = active;
        }
    }
}

/// The validation mean squared error of raw weights `beta` (zero outside `support`) and `bias`
/// on models summarized by `val`, for target `k`.
fn val_mse(val: &Stats, k: usize, beta: &[f64], support: &[usize], bias: f64) -> f64 {
    let (n, kk) = (val.n_cols(), val.n_targets());
    let nv = val.n_rows() as f64;
    let (xtx, xty) = (val.xtx(), val.xty());
    let (sy, syy) = (val.sum_y()[k], val.sum_y2()[k]);
    let (mut lin, mut quad, mut sx) = (0.0, 0.0, 0.0);
    for &i in support {
        lin += beta[i] * xty[i * kk + k];
        sx += beta[i] * f64::from(xtx[i * n + i]);
        let row = &xtx[i * n..(i + 1) * n];
        let inner: f64 = support.iter().map(|&j| beta[j] * f64::from(row[j])).sum();
        quad += beta[i] * inner;
    }
    // Σ_m (y_m − b − x_m·β)², expanded so that only the statistics are needed.
    let sse = syy - 2.0 * lin - 2.0 * bias * sy + quad + 2.0 * bias * sx + nv * bias * bias;
    sse.max(0.0) / nv
}

/// One target along the path: `(raw weights at the best λ, best λ, λ path, validation curve)`.
fn path(d: &Design, train: &Stats, val: &Stats, k: usize, opts: &FitOptions) -> (Vec<f64>, f64, Vec<f64>, Vec<f64>) {
    let n_l = opts.n_lambdas;
    let mut curve = vec![f64::NAN; n_l];
    let (c, ybar, var) = d.target(&[train], k);
    let lam_max = c.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let lams: Vec<f64> = (0..n_l)
        .map(|i| if n_l == 1 { lam_max } else { lam_max * opts.lambda_ratio.powf(i as f64 / (n_l - 1) as f64) })
        .collect();
    if lam_max <= 0.0 || var <= 0.0 {
        // A constant target (or one no column correlates with): nothing to select.
        return (vec![0.0; d.n], f64::NAN, lams, curve);
    }
    let mut cd = Cd::new(d, c, var, vec![0.0; d.n]);
    let (mut best, mut best_i, mut best_beta) = (f64::INFINITY, 0, vec![0.0; d.n]);
    for (i, &lam) in lams.iter().enumerate() {
        cd.solve(lam, opts);
        let (beta, bias) = d.raw(&cd.w, ybar);
        let support: Vec<usize> = (0..d.n).filter(|&j| beta[j] != 0.0).collect();
        let err = val_mse(val, k, &beta, &support, bias);
        curve[i] = err;
        if err < best {
            (best, best_i, best_beta) = (err, i, beta);
        } else if opts.patience.is_some_and(|p| i - best_i >= p) {
            break;
        }
    }
    (best_beta, lams[best_i], lams, curve)
}

/// Solves target `k` on `d` at `lam`, warm-started from raw weights `beta0`:
/// `(raw weights, bias, gap, converged)`.
fn refit(
    d: &Design,
    parts: &[&Stats],
    k: usize,
    lam: f64,
    beta0: &[f64],
    opts: &FitOptions,
) -> (Vec<f64>, f64, f64, bool) {
    let (c, ybar, var) = d.target(parts, k);
    if lam.is_nan() || lam <= 0.0 || var <= 0.0 {
        return (vec![0.0; d.n], ybar, 0.0, true);
    }
    let w0 = beta0.iter().zip(&d.scale).map(|(b, s)| b * s).collect();
    let mut cd = Cd::new(d, c, var, w0);
    let solved = cd.solve(lam, opts);
    let (beta, bias) = d.raw(&cd.w, ybar);
    (beta, bias, solved.gap, solved.converged)
}

fn check_parts(parts: &[&Stats]) -> Result<()> {
    let (n, k) = (parts[0].n_cols(), parts[0].n_targets());
    if parts.iter().any(|s| (s.n_cols(), s.n_targets()) != (n, k)) {
        return Err(Error::Incompatible("training and validation statistics differ in shape".into()));
    }
    Ok(())
}

fn assemble(d: &Design, k: usize, fits: Vec<(Vec<f64>, f64, f64, bool)>, lam: Vec<f64>) -> Fit {
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
        crate::sys::pool::run(threads, work, || {
            (0..k).into_par_iter().map(|t| path(&d, train, val, t, opts)).collect::<Vec<_>>()
        })?
    };
    let parts = [train, val];
    let d = Design::new(&parts)?;
    let lam: Vec<f64> = paths.iter().map(|p| p.1).collect();
    let fits = crate::sys::pool::run(threads, work, || {
        paths.par_iter().enumerate().map(|(t, p)| refit(&d, &parts, t, p.1, &p.0, opts)).collect::<Vec<_>>()
    })?;
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
    let fits = crate::sys::pool::run(threads, work, || {
        (0..k).into_par_iter().map(|t| refit(&d, parts, t, lam[t], &zeros, opts)).collect::<Vec<_>>()
    })?;
    Ok(assemble(&d, k, fits, lam.to_vec()))
}

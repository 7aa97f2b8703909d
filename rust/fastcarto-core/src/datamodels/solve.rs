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
//! on training and validation models together at the chosen λ. The path first visits every
//! `step`-th λ, then every λ between the two neighbours of the best of those, warm-started from
//! them: the same choice as the full path whenever the validation curve has one minimum at
//! that resolution, in about a third of the solves.

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
    /// The path first visits every `step`-th λ, then every λ between the two neighbours of the
    /// best of those (1: every λ in order, as scikit-learn's `lasso_path`).
    pub step: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions { n_lambdas: 100, lambda_ratio: 1e-3, patience: Some(5), tol: 1e-4, max_iter: 1000, step: 4 }
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
///
/// Between two KKT checks the sweeps touch only the active set, with `q` kept on it through a
/// compact copy of `G̃_AA` (`|A|²` per sweep instead of `N·|A|`); the full `q` is brought up to
/// date once afterwards (one `axpy` per changed weight), then every column outside the active
/// set is checked (`|q_j| > λ` lets it in). This is glmnet's covariance updating (Friedman,
/// Hastie and Tibshirani, 2010, section 2.2) with its active-set cycling.
#[derive(Clone)]
struct Cd<'a> {
    d: &'a Design,
    c: Vec<f64>,
    var: f64,
    w: Vec<f64>,
    /// `c̃ − G̃ w`, exact after each [`Cd::sync`].
    q: Vec<f64>,
    active: Vec<usize>,
    /// `G̃` restricted to the active set, row-major.
    gaa: Vec<f64>,
    /// `q` on the active set, kept current by the sweeps.
    qa: Vec<f64>,
    /// The active weights at the last sync.
    wa0: Vec<f64>,
    /// The λ the weights solve (NaN when unknown).
    lam: f64,
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
        let active = (0..d.n).filter(|&j| w[j] != 0.0).collect();
        Cd { d, c, var, w, q, active, gaa: Vec::new(), qa: Vec::new(), wa0: Vec::new(), lam: f64::NAN }
    }

    /// Sets the active set to the non-zero weights and the columns whose `|q_j|` exceeds
    /// `threshold` (`λ`: the columns violating the KKT conditions); returns how many entered.
    fn activate(&mut self, threshold: f64) -> usize {
        let mut entered = 0;
        self.active.clear();
        for j in 0..self.d.n {
            if self.w[j] != 0.0 {
                self.active.push(j);
            } else if self.d.scale[j] != 0.0 && self.q[j].abs() > threshold {
                self.active.push(j);
                entered += 1;
            }
        }
        let a = self.active.len();
        self.gaa.clear();
        for &i in &self.active {
            let row = self.d.row(i);
            self.gaa.extend(self.active.iter().map(|&j| row[j]));
        }
        self.qa.clear();
        self.qa.extend(self.active.iter().map(|&j| self.q[j]));
        self.wa0.clear();
        self.wa0.extend(self.active.iter().map(|&j| self.w[j]));
        debug_assert_eq!(self.gaa.len(), a * a);
        entered
    }

    /// One sweep over the active set: `(max |Δw|, max |w|)`.
    fn sweep(&mut self, lam: f64) -> (f64, f64) {
        let a = self.active.len();
        let (mut dmax, mut wmax) = (0.0f64, 0.0f64);
        for t in 0..a {
            let j = self.active[t];
            let gjj = self.gaa[t * a + t];
            let old = self.w[j];
            let new = if gjj > 0.0 { soft(self.qa[t] + gjj * old, lam) / gjj } else { 0.0 };
            if new != old {
                self.w[j] = new;
                axpy(&mut self.qa, old - new, &self.gaa[t * a..(t + 1) * a]);
                dmax = dmax.max((new - old).abs());
            }
            wmax = wmax.max(new.abs());
        }
        (dmax, wmax)
    }

    /// Brings the full `q` up to date with the sweeps since the last sync.
    fn sync(&mut self) {
        for (t, &j) in self.active.iter().enumerate() {
            let dw = self.w[j] - self.wa0[t];
            if dw != 0.0 {
                axpy(&mut self.q, -dw, self.d.row(j));
            }
        }
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
        // ‖r‖²/n = var − 2 wᵀc̃ + wᵀG̃w, and wᵀG̃w = wᵀ(c̃ − q).
        let r2 = (self.var - 2.0 * wc + (wc - wq)).max(0.0);
        let ry = self.var - wc;
        let cst = if qmax > lam { lam / qmax } else { 1.0 };
        0.5 * r2 * (1.0 + cst * cst) + lam * l1 - cst * ry
    }

    /// Solves at `lam`, warm-started; `prev` is the λ the current weights solve (NaN if
    /// none), for the sequential strong rule (Tibshirani et al., 2012): columns with
    /// `|q_j| > 2λ − λ_prev` are likely to enter, so they start in the active set, which saves
    /// a round of sweeps and a sync when they do. The KKT check still decides.
    fn solve(&mut self, lam: f64, prev: f64, opts: &FitOptions) -> Solved {
        let tol_gap = opts.tol * self.var;
        let mut sweeps = 0;
        let mut threshold = if prev > lam { 2.0 * lam - prev } else { lam };
        loop {
            let entered = self.activate(threshold);
            threshold = lam;
            if entered == 0 {
                let gap = self.gap(lam);
                if gap <= tol_gap {
                    return Solved { gap, converged: true };
                }
                if sweeps >= opts.max_iter {
                    return Solved { gap, converged: false };
                }
            } else if sweeps >= opts.max_iter {
                let gap = self.gap(lam);
                return Solved { gap, converged: gap <= tol_gap };
            }
            loop {
                let (dmax, wmax) = self.sweep(lam);
                sweeps += 1;
                if wmax == 0.0 || dmax <= opts.tol * wmax || sweeps >= opts.max_iter {
                    break;
                }
            }
            self.sync();
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
    let mut best = Best { err: f64::INFINITY, i: 0, beta: vec![0.0; d.n] };
    let mut eval = |cd: &mut Cd<'_>, i: usize, best: &mut Best| {
        cd.solve(lams[i], cd.lam, opts);
        cd.lam = lams[i];
        let (beta, bias) = d.raw(&cd.w, ybar);
        let support: Vec<usize> = (0..d.n).filter(|&j| beta[j] != 0.0).collect();
        let err = val_mse(val, k, &beta, &support, bias);
        curve[i] = err;
        let better = err < best.err;
        if better {
            *best = Best { err, i, beta };
        }
        better
    };
    // Every `step`-th λ first, then every λ between the neighbours of the best of those.
    let step = opts.step.max(1);
    let mut cd = Cd::new(d, c, var, vec![0.0; d.n]);
    cd.lam = lam_max;
    let (mut prev, mut before_best, mut at_best) = (None::<Cd<'_>>, None::<Cd<'_>>, None::<Cd<'_>>);
    let mut i = 0;
    while i < n_l {
        if eval(&mut cd, i, &mut best) {
            before_best = prev.take();
            at_best = Some(cd.clone());
        } else if opts.patience.is_some_and(|p| i - best.i >= p) {
            break;
        }
        if step > 1 {
            prev = Some(cd.clone());
        }
        i += step;
    }
    if step > 1 {
        let b = best.i;
        if let Some(mut cd) = before_best {
            for i in b + 1 - step..b {
                eval(&mut cd, i, &mut best);
            }
        }
        if let Some(mut cd) = at_best {
            for i in b + 1..(b + step).min(n_l) {
                eval(&mut cd, i, &mut best);
            }
        }
    }
    (best.beta, lams[best.i], lams, curve)
}

struct Best {
    err: f64,
    i: usize,
    beta: Vec<f64>,
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
    let solved = cd.solve(lam, f64::NAN, opts);
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

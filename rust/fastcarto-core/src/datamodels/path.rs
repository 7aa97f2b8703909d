//! The λ path of every target (see [`super::solve`]'s documentation for the protocol), in `f32`
//! or `f64`.
//!
//! The path's solves only choose λ, at a loose tolerance (`path_tol`, default `1e-3`), so they
//! run on an `f32` copy of `G̃` with `f32` weights and residual correlations: half the bytes of
//! `G̃` read per coordinate change and twice the values per vector instruction. The refit at the
//! chosen λ is `f64` (`tol`, and the gap it reports). A `path_tol` below [`F32_MIN_TOL`] (where
//! `f32` rounding of `q` would be of the order of the tolerance) runs the path in `f64`.
//!
//! Layout: a [`Lanes`] block holds [`PB`] targets, each lane's `w` and `q` contiguous
//! (lane-major). A sweep visits every column for all lanes; the columns that changed in any
//! lane are gathered in groups of [`GROUP`], and a group is applied lane by lane, each lane
//! applying only its own non-zero changes (`q_i ← q_i − G̃_{j_t,i} δ_t`, one fused multiply-add
//! per term, in column order), so the rows of a group, read once from memory, serve every lane
//! from the cache, and a lane pays only for its own changes. Within a group, `q_j` is first
//! corrected by the lane's pending changes in the same order, so every update sees the `q` of
//! plain cyclic coordinate descent, rounded identically whatever the other lanes do: a target
//! gives bitwise the same path in any block, alone or among others.

use super::solve::{Design, FitOptions, PathOut, Val};
use super::stats::Stats;
use multiversion::multiversion;
use std::sync::Mutex;

/// Targets in a block.
pub(super) const PB: usize = 8;

/// Columns whose changes are applied together.
const GROUP: usize = 4;

/// Below this `path_tol` the path runs in `f64`.
pub(super) const F32_MIN_TOL: f64 = 1e-5;

/// The float type of a path.
pub(super) trait Real: Copy + PartialEq + PartialOrd + Send + Sync + std::fmt::Debug + 'static {
    const ZERO: Self;
    fn of(v: f64) -> Self;
    fn f64(self) -> f64;
    fn fma(self, a: Self, b: Self) -> Self;
    fn abs(self) -> Self;
    fn neg(self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            #[inline(always)]
            fn of(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn fma(self, a: Self, b: Self) -> Self {
                self.mul_add(a, b)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn neg(self) -> Self {
                -self
            }
            #[inline(always)]
            fn sub(self, o: Self) -> Self {
                self - o
            }
            #[inline(always)]
            fn add(self, o: Self) -> Self {
                self + o
            }
            #[inline(always)]
            fn mul(self, o: Self) -> Self {
                self * o
            }
            #[inline(always)]
            fn div(self, o: Self) -> Self {
                self / o
            }
        }
    };
}
real!(f32);
real!(f64);

#[inline(always)]
fn soft<T: Real>(z: T, lam: T) -> T {
    if z > lam {
        z.sub(lam)
    } else if z < lam.neg() {
        z.add(lam)
    } else {
        T::ZERO
    }
}

/// `q ← q − Σ_t δ_t r_t`, one fused multiply-add per term in order.
#[inline(always)]
fn apply<T: Real>(q: &mut [T], rows: &[&[T]], d: &[T]) {
    let n = q.len();
    match rows.len() {
        1 => {
            let (r0, d0) = (&rows[0][..n], d[0].neg());
            for i in 0..n {
                q[i] = d0.fma(r0[i], q[i]);
            }
        }
        2 => {
            let (r0, r1, d0, d1) = (&rows[0][..n], &rows[1][..n], d[0].neg(), d[1].neg());
            for i in 0..n {
                q[i] = d1.fma(r1[i], d0.fma(r0[i], q[i]));
            }
        }
        3 => {
            let (r0, r1, r2) = (&rows[0][..n], &rows[1][..n], &rows[2][..n]);
            let (d0, d1, d2) = (d[0].neg(), d[1].neg(), d[2].neg());
            for i in 0..n {
                q[i] = d2.fma(r2[i], d1.fma(r1[i], d0.fma(r0[i], q[i])));
            }
        }
        _ => {
            let (r0, r1, r2, r3) = (&rows[0][..n], &rows[1][..n], &rows[2][..n], &rows[3][..n]);
            let (d0, d1, d2, d3) = (d[0].neg(), d[1].neg(), d[2].neg(), d[3].neg());
            for i in 0..n {
                q[i] = d3.fma(r3[i], d2.fma(r2[i], d1.fma(r1[i], d0.fma(r0[i], q[i]))));
            }
        }
    }
}

/// Applies the first `pending` column changes of a group, lane by lane, each lane only its
/// non-zero ones (a zero term would be an exact no-op).
#[inline(always)]
fn flush<T: Real>(n: usize, g: &[T], q: &mut [T], js: &[usize; GROUP], dl: &[[T; PB]; GROUP], pending: usize) {
    for (b, qb) in q.chunks_exact_mut(n).enumerate() {
        let mut rows: [&[T]; GROUP] = [&[]; GROUP];
        let mut d = [T::ZERO; GROUP];
        let mut m = 0;
        for t in 0..pending {
            if dl[t][b] != T::ZERO {
                rows[m] = &g[js[t] * n..(js[t] + 1) * n];
                d[m] = dl[t][b];
                m += 1;
            }
        }
        if m > 0 {
            apply(qb, &rows[..m], &d[..m]);
        }
    }
}

/// [`flush`] compiled for the machine's vector instructions, for callers outside [`sweep`].
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn flush_simd<T: Real>(n: usize, g: &[T], q: &mut [T], js: &[usize; GROUP], dl: &[[T; PB]; GROUP], pending: usize) {
    flush(n, g, q, js, dl, pending);
}

/// One sweep over the columns `cols` for the lanes in `run` (see the module's documentation),
/// accumulating `max |Δw|` and `max |w|` per lane.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // lane `b` of every array
fn sweep<T: Real>(
    n: usize,
    g: &[T],
    diag: &[T],
    cols: &[usize],
    q: &mut [T],
    w: &mut [T],
    lam: &[T; PB],
    run: &[bool; PB],
    dmax: &mut [T; PB],
    wmax: &mut [T; PB],
) {
    let mut js = [0usize; GROUP];
    let mut dl = [[T::ZERO; PB]; GROUP];
    let mut pending = 0;
    for &j in cols {
        let gjj = diag[j];
        // Branch-free across lanes (a lane that is not running keeps its weight), so that the
        // lanes' arithmetic vectorizes; a zero pending change is an exact no-op.
        let mut qj: [T; PB] = std::array::from_fn(|b| q[b * n + j]);
        for t in 0..pending {
            let gt = g[js[t] * n + j];
            for b in 0..PB {
                qj[b] = dl[t][b].neg().fma(gt, qj[b]);
            }
        }
        let mut delta = [T::ZERO; PB];
        for b in 0..PB {
            let old = w[b * n + j];
            let new = soft(qj[b].add(gjj.mul(old)), lam[b]).div(gjj);
            let new = if run[b] { new } else { old };
            w[b * n + j] = new;
            let dd = new.sub(old);
            delta[b] = dd;
            if dd.abs() > dmax[b] {
                dmax[b] = dd.abs();
            }
            if new.abs() > wmax[b] {
                wmax[b] = new.abs();
            }
        }
        if delta.iter().any(|d| *d != T::ZERO) {
            js[pending] = j;
            dl[pending] = delta;
            pending += 1;
            if pending == GROUP {
                flush(n, g, q, &js, &dl, pending);
                pending = 0;
            }
        }
    }
    flush(n, g, q, &js, &dl, pending);
}

/// One lane's weights and residual correlations, to restart the path from.
#[derive(Clone)]
struct Snap<T> {
    w: Vec<T>,
    q: Vec<T>,
}

/// [`PB`] targets' coordinate descent, lane-major.
struct Lanes<'a, T> {
    d: &'a Design,
    c: Vec<T>,
    w: Vec<T>,
    q: Vec<T>,
    var: [f64; PB],
}

impl<'a, T: Real> Lanes<'a, T> {
    fn lane(v: &[T], n: usize, b: usize) -> std::ops::Range<usize> {
        debug_assert!(v.len() >= (b + 1) * n);
        b * n..(b + 1) * n
    }

    /// Starts lane `b` on a target from zero weights.
    fn load(&mut self, b: usize, c: &[f64], var: f64) {
        let r = Self::lane(&self.c, self.d.n, b);
        for ((cv, (wv, qv)), &x) in
            self.c[r.clone()].iter_mut().zip(self.w[r.clone()].iter_mut().zip(self.q[r].iter_mut())).zip(c)
        {
            *cv = T::of(x);
            *wv = T::ZERO;
            *qv = T::of(x);
        }
        self.var[b] = var;
    }

    fn snap(&self, b: usize) -> Snap<T> {
        let r = Self::lane(&self.w, self.d.n, b);
        Snap { w: self.w[r.clone()].to_vec(), q: self.q[r].to_vec() }
    }

    fn restore(&mut self, b: usize, s: &Snap<T>) {
        let r = Self::lane(&self.w, self.d.n, b);
        self.w[r.clone()].copy_from_slice(&s.w);
        self.q[r].copy_from_slice(&s.q);
    }

    fn weights(&self, b: usize) -> Vec<f64> {
        self.w[Self::lane(&self.w, self.d.n, b)].iter().map(|v| v.f64()).collect()
    }

    fn nnz(&self, b: usize) -> usize {
        self.w[Self::lane(&self.w, self.d.n, b)].iter().filter(|v| **v != T::ZERO).count()
    }

    /// The duality gap of lane `b` at `lam` (as [`super::solve`]'s, summed in `f64`).
    fn gap(&self, b: usize, lam: f64) -> f64 {
        let r = Self::lane(&self.w, self.d.n, b);
        let (w, q, c) = (&self.w[r.clone()], &self.q[r.clone()], &self.c[r]);
        let (mut wc, mut wq, mut l1, mut qmax) = (0.0, 0.0, 0.0, 0.0f64);
        for j in 0..self.d.n {
            let (wj, qj) = (w[j].f64(), q[j].f64());
            wc += wj * c[j].f64();
            wq += wj * qj;
            l1 += wj.abs();
            if self.d.scale[j] != 0.0 {
                qmax = qmax.max(qj.abs());
            }
        }
        let var = self.var[b];
        let r2 = (var - 2.0 * wc + (wc - wq)).max(0.0);
        let ry = var - wc;
        let cst = if qmax > lam { lam / qmax } else { 1.0 };
        0.5 * r2 * (1.0 + cst * cst) + lam * l1 - cst * ry
    }
}

struct Best {
    err: f64,
    i: usize,
    beta: Vec<f64>,
}

/// One target walking its path in a lane.
struct Job<T> {
    pos: usize,
    ybar: f64,
    lams: Vec<f64>,
    curve: Vec<f64>,
    best: Best,
    /// The λ index being solved.
    idx: usize,
    /// Past the coarse pass: solving the refinement λ.
    refine: bool,
    at_best: Option<Snap<T>>,
    sweeps: usize,
}

/// The index of the vertex of the parabola through the visited points of `curve` next to its
/// best one `c` (in λ index, i.e. log λ), when it falls strictly between them and was not
/// visited.
fn vertex(curve: &[f64], c: usize) -> Option<usize> {
    let x0 = (0..c).rev().find(|&i| !curve[i].is_nan())?;
    let x2 = (c + 1..curve.len()).find(|&i| !curve[i].is_nan())?;
    let (a, b, e) = (x0 as f64, c as f64, x2 as f64);
    let (ya, yb, ye) = (curve[x0], curve[c], curve[x2]);
    let num = (b - a).powi(2) * (yb - ye) - (b - e).powi(2) * (yb - ya);
    let den = (b - a) * (yb - ye) - (b - e) * (yb - ya);
    let v = b - 0.5 * num / den;
    if !v.is_finite() {
        return None;
    }
    let x = v.round();
    (x > a && x < e && x != b && curve[x as usize].is_nan()).then_some(x as usize)
}

/// Scores lane `b`'s solution at its λ on the validation models and moves the lane to its next
/// λ; `false` when its path is over.
fn advance<T: Real>(
    lanes: &mut Lanes<'_, T>,
    b: usize,
    job: &mut Job<T>,
    k: usize,
    val: &Val<'_>,
    opts: &FitOptions,
) -> bool {
    let (n_l, step) = (opts.n_lambdas, opts.step.max(1));
    let (beta, bias) = lanes.d.raw(&lanes.weights(b), job.ybar);
    let err = val.mse(k, &beta, bias);
    let i = job.idx;
    job.curve[i] = err;
    let improved = err < job.best.err;
    if improved {
        job.best = Best { err, i, beta };
    }
    if job.refine {
        return false;
    }
    if improved && step > 1 {
        job.at_best = Some(lanes.snap(b));
    }
    let stop = !improved && opts.patience.is_some_and(|p| i - job.best.i >= p);
    if !stop && i + 1 < n_l {
        job.idx = (i + step).min(n_l - 1);
        return true;
    }
    if step == 1 {
        return false;
    }
    match (vertex(&job.curve, job.best.i), job.at_best.take()) {
        (Some(x), Some(s)) => {
            lanes.restore(b, &s);
            job.idx = x;
            job.refine = true;
            true
        }
        _ => false,
    }
}

/// Targets not yet started, and those set aside because their solutions got dense.
struct Queue<T> {
    next: usize,
    parked: Vec<(usize, Job<T>, Snap<T>)>,
}

/// What every worker of [`paths_in`] reads.
struct Ctx<'a, T> {
    d: &'a Design,
    /// `G̃` in the path's precision, and its diagonal.
    g: &'a [T],
    diag: &'a [T],
    /// The columns a solve visits.
    cols: &'a [usize],
    train: &'a Stats,
    val: &'a Val<'a>,
    ks: &'a [usize],
    queue: &'a Mutex<Queue<T>>,
    opts: &'a FitOptions,
}

impl<T> Clone for Ctx<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Ctx<'_, T> {}

/// One worker: a block of [`PB`] lanes taking targets from the shared queue until none is
/// left. Lanes are not in lockstep: a lane whose solve has converged moves on to its next λ
/// (or its next target) before the next sweep. A target whose solution gets dense (more than
/// `N/8` non-zero weights) is set aside while targets remain that have not started, so that
/// blocks of sparse targets stay cheap and the dense ones end up sharing blocks.
#[allow(clippy::needless_range_loop)] // lane `b` of the block and of its jobs
fn worker<T: Real>(ctx: &Ctx<'_, T>) -> Vec<(usize, PathOut)> {
    let Ctx { d, g, diag, cols, train, val, ks, queue, opts } = *ctx;
    let n = d.n;
    let n_l = opts.n_lambdas;
    let tol = opts.path_tol;
    let mut out = Vec::new();
    let mut lanes =
        Lanes { d, c: vec![T::ZERO; PB * n], w: vec![T::ZERO; PB * n], q: vec![T::ZERO; PB * n], var: [0.0; PB] };
    let mut jobs: [Option<(usize, Job<T>)>; PB] = std::array::from_fn(|_| None);
    let dense = n / 8;
    let lock = || queue.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        for b in 0..PB {
            while jobs[b].is_none() {
                let next = {
                    let mut q = lock();
                    if q.next < ks.len() {
                        q.next += 1;
                        Ok(q.next - 1)
                    } else {
                        Err(q.parked.pop())
                    }
                };
                let pos = match next {
                    Ok(pos) => pos,
                    Err(Some((k, job, snap))) => {
                        let (c, _, var) = d.target(&[train], k);
                        lanes.load(b, &c, var);
                        lanes.restore(b, &snap);
                        jobs[b] = Some((k, job));
                        break;
                    }
                    Err(None) => break,
                };
                let k = ks[pos];
                let (c, ybar, var) = d.target(&[train], k);
                let lam_max = c.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let lams: Vec<f64> =
                    (0..n_l)
                        .map(|i| {
                            if n_l == 1 {
                                lam_max
                            } else {
                                lam_max * opts.lambda_ratio.powf(i as f64 / (n_l - 1) as f64)
                            }
                        })
                        .collect();
                let curve = vec![f64::NAN; n_l];
                if !(lam_max > 0.0 && var > 0.0) {
                    // A constant target (or one no column correlates with): nothing to select.
                    out.push((pos, (vec![0.0; n], f64::NAN, lams, curve)));
                    continue;
                }
                lanes.load(b, &c, var);
                let best = Best { err: f64::INFINITY, i: 0, beta: vec![0.0; n] };
                let job = Job { pos, ybar, lams, curve, best, idx: 0, refine: false, at_best: None, sweeps: 0 };
                jobs[b] = Some((k, job));
            }
        }
        let run: [bool; PB] = std::array::from_fn(|b| jobs[b].is_some());
        if !run.iter().any(|r| *r) {
            break;
        }
        let lam_f64: [f64; PB] = std::array::from_fn(|b| jobs[b].as_ref().map_or(0.0, |(_, j)| j.lams[j.idx]));
        let lam: [T; PB] = std::array::from_fn(|b| T::of(lam_f64[b]));
        let (mut dmax, mut wmax) = ([T::ZERO; PB], [T::ZERO; PB]);
        sweep(n, g, diag, cols, &mut lanes.q, &mut lanes.w, &lam, &run, &mut dmax, &mut wmax);
        for b in 0..PB {
            let Some((k, job)) = jobs[b].as_mut() else { continue };
            job.sweeps += 1;
            let last = job.sweeps >= opts.max_iter;
            let (dm, wm) = (dmax[b].f64(), wmax[b].f64());
            if !(wm == 0.0 || dm <= tol * wm || last) {
                continue;
            }
            if !(lanes.gap(b, lam_f64[b]) <= tol * lanes.var[b] || last) {
                continue;
            }
            job.sweeps = 0;
            let k = *k;
            if !advance(&mut lanes, b, job, k, val, opts) {
                let (_, job) = jobs[b].take().expect("a running lane has a job");
                let lam = job.lams[job.best.i];
                out.push((job.pos, (job.best.beta, lam, job.lams, job.curve)));
            } else if lanes.nnz(b) > dense {
                let mut q = lock();
                if q.next < ks.len() {
                    let (k, job) = jobs[b].take().expect("a running lane has a job");
                    q.parked.push((k, job, lanes.snap(b)));
                }
            }
        }
    }
    out
}

/// The paths of targets `ks` on the training design `d`, on the current pool's threads.
pub(super) fn paths(d: &Design, train: &Stats, val: &Val<'_>, ks: &[usize], opts: &FitOptions) -> Vec<PathOut> {
    if opts.path_tol >= F32_MIN_TOL && !opts.path_f64 {
        paths_in::<f32>(d, train, val, ks, opts)
    } else {
        paths_in::<f64>(d, train, val, ks, opts)
    }
}

/// [`paths`] in a given precision.
pub(super) fn paths_in<T: Real>(
    d: &Design,
    train: &Stats,
    val: &Val<'_>,
    ks: &[usize],
    opts: &FitOptions,
) -> Vec<PathOut> {
    use rayon::prelude::*;
    let n = d.n;
    let g: Vec<T> = d.gram.iter().map(|&v| T::of(v)).collect();
    let diag: Vec<T> = (0..n).map(|j| g[j * n + j]).collect();
    let cols = d.columns();
    let queue = Mutex::new(Queue { next: 0, parked: Vec::new() });
    let ctx = Ctx { d, g: &g, diag: &diag, cols: &cols, train, val, ks, queue: &queue, opts };
    let workers = rayon::current_num_threads().min(ks.len().div_ceil(PB)).max(1);
    let parts: Vec<Vec<(usize, PathOut)>> = (0..workers).into_par_iter().map(|_| worker(&ctx)).collect();
    let mut out: Vec<Option<PathOut>> = (0..ks.len()).map(|_| None).collect();
    for (pos, p) in parts.into_iter().flatten() {
        out[pos] = Some(p);
    }
    out.into_iter().map(|o| o.expect("every target walks its path")).collect()
}

/// A refitted target: `(raw weights, bias, gap, converged)`.
pub(super) type Refit = (Vec<f64>, f64, f64, bool);

/// Solves targets `ks` (at most [`PB`]) on `d` in `f64` at `lam`, warm-started from raw weights
/// `beta0`. A lane stops when the largest change of a sweep is below `tol` times its largest
/// weight and its duality gap is below `tol · var(y)` (scikit-learn's tests), or after
/// `max_iter` sweeps.
#[allow(clippy::needless_range_loop)] // lane `b` of the block
pub(super) fn refit_block(
    d: &Design,
    cols: &[usize],
    parts: &[&Stats],
    ks: &[usize],
    lam: &[f64],
    beta0: &[&[f64]],
    opts: &FitOptions,
) -> Vec<Refit> {
    let n = d.n;
    let g = &d.gram[..];
    let diag: Vec<f64> = (0..n).map(|j| g[j * n + j]).collect();
    let mut lanes = Lanes { d, c: vec![0.0; PB * n], w: vec![0.0; PB * n], q: vec![0.0; PB * n], var: [0.0; PB] };
    let (mut ybar, mut lams, mut run) = ([0.0; PB], [0.0; PB], [false; PB]);
    for (b, &k) in ks.iter().enumerate() {
        let (c, yb, var) = d.target(parts, k);
        ybar[b] = yb;
        run[b] = !(lam[b].is_nan() || lam[b] <= 0.0 || var <= 0.0);
        lams[b] = if run[b] { lam[b] } else { 0.0 };
        lanes.load(b, &c, var);
        if !run[b] {
            continue;
        }
        // q = c̃ − G̃ w₀, the columns of w₀ applied four at a time.
        let r = b * n..(b + 1) * n;
        let (w, q) = (&mut lanes.w[r.clone()], &mut lanes.q[r]);
        let mut js = [0usize; GROUP];
        let mut dl = [[0.0; PB]; GROUP];
        let mut pending = 0;
        for &j in cols {
            let v = beta0[b][j] * d.scale[j];
            if v == 0.0 {
                continue;
            }
            w[j] = v;
            js[pending] = j;
            dl[pending][0] = v;
            pending += 1;
            if pending == GROUP {
                flush_simd(n, g, q, &js, &dl, pending);
                pending = 0;
            }
        }
        flush_simd(n, g, q, &js, &dl, pending);
    }
    let live = run;
    let mut out = [(0.0, true); PB];
    let mut sweeps = 0;
    while run.iter().any(|r| *r) {
        let (mut dmax, mut wmax) = ([0.0; PB], [0.0; PB]);
        sweep(n, g, &diag, cols, &mut lanes.q, &mut lanes.w, &lams, &run, &mut dmax, &mut wmax);
        sweeps += 1;
        for b in 0..PB {
            if run[b] && (wmax[b] == 0.0 || dmax[b] <= opts.tol * wmax[b] || sweeps >= opts.max_iter) {
                let gap = lanes.gap(b, lams[b]);
                let converged = gap <= opts.tol * lanes.var[b];
                if converged || sweeps >= opts.max_iter {
                    out[b] = (gap, converged);
                    run[b] = false;
                }
            }
        }
    }
    (0..ks.len())
        .map(|b| {
            if live[b] {
                let (beta, bias) = d.raw(&lanes.weights(b), ybar[b]);
                (beta, bias, out[b].0, out[b].1)
            } else {
                (vec![0.0; n], ybar[b], 0.0, true)
            }
        })
        .collect()
}

//! The hot loop: one epoch's outputs for a run of consecutive examples, folded into their state.
//!
//! Rows are taken `GROUP` at a time and transposed (structure of arrays), so every per-class
//! step — max, `exp`, masked sums — is one vector instruction across many examples. Softmax
//! quantities are formed so that nothing cancels: `ln s` is `ln_1p` of the sum of the non-argmax
//! terms, `1 - p(gold)` is built from the same sum, and `-ln p(gold) = ln s + (max - z_gold)`.
//! Each row is finished in the input's precision; every per-epoch value is accumulated in `f64`,
//! in a structure-of-arrays [`RunColumns`], from which the table's columns (or the per-example
//! states) are made at the end.
//! The observation is portable code that LLVM vectorizes; `f32` rows on CPUs with AVX-512 take
//! the same steps written with intrinsics instead (`avx512`), with the same results.

use crate::error::Result;
use crate::kernel::math::{Real, ln_1p_from, mul_add_with};
use crate::metrics::{Kind, NanPolicy};
use crate::metrics::{NONE, Observation};
pub(crate) use crate::state::runs::RunColumns;
use multiversion::multiversion;

#[cfg(target_arch = "x86_64")]
mod avx512;
pub(crate) mod math;
pub(crate) mod transpose;

/// Rows handled together, one per vector lane. LLVM's loop vectorizer (not the fragile SLP
/// vectorizer, which gave up on fully unrolled 8-lane code) turns each lane loop below into
/// AVX2 / AVX-512 / NEON instructions. The observing loops always run over all `GROUP` lanes, a
/// fixed trip count with no remainder (lanes past a short group's rows hold stale values whose
/// results are never read); in this portable code 16- or 32-lane chunks measured slower (LLVM
/// kept their running values in memory all the same; the intrinsics keep them in registers).
pub(crate) const GROUP: usize = 64;

/// Tolerance on `|sum(p) - 1|` for probability rows: float rounding over `c` terms plus 1e-3.
pub fn prob_sum_tolerance<T: Real>(c: usize) -> f64 {
    1e-3 + 4.0 * c as f64 * T::EPSILON.to_f64()
}

/// Per-row results of one group, structure of arrays, in the input's precision: the rows are
/// finished at full vector width, and each value is widened to `f64` where it is accumulated.
/// The margin and the loss are sums of two terms that are added in `f64`, so they are kept as
/// their two terms.
#[derive(Debug)]
pub(crate) struct Lanes<T> {
    gold_prob: [T; GROUP],
    /// The gold class's logit (or probability), the first term of the margin.
    gold_value: [T; GROUP],
    /// The largest other logit (or probability), subtracted from `gold_value`.
    max_other: [T; GROUP],
    el2n: [T; GROUP],
    /// The loss is `loss_a + loss_b`, added in `f64`.
    loss_a: [T; GROUP],
    loss_b: [T; GROUP],
    entropy: [T; GROUP],
    pred: [u32; GROUP],
    /// The row needs a closer look: a non-finite value, or (probabilities) an invalid row.
    flagged: [bool; GROUP],
}

impl<T: Real> Lanes<T> {
    fn new() -> Box<Self> {
        Box::new(Lanes {
            gold_prob: [T::ZERO; GROUP],
            gold_value: [T::ZERO; GROUP],
            max_other: [T::ZERO; GROUP],
            el2n: [T::ZERO; GROUP],
            loss_a: [T::ZERO; GROUP],
            loss_b: [T::ZERO; GROUP],
            entropy: [T::ZERO; GROUP],
            pred: [0; GROUP],
            flagged: [false; GROUP],
        })
    }

    #[inline(always)]
    fn margin(&self, l: usize) -> f64 {
        self.gold_value[l].to_f64() - self.max_other[l].to_f64()
    }

    /// `ln(sum of exp(z - max)) + (max - z_gold)`. The second term, formed in the input's
    /// precision, overflows to infinity when the logits are near float32's largest values
    /// (`max - z_gold` of 3e38 and -3e38); it is then `max_other - z_gold` (the gold class is not
    /// the argmax), which float64 holds.
    #[inline(always)]
    fn loss(&self, l: usize) -> f64 {
        let gap = self.loss_b[l].to_f64();
        let gap = if gap == f64::INFINITY { self.max_other[l].to_f64() - self.gold_value[l].to_f64() } else { gap };
        self.loss_a[l].to_f64() + gap
    }

    /// Lane `l`'s observation, widened to `f64`.
    #[inline(always)]
    pub(crate) fn observation(&self, l: usize) -> Observation {
        Observation {
            gold_prob: self.gold_prob[l].to_f64(),
            margin: self.margin(l),
            el2n: self.el2n[l].to_f64(),
            loss: self.loss(l),
            entropy: self.entropy[l].to_f64(),
            pred: self.pred[l],
        }
    }
}

/// Buffers [`fold_epoch`] reuses between calls: the transposed rows of a group and their results.
#[derive(Debug)]
pub(crate) struct Scratch<T> {
    rows: Vec<T>,
    lanes: Option<Box<Lanes<T>>>,
}

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Scratch { rows: Vec::new(), lanes: None }
    }
}

/// Where [`fold_epoch`] puts each group's per-row results: folded into a run of examples'
/// states ([`RunColumns`], the dense path), or routed row by row towards their examples (the
/// long tables' `keyed::route::Routing`).
pub(crate) trait Sink {
    /// Rows `start..start + g` of the call, lane `l` being row `start + l`; `keep[l]` is false
    /// for an observation omitted under `nan_policy="omit"`, and `keep` is `None` when every
    /// row is kept (the common case, which needs no per-lane selects).
    fn take<T: Real>(
        &mut self,
        start: usize,
        g: usize,
        epoch: u32,
        gold: &[u32; GROUP],
        o: &Lanes<T>,
        keep: Option<&[bool; GROUP]>,
    );
}

/// Examples `at..` of a [`RunColumns`] as a sink: the call's row `i` is example `at + i`.
pub(crate) struct RunAt<'a> {
    pub(crate) run: &'a mut RunColumns,
    pub(crate) at: usize,
}

impl Sink for RunAt<'_> {
    #[inline(always)]
    fn take<T: Real>(
        &mut self,
        start: usize,
        g: usize,
        epoch: u32,
        gold: &[u32; GROUP],
        o: &Lanes<T>,
        keep: Option<&[bool; GROUP]>,
    ) {
        let (run, start) = (&mut *self.run, self.at + start);
        match keep {
            None if g == GROUP && has_avx512::<T>() => update_run_avx512(run, start, epoch, gold, o),
            None => update_run::<T, true>(run, start, g, epoch, gold, o, &[true; GROUP]),
            Some(keep) => update_run::<T, false>(run, start, g, epoch, gold, o, keep),
        }
    }
}

/// Observes one epoch of `labels.len()` consecutive rows (`rows` is row-major with `cols`
/// columns) and hands each group of results to `sink`. `first_example` is the index of the
/// first row, for error messages. `ahead` (possibly empty) are the rows the caller reads next:
/// each group asks for its share of them, into the second-level cache.
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn fold_epoch<T: Real, S: Sink>(
    kind: Kind,
    nan_policy: NanPolicy,
    epoch: u32,
    rows: &[T],
    cols: usize,
    labels: &[u32],
    sink: &mut S,
    first_example: u64,
    scratch: &mut Scratch<T>,
    ahead: &[T],
) -> Result<()> {
    debug_assert_eq!(rows.len(), labels.len() * cols);
    // One-column binary outputs are read as the two-column equivalent.
    let eff = cols.max(2);
    let Scratch { rows: zt, lanes } = scratch;
    // The transposed rows start on a cache line: they are stored and loaded a line at a time.
    let pad = 64 / std::mem::size_of::<T>();
    zt.resize(eff * GROUP + pad, T::ZERO);
    let at = zt.as_ptr().align_offset(64).min(pad);
    let lanes = lanes.get_or_insert_with(Lanes::new);
    let mut keep = [true; GROUP];
    let avx512 = has_avx512::<T>();
    let n = labels.len();
    // Whole cache lines (of `f32`) per group, so that no line is asked for twice.
    let share = ahead.len().div_ceil(n.div_ceil(GROUP).max(1)).next_multiple_of(16);
    let mut start = 0;
    while start < n {
        let g = (n - start).min(GROUP);
        let labels = &labels[start..start + g];
        let mut gold = [0u32; GROUP];
        gold[..g].copy_from_slice(labels);
        // This group's share of the rows ahead, asked for in two halves: after the transpose and
        // after the observation. Asked for all at once, the prefetches wait for free fill
        // buffers with nothing else to do; spread over the group they overlap the computation.
        let from = (start / GROUP * share).min(ahead.len());
        let soon = &ahead[from..(from + share).min(ahead.len())];
        let (soon, later) = soon.split_at((soon.len() / 2).next_multiple_of(16).min(soon.len()));
        transpose(kind, &rows[start * cols..(start + g) * cols], cols, g, &mut zt[at..]);
        crate::sys::prefetch::prefetch_l2(soon);
        // Fused multiply-adds in the exp/ln polynomials where this clone may use them.
        const FMA: bool = multiversion::target::target_cfg_f!(target_feature = "fma");
        match kind {
            _ if avx512 => observe_avx512(kind, zt, at, eff, &gold, lanes),
            Kind::Logits => observe_logits::<T, FMA>(&zt[at..], eff, &gold, lanes),
            Kind::Probs => observe_probs::<T, FMA>(&zt[at..], eff, &gold, lanes),
        }
        crate::sys::prefetch::prefetch_l2(later);
        let mut omitted = false;
        // Flagged rows are rare: one branch-free (vector) test finds whether the group has any,
        // where scanning the flags lane by lane took 2% of a dense `compute`.
        if lanes.flagged[..g].iter().fold(false, |any, &f| any | f) {
            keep[..g].fill(true);
            for l in (0..g).filter(|&l| lanes.flagged[l]) {
                let i = start + l;
                let row = &rows[i * cols..(i + 1) * cols];
                let example = first_example + i as u64;
                if nan_policy == NanPolicy::Omit && row.iter().any(|v| !v.is_finite()) {
                    keep[l] = false;
                    omitted = true;
                    continue;
                }
                // The rules are `validate`'s, shared with callers that check rows up front; a
                // probability row the vector test flagged is refused whatever the scalar sum.
                match crate::validate::row_error(row, kind, epoch, example) {
                    Some(err) => return Err(err),
                    None if kind == Kind::Probs => {
                        return Err(crate::validate::invalid_probabilities(row, epoch, example));
                    }
                    None => {}
                }
            }
        }
        sink.take(start, g, epoch, &gold, lanes, if omitted { Some(&keep) } else { None });
        start += g;
    }
    Ok(())
}

/// Whether [`observe_avx512`] runs here: `f32` rows on a CPU with AVX-512.
fn has_avx512<T: Real>() -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        return avx512::available();
    }
    false
}

/// `observe_logits` / `observe_probs` of the `f32` rows `zt[at..]` with AVX-512 intrinsics
/// (bit for bit the same results); only where [`has_avx512`] holds.
#[inline(always)]
fn observe_avx512<T: Real>(kind: Kind, zt: &Vec<T>, at: usize, cols: usize, gold: &[u32; GROUP], out: &mut Lanes<T>) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::any::Any;
        let zt = (zt as &dyn Any).downcast_ref::<Vec<f32>>();
        let out = (out as &mut dyn Any).downcast_mut::<Lanes<f32>>();
        if let (Some(zt), Some(out)) = (zt, out) {
            let zt = &zt[at..];
            assert!(zt.len() >= cols * GROUP);
            match kind {
                // SAFETY: the CPU's features were checked (`has_avx512`), the length above.
                Kind::Logits => unsafe { avx512::observe_logits(zt, cols, gold, out) },
                // SAFETY: as for the logits.
                Kind::Probs => unsafe { avx512::observe_probs(zt, cols, gold, out) },
            }
            return;
        }
    }
    let _ = (kind, zt, at, cols, gold, out);
    unreachable!("only called for f32 rows on CPUs with AVX-512")
}

/// `update_run::<f32, true>` of a full group with AVX-512 intrinsics (bit for bit the same
/// state); only where [`has_avx512`] holds.
#[inline(always)]
fn update_run_avx512<T: Real>(run: &mut RunColumns, start: usize, epoch: u32, gold: &[u32; GROUP], o: &Lanes<T>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(o) = (o as &dyn std::any::Any).downcast_ref::<Lanes<f32>>() {
        assert!(start + GROUP <= run.n.len());
        // SAFETY: the CPU's features were checked (`has_avx512`), the run's length above.
        unsafe { avx512::update_run(run, start, epoch, gold, o) };
        return;
    }
    let _ = (run, start, epoch, gold, o);
    unreachable!("only called for f32 results on CPUs with AVX-512")
}

/// The portable `observe_logits::<f32, true>` or `observe_probs::<f32, true>` as the FMA clones
/// run them, for the intrinsics' tests.
#[cfg(all(test, target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
fn observe_portable_fma(kind: Kind, zt: &[f32], cols: usize, gold: &[u32; GROUP], out: &mut Lanes<f32>) {
    match kind {
        Kind::Logits => observe_logits::<f32, true>(zt, cols, gold, out),
        Kind::Probs => observe_probs::<f32, true>(zt, cols, gold, out),
    }
}

/// Welford / Chan update of `g` consecutive examples of the run with one epoch's observations.
/// Starting from an empty slot the same expressions give exactly the single-observation state.
/// `ALL`: every row is kept (`keep` is not read), so the updates need no selects.
#[inline(always)]
fn update_run<T: Real, const ALL: bool>(
    run: &mut RunColumns,
    start: usize,
    g: usize,
    epoch: u32,
    gold: &[u32; GROUP],
    o: &Lanes<T>,
    keep: &[bool; GROUP],
) {
    let r = start..start + g;
    let (mean, m2) = (&mut run.mean[r.clone()], &mut run.m2[r.clone()]);
    let (s_margin, s_el2n) = (&mut run.sum_margin[r.clone()], &mut run.sum_el2n[r.clone()]);
    let (s_loss, s_entropy) = (&mut run.sum_loss[r.clone()], &mut run.sum_entropy[r.clone()]);
    let n = &mut run.n[r.clone()];
    for l in 0..g {
        let k = ALL || keep[l];
        let na = n[l] as f64;
        let nf = na + 1.0;
        let delta = o.gold_prob[l].to_f64() - mean[l];
        let inv = 1.0 / nf;
        let new_mean = mean[l] + delta * inv;
        let new_m2 = m2[l] + delta * delta * (na * inv);
        mean[l] = if k { new_mean } else { mean[l] };
        m2[l] = if k { new_m2 } else { m2[l] };
        s_margin[l] += if k { o.margin(l) } else { 0.0 };
        s_el2n[l] += if k { o.el2n[l].to_f64() } else { 0.0 };
        s_loss[l] += if k { o.loss(l) } else { 0.0 };
        s_entropy[l] += if k { o.entropy[l].to_f64() } else { 0.0 };
    }
    let (n_correct, n_confident) = (&mut run.n_correct[r.clone()], &mut run.n_confident[r.clone()]);
    let (forgetting, first_epoch) = (&mut run.forgetting[r.clone()], &mut run.first_epoch[r.clone()]);
    let (first_learned, stable_from) = (&mut run.first_learned[r.clone()], &mut run.stable_from[r.clone()]);
    let (last_epoch, final_pred) = (&mut run.last_epoch[r.clone()], &mut run.final_pred[r]);
    for l in 0..g {
        let k = ALL || keep[l];
        let correct = o.pred[l] == gold[l];
        let was_correct = stable_from[l] != NONE;
        first_epoch[l] = if k && n[l] == 0 { epoch } else { first_epoch[l] };
        n[l] += k as u32;
        n_correct[l] += (k && correct) as u32;
        n_confident[l] += (k && o.gold_prob[l].to_f64() > 0.5) as u32;
        forgetting[l] += (k && was_correct && !correct) as u32;
        first_learned[l] = if k && correct && first_learned[l] == NONE { epoch } else { first_learned[l] };
        let stable = if correct { if was_correct { stable_from[l] } else { epoch } } else { NONE };
        stable_from[l] = if k { stable } else { stable_from[l] };
        last_epoch[l] = if k { epoch } else { last_epoch[l] };
        final_pred[l] = if k { o.pred[l] } else { final_pred[l] };
    }
}

/// Copies `g` rows into `out[k * GROUP + lane]`, expanding one-column outputs to two columns
/// (`[0, z]` for logits, `[1 - p, p]` for probs, which give the same softmax, margin and argmax
/// as the one-column reading).
#[inline(always)]
fn transpose<T: Real>(kind: Kind, rows: &[T], cols: usize, g: usize, out: &mut [T]) {
    if cols == 1 {
        for l in 0..g {
            let x = rows[l];
            out[l] = match kind {
                Kind::Logits => T::ZERO,
                Kind::Probs => T::ONE - x,
            };
            out[GROUP + l] = x;
        }
        return;
    }
    T::transpose_group(rows, cols, g, out);
}

#[inline(always)]
fn class_lanes<T: Real>(zt: &[T], k: usize) -> &[T; GROUP] {
    zt[k * GROUP..(k + 1) * GROUP].try_into().expect("GROUP lanes per class")
}

/// The first pass's running values per lane, shared by both kinds: the plain sum (finite
/// exactly when no value is infinite or NaN, unless it overflows: a false alarm that the
/// caller's row check clears), the gold value, the largest value of the other classes, and the
/// maximum with its first argmax (ties keep the earlier class).
struct FirstPass<T> {
    goldf: [T; GROUP],
    sum: [T; GROUP],
    gold: [T; GROUP],
    max_other: [T; GROUP],
    max: [T; GROUP],
    arg: [T; GROUP],
}

impl<T: Real> FirstPass<T> {
    #[inline(always)]
    fn new(gold: &[u32; GROUP]) -> Self {
        let mut goldf = [T::ZERO; GROUP];
        for l in 0..GROUP {
            goldf[l] = T::from_u32(gold[l]);
        }
        let (zero, low) = ([T::ZERO; GROUP], [T::NEG_INFINITY; GROUP]);
        FirstPass { goldf, sum: zero, gold: zero, max_other: low, max: low, arg: zero }
    }

    /// Takes class `kf`'s value `v` in lane `l`; returns whether `kf` is the lane's gold class.
    #[inline(always)]
    fn take(&mut self, l: usize, kf: T, v: T) -> bool {
        self.sum[l] = self.sum[l] + v;
        let is_gold = kf == self.goldf[l];
        self.gold[l] = if is_gold { v } else { self.gold[l] };
        self.max_other[l] = if is_gold { self.max_other[l] } else { self.max_other[l].max_(v) };
        let greater = v > self.max[l];
        self.max[l] = if greater { v } else { self.max[l] };
        self.arg[l] = if greater { kf } else { self.arg[l] };
        is_gold
    }
}

#[inline(always)]
fn observe_logits<T: Real, const FMA: bool>(zt: &[T], cols: usize, gold: &[u32; GROUP], out: &mut Lanes<T>) {
    // Pass 1: see `FirstPass`.
    let mut first = FirstPass::new(gold);
    for k in 0..cols {
        let kf = T::from_u32(k as u32);
        let z = class_lanes(zt, k);
        for (l, &v) in z.iter().enumerate() {
            first.take(l, kf, v);
        }
    }
    let FirstPass { goldf, sum, gold: z_gold, max_other, max, arg } = first;
    // Pass 2: rest = sum of exp(z - max) over all classes but the (first) argmax, whose
    // term is exactly 1; tilt = sum of exp(z - max) (max - z); sq_rest = sum of squares of
    // the rest. A gap below EXP_MIN contributes exactly 0 (its clamped value keeps the
    // tilt's product finite when the gap overflows).
    let mut rest = [T::ZERO; GROUP];
    let mut tilt = [T::ZERO; GROUP];
    let mut sq_rest = [T::ZERO; GROUP];
    for k in 0..cols {
        let kf = T::from_u32(k as u32);
        let z = class_lanes(zt, k);
        for l in 0..GROUP {
            let gap = z[l] - max[l];
            let d = gap.max_(T::EXP_MIN);
            let e = d.exp_in_range_with::<FMA>();
            let e = if gap < T::EXP_MIN { T::ZERO } else { e };
            let e_other = if kf != arg[l] { e } else { T::ZERO };
            rest[l] = rest[l] + e_other;
            sq_rest[l] = mul_add_with::<T, FMA>(e_other, e_other, sq_rest[l]);
            tilt[l] = mul_add_with::<T, FMA>(-e, d, tilt[l]);
        }
    }
    // Per-row finish in the input's precision (every exponential of the row already is);
    // only the results are widened to f64 for accumulation.
    for l in 0..GROUP {
        let is_arg = goldf[l] == arg[l];
        let rest = rest[l];
        let s = T::ONE + rest;
        let inv_s = T::ONE / s;
        let ln_s = ln_1p_from::<T, FMA>(rest, s, inv_s);
        let gap = max[l] - z_gold[l];
        let eg = if is_arg { T::ONE } else { (-gap).exp_with::<FMA>() };
        // 1 - p(gold) and the squares of the other classes, without cancellation.
        let others = rest + (T::ONE - eg);
        let sq_other = sq_rest[l] + if is_arg { T::ZERO } else { T::ONE - eg * eg };
        let one_minus_g = others * inv_s;
        out.gold_prob[l] = eg * inv_s;
        out.gold_value[l] = z_gold[l];
        out.max_other[l] = max_other[l];
        out.el2n[l] = (one_minus_g * one_minus_g + sq_other * inv_s * inv_s).sqrt();
        out.loss_a[l] = ln_s;
        out.loss_b[l] = gap;
        out.entropy[l] = ln_s + tilt[l] * inv_s;
        out.pred[l] = arg[l].to_u32();
        out.flagged[l] = !sum[l].is_finite();
    }
}

#[inline(always)]
fn observe_probs<T: Real, const FMA: bool>(zt: &[T], cols: usize, gold: &[u32; GROUP], out: &mut Lanes<T>) {
    let tol = T::from_f64(prob_sum_tolerance::<T>(cols));
    let mut first = FirstPass::new(gold);
    let mut lowest = [T::ONE; GROUP];
    let mut entropy = [T::ZERO; GROUP];
    let mut sq_other = [T::ZERO; GROUP];
    for k in 0..cols {
        let kf = T::from_u32(k as u32);
        let z = class_lanes(zt, k);
        for l in 0..GROUP {
            let v = z[l];
            let is_gold = first.take(l, kf, v);
            lowest[l] = if v < lowest[l] { v } else { lowest[l] };
            // The other classes' squares, summed without cancellation.
            let v_other = if is_gold { T::ZERO } else { v };
            sq_other[l] = mul_add_with::<T, FMA>(v_other, v_other, sq_other[l]);
            // Outside its domain (0, subnormals) `ln` is finite, so 0 ln 0 = 0 and a subnormal p
            // adds less than 1e-36; negative and non-finite values flag the row.
            entropy[l] = mul_add_with::<T, FMA>(-v, v.ln_with::<FMA>(), entropy[l]);
        }
    }
    let FirstPass { sum, gold: gp, max_other, max, arg, .. } = first;
    for l in 0..GROUP {
        let gp = gp[l];
        let one_minus_g = T::ONE - gp;
        let sum_off = sum[l] - T::ONE;
        out.gold_prob[l] = gp;
        out.gold_value[l] = gp;
        out.max_other[l] = max_other[l];
        out.el2n[l] = (one_minus_g * one_minus_g + sq_other[l]).sqrt();
        out.loss_a[l] = -(gp.max_(T::EPSILON).ln_with::<FMA>());
        out.loss_b[l] = T::ZERO;
        out.entropy[l] = entropy[l];
        out.pred[l] = arg[l].to_u32();
        // A non-finite value makes the sum non-finite, and the comparison false.
        let sums_to_one = sum_off <= tol && -sum_off <= tol;
        out.flagged[l] = !sums_to_one || lowest[l] < T::ZERO || max[l] > T::ONE;
    }
}

//! The observation of `f32` rows (logits and probabilities) written with AVX-512 intrinsics.
//!
//! The portable versions (`observe_logits`, `observe_probs`) run each step over all 64 lanes of
//! a group before the next class, so their running values per lane live in memory: LLVM loads
//! and stores them for every class. Here each 16-lane slice of the group goes through all
//! classes with its running values in registers. Every lane sees the same operations in the same
//! order as the portable versions compiled with FMA (the clone that runs wherever these can), so
//! the two agree bit for bit; tests check that on random and adversarial rows.

use super::{GROUP, Lanes, RunColumns};
use crate::kernel::math::Real;
use crate::kernel::math::cephes_f32::*;
use crate::metrics::NONE;
use std::arch::x86_64::*;

/// Lanes per register.
const W: usize = 16;

/// Whether this CPU runs the kernels here (detected once: asked for every group of rows).
pub(super) fn available() -> bool {
    static AVAILABLE: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("fma")
    });
    *AVAILABLE
}

/// `observe_logits::<f32, true>` for one group: `zt` holds `cols` classes of `GROUP` lanes.
///
/// # Safety
/// The CPU must have the features [`available`] checks; `zt.len() >= cols * GROUP`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,fma")]
pub(super) unsafe fn observe_logits(zt: &[f32], cols: usize, gold: &[u32; GROUP], out: &mut Lanes<f32>) {
    debug_assert!(zt.len() >= cols * GROUP);
    let ps = _mm512_set1_ps;
    let (zero, one) = (_mm512_setzero_ps(), ps(1.0));
    let exp_min = ps(<f32 as Real>::EXP_MIN);
    for lane in (0..GROUP).step_by(W) {
        // Every load and store below reads `W` lanes from `lane`, and `lane + W <= GROUP`; class
        // `k < cols` of the group starts at `k * GROUP` in `zt` (`zt.len() >= cols * GROUP`).
        let at = zt.as_ptr().wrapping_add(lane);
        // SAFETY: lanes `lane..lane + W` of `gold`, which has `GROUP`.
        let goldf = _mm512_cvtepu32_ps(unsafe { _mm512_loadu_si512(gold.as_ptr().add(lane).cast()) });
        // Pass 1 (see `FirstPass`).
        let mut first = FirstPass::new(goldf);
        for k in 0..cols {
            // SAFETY: lanes `lane..lane + W` of class `k < cols`, inside `zt`.
            first.take(ps(k as f32), unsafe { _mm512_loadu_ps(at.add(k * GROUP)) });
        }
        let FirstPass { sum, gold: z_gold, max_other, max, arg, .. } = first;
        // Pass 2: the sums of the exponentials, as in `observe_logits`.
        let (mut rest, mut tilt, mut sq_rest) = (zero, zero, zero);
        for k in 0..cols {
            // SAFETY: lanes `lane..lane + W` of class `k < cols`, inside `zt`.
            let (kf, v) = (ps(k as f32), unsafe { _mm512_loadu_ps(at.add(k * GROUP)) });
            let gap = _mm512_sub_ps(v, max);
            let d = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(exp_min, gap), gap, exp_min);
            let e = _mm512_maskz_mov_ps(!_mm512_cmp_ps_mask::<_CMP_LT_OQ>(gap, exp_min), exp_in_range(d));
            // Masked sums (the other classes'): adding the zeros of the portable version leaves
            // these sums, never `-0`, unchanged.
            let other = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(kf, arg);
            rest = _mm512_mask_add_ps(rest, other, rest, e);
            sq_rest = _mm512_mask3_fmadd_ps(e, e, sq_rest, other);
            tilt = _mm512_fnmadd_ps(e, d, tilt);
        }
        // Per-row finish.
        let is_arg = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(goldf, arg);
        let s = _mm512_add_ps(one, rest);
        let inv_s = _mm512_div_ps(one, s);
        let ln_s = _mm512_add_ps(ln(s), _mm512_mul_ps(_mm512_sub_ps(rest, _mm512_sub_ps(s, one)), inv_s));
        let gap = _mm512_sub_ps(max, z_gold);
        let eg = _mm512_mask_blend_ps(is_arg, exp(negate(gap)), one);
        let others = _mm512_add_ps(rest, _mm512_sub_ps(one, eg));
        let sq_gold = _mm512_maskz_mov_ps(!is_arg, _mm512_sub_ps(one, _mm512_mul_ps(eg, eg)));
        let sq_other = _mm512_add_ps(sq_rest, sq_gold);
        let one_minus_g = _mm512_mul_ps(others, inv_s);
        let el2n = _mm512_sqrt_ps(_mm512_add_ps(
            _mm512_mul_ps(one_minus_g, one_minus_g),
            _mm512_mul_ps(_mm512_mul_ps(sq_other, inv_s), inv_s),
        ));
        let entropy = _mm512_add_ps(ln_s, _mm512_mul_ps(tilt, inv_s));
        // `is_finite`: |sum| <= f32::MAX, false for NaN.
        let finite = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(_mm512_abs_ps(sum), ps(f32::MAX));
        let results = Slice {
            gold_prob: _mm512_mul_ps(eg, inv_s),
            gold_value: z_gold,
            max_other,
            el2n,
            loss_a: ln_s,
            loss_b: gap,
            entropy,
            arg,
            flagged: !finite,
        };
        // SAFETY: `lane + W <= GROUP`, the lanes `out` holds.
        unsafe { results.store(out, lane) };
    }
}

/// `observe_probs::<f32, true>` for one group: `zt` holds `cols` classes of `GROUP` lanes.
///
/// # Safety
/// As [`observe_logits`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,fma")]
pub(super) unsafe fn observe_probs(zt: &[f32], cols: usize, gold: &[u32; GROUP], out: &mut Lanes<f32>) {
    debug_assert!(zt.len() >= cols * GROUP);
    let ps = _mm512_set1_ps;
    let (zero, one) = (_mm512_setzero_ps(), ps(1.0));
    let tol = ps(super::prob_sum_tolerance::<f32>(cols) as f32);
    for lane in (0..GROUP).step_by(W) {
        // Loads and stores as in `observe_logits`.
        let at = zt.as_ptr().wrapping_add(lane);
        // SAFETY: lanes `lane..lane + W` of `gold`, which has `GROUP`.
        let goldf = _mm512_cvtepu32_ps(unsafe { _mm512_loadu_si512(gold.as_ptr().add(lane).cast()) });
        let mut first = FirstPass::new(goldf);
        let (mut lowest, mut entropy, mut sq_other) = (one, zero, zero);
        for k in 0..cols {
            // SAFETY: lanes `lane..lane + W` of class `k < cols`, inside `zt`.
            let v = unsafe { _mm512_loadu_ps(at.add(k * GROUP)) };
            let is_gold = first.take(ps(k as f32), v);
            // `minps` is `v < lowest ? v : lowest`, the portable select (NaN keeps `lowest`); the
            // masked steps skip the zeros the portable version adds or subtracts, which leave
            // these sums (never `-0`) unchanged.
            lowest = _mm512_min_ps(v, lowest);
            sq_other = _mm512_mask3_fmadd_ps(v, v, sq_other, !is_gold);
            entropy = _mm512_fnmadd_ps(v, ln(v), entropy);
        }
        let FirstPass { sum, gold: gp, max_other, max, arg, .. } = first;
        let one_minus_g = _mm512_sub_ps(one, gp);
        let sum_off = _mm512_sub_ps(sum, one);
        let el2n = _mm512_sqrt_ps(_mm512_add_ps(_mm512_mul_ps(one_minus_g, one_minus_g), sq_other));
        let eps = ps(f32::EPSILON);
        let loss = negate(ln(_mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(eps, gp), gp, eps)));
        // A non-finite value makes the sum non-finite, and the comparisons false.
        let sums_to_one =
            _mm512_cmp_ps_mask::<_CMP_LE_OQ>(sum_off, tol) & _mm512_cmp_ps_mask::<_CMP_LE_OQ>(negate(sum_off), tol);
        let flagged =
            !sums_to_one | _mm512_cmp_ps_mask::<_CMP_LT_OQ>(lowest, zero) | _mm512_cmp_ps_mask::<_CMP_GT_OQ>(max, one);
        let results =
            Slice { gold_prob: gp, gold_value: gp, max_other, el2n, loss_a: loss, loss_b: zero, entropy, arg, flagged };
        // SAFETY: `lane + W <= GROUP`, the lanes `out` holds.
        unsafe { results.store(out, lane) };
    }
}

/// The first pass's running values for 16 lanes (see the portable `FirstPass`).
struct FirstPass {
    goldf: __m512,
    sum: __m512,
    gold: __m512,
    max_other: __m512,
    max: __m512,
    arg: __m512,
}

impl FirstPass {
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn new(goldf: __m512) -> Self {
        let (zero, low) = (_mm512_setzero_ps(), _mm512_set1_ps(f32::NEG_INFINITY));
        FirstPass { goldf, sum: zero, gold: zero, max_other: low, max: low, arg: zero }
    }

    /// Takes class `kf`'s values `v`; returns the lanes whose gold class it is.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn take(&mut self, kf: __m512, v: __m512) -> __mmask16 {
        self.sum = _mm512_add_ps(self.sum, v);
        let is_gold = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(kf, self.goldf);
        self.gold = _mm512_mask_blend_ps(is_gold, self.gold, v);
        // `maxps` is `v > max_other ? v : max_other`, the portable select (NaN keeps the max).
        self.max_other = _mm512_mask_max_ps(self.max_other, !is_gold, v, self.max_other);
        let greater = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, self.max);
        self.max = _mm512_mask_blend_ps(greater, self.max, v);
        self.arg = _mm512_mask_blend_ps(greater, self.arg, kf);
        is_gold
    }
}

/// One 16-lane slice of a group's results (see `Lanes`), with the prediction as a whole-number
/// float.
struct Slice {
    gold_prob: __m512,
    gold_value: __m512,
    max_other: __m512,
    el2n: __m512,
    loss_a: __m512,
    loss_b: __m512,
    entropy: __m512,
    arg: __m512,
    flagged: __mmask16,
}

impl Slice {
    /// Writes lanes `lane..lane + 16` of `out`.
    ///
    /// # Safety
    /// `lane + 16 <= GROUP`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn store(self, out: &mut Lanes<f32>, lane: usize) {
        let to = |v: &mut [f32; GROUP]| v.as_mut_ptr().wrapping_add(lane);
        // SAFETY: 16 lanes from `lane` are within each array (the caller's promise).
        unsafe {
            _mm512_storeu_ps(to(&mut out.gold_prob), self.gold_prob);
            _mm512_storeu_ps(to(&mut out.gold_value), self.gold_value);
            _mm512_storeu_ps(to(&mut out.max_other), self.max_other);
            _mm512_storeu_ps(to(&mut out.el2n), self.el2n);
            _mm512_storeu_ps(to(&mut out.loss_a), self.loss_a);
            _mm512_storeu_ps(to(&mut out.loss_b), self.loss_b);
            _mm512_storeu_ps(to(&mut out.entropy), self.entropy);
            _mm512_storeu_si512(out.pred.as_mut_ptr().add(lane).cast(), _mm512_cvttps_epu32(self.arg));
            // One byte per lane: 1 (true) where flagged.
            let flags = _mm_maskz_mov_epi8(self.flagged, _mm_set1_epi8(1));
            _mm_storeu_si128(out.flagged.as_mut_ptr().add(lane).cast(), flags);
        }
    }
}

/// `-x`, a sign flip as Rust's `-` (not `0 - x`, which differs for zeros).
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn negate(x: __m512) -> __m512 {
    _mm512_xor_ps(x, _mm512_set1_ps(-0.0))
}

/// `update_run::<f32, true>` for a full group (every row kept): the Welford / Chan update and
/// the counters of run examples `start..start + GROUP`, the same operations in the same order.
///
/// # Safety
/// The CPU must have the features [`available`] checks; `start + GROUP <= run.n.len()` (every
/// array of the run has that length).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
pub(super) unsafe fn update_run(run: &mut RunColumns, start: usize, epoch: u32, gold: &[u32; GROUP], o: &Lanes<f32>) {
    debug_assert!(start + GROUP <= run.n.len());
    let pd = _mm512_set1_pd;
    let at = |v: &mut Vec<f64>, l: usize| v.as_mut_ptr().wrapping_add(start + l);
    // SAFETY: called with `l + 8 <= GROUP`: 8 lanes of a `GROUP`-lane array.
    let lane8 = |v: &[f32; GROUP], l: usize| unsafe { _mm512_cvtps_pd(_mm256_loadu_ps(v.as_ptr().add(l))) };
    for l in (0..GROUP).step_by(8) {
        // SAFETY: (all loads and stores) `l + 8 <= GROUP` lanes, within the group's arrays and,
        // from `start`, within the run's (the caller's promise).
        unsafe {
            let na = _mm512_cvtepu32_pd(_mm256_loadu_si256(run.n.as_ptr().add(start + l).cast()));
            let nf = _mm512_add_pd(na, pd(1.0));
            let mean = _mm512_loadu_pd(at(&mut run.mean, l));
            let delta = _mm512_sub_pd(lane8(&o.gold_prob, l), mean);
            let inv = _mm512_div_pd(pd(1.0), nf);
            _mm512_storeu_pd(at(&mut run.mean, l), _mm512_add_pd(mean, _mm512_mul_pd(delta, inv)));
            let m2 = _mm512_loadu_pd(at(&mut run.m2, l));
            let spread = _mm512_mul_pd(_mm512_mul_pd(delta, delta), _mm512_mul_pd(na, inv));
            _mm512_storeu_pd(at(&mut run.m2, l), _mm512_add_pd(m2, spread));
            let margin = _mm512_sub_pd(lane8(&o.gold_value, l), lane8(&o.max_other, l));
            // `Lanes::loss`: a gap that overflowed float32 is recomputed in float64.
            let gap = lane8(&o.loss_b, l);
            let overflowed = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(gap, pd(f64::INFINITY));
            let gap = _mm512_mask_sub_pd(gap, overflowed, lane8(&o.max_other, l), lane8(&o.gold_value, l));
            let loss = _mm512_add_pd(lane8(&o.loss_a, l), gap);
            for (sum, value) in [
                (&mut run.sum_margin, margin),
                (&mut run.sum_el2n, lane8(&o.el2n, l)),
                (&mut run.sum_loss, loss),
                (&mut run.sum_entropy, lane8(&o.entropy, l)),
            ] {
                _mm512_storeu_pd(at(sum, l), _mm512_add_pd(_mm512_loadu_pd(at(sum, l)), value));
            }
        }
    }
    let (none, epoch_v, one) = (_mm512_set1_epi32(NONE as i32), _mm512_set1_epi32(epoch as i32), _mm512_set1_epi32(1));
    let at = |v: &mut Vec<u32>, l: usize| v.as_mut_ptr().wrapping_add(start + l).cast::<__m512i>();
    for l in (0..GROUP).step_by(W) {
        // SAFETY: (all loads and stores) `l + W <= GROUP` lanes, within the group's arrays and,
        // from `start`, within the run's (the caller's promise).
        unsafe {
            let pred = _mm512_loadu_si512(o.pred.as_ptr().add(l).cast());
            let correct = _mm512_cmpeq_epi32_mask(pred, _mm512_loadu_si512(gold.as_ptr().add(l).cast()));
            let stable_from = _mm512_loadu_si512(at(&mut run.stable_from, l));
            let was_correct = _mm512_cmpneq_epi32_mask(stable_from, none);
            let n = _mm512_loadu_si512(at(&mut run.n, l));
            let first_epoch = _mm512_loadu_si512(at(&mut run.first_epoch, l));
            let unseen = _mm512_cmpeq_epi32_mask(n, _mm512_setzero_si512());
            _mm512_storeu_si512(at(&mut run.first_epoch, l), _mm512_mask_blend_epi32(unseen, first_epoch, epoch_v));
            _mm512_storeu_si512(at(&mut run.n, l), _mm512_add_epi32(n, one));
            let add = |v: &mut Vec<u32>, m: __mmask16| {
                let p = at(v, l);
                _mm512_storeu_si512(p, _mm512_mask_add_epi32(_mm512_loadu_si512(p), m, _mm512_loadu_si512(p), one));
            };
            add(&mut run.n_correct, correct);
            let confident =
                _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_loadu_ps(o.gold_prob.as_ptr().add(l)), _mm512_set1_ps(0.5));
            add(&mut run.n_confident, confident);
            add(&mut run.forgetting, was_correct & !correct);
            let first_learned = _mm512_loadu_si512(at(&mut run.first_learned, l));
            let learns = correct & _mm512_cmpeq_epi32_mask(first_learned, none);
            _mm512_storeu_si512(at(&mut run.first_learned, l), _mm512_mask_blend_epi32(learns, first_learned, epoch_v));
            // Correct: kept if it was correct already, else from this epoch; wrong: none.
            let stable = _mm512_mask_blend_epi32(was_correct, epoch_v, stable_from);
            _mm512_storeu_si512(at(&mut run.stable_from, l), _mm512_mask_blend_epi32(correct, none, stable));
            _mm512_storeu_si512(at(&mut run.last_epoch, l), epoch_v);
            _mm512_storeu_si512(at(&mut run.final_pred, l), pred);
        }
    }
}

/// `f32::exp_in_range_with::<true>` on 16 lanes (same operations, same order).
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn exp_in_range(x: __m512) -> __m512 {
    let ps = _mm512_set1_ps;
    let t = _mm512_add_ps(_mm512_mul_ps(x, ps(std::f32::consts::LOG2_E)), ps(SHIFTER));
    let n = _mm512_sub_ps(t, ps(SHIFTER));
    let k = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(SHIFTER.to_bits() as i32));
    let r = _mm512_fnmadd_ps(n, ps(LN2_LO), _mm512_fnmadd_ps(n, ps(LN2_HI), x));
    let r2 = _mm512_mul_ps(r, r);
    let mut p = ps(EXP_POLY[0]);
    for c in &EXP_POLY[1..] {
        p = _mm512_fmadd_ps(p, r, ps(*c));
    }
    let y = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), ps(1.0));
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(k, _mm512_set1_epi32(127))));
    _mm512_mul_ps(y, scale)
}

/// `f32::exp_with::<true>`: clamped to the finite range, 0 below it.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn exp(x: __m512) -> __m512 {
    let (lo, hi) = (_mm512_set1_ps(<f32 as Real>::EXP_MIN), _mm512_set1_ps(<f32 as Real>::EXP_MAX));
    let c = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, lo), x, lo);
    let c = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(c, hi), c, hi);
    _mm512_maskz_mov_ps(!_mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, lo), exp_in_range(c))
}

/// `f32::ln_with::<true>` on 16 lanes of positive normal numbers (same operations, same order;
/// the 16-entry tables are one register each, indexed by `vpermps`).
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn ln(v: __m512) -> __m512 {
    use crate::kernel::math::ln_f32::*;
    let ps = _mm512_set1_ps;
    let ix = _mm512_castps_si512(v);
    let tmp = _mm512_sub_epi32(ix, _mm512_set1_epi32(OFF));
    // `vpermps` reads the low 4 bits of each index: `(tmp >> 19) & 15`.
    let i = _mm512_srli_epi32::<19>(tmp);
    let k = _mm512_cvtepi32_ps(_mm512_srai_epi32::<23>(tmp));
    let z = _mm512_castsi512_ps(_mm512_sub_epi32(ix, _mm512_and_si512(tmp, _mm512_set1_epi32(EXPONENT_MASK))));
    // SAFETY: the tables hold 16 values each.
    let (inv_c, ln_c) = unsafe { (_mm512_loadu_ps(INV_C.as_ptr()), _mm512_loadu_ps(LN_C.as_ptr())) };
    let r = _mm512_fmsub_ps(z, _mm512_permutexvar_ps(i, inv_c), ps(1.0));
    let mut q = ps(POLY[0]);
    for c in &POLY[1..] {
        q = _mm512_fmadd_ps(q, r, ps(*c));
    }
    let y = _mm512_fmadd_ps(_mm512_mul_ps(r, r), q, r);
    _mm512_add_ps(_mm512_fmadd_ps(k, ps(LN2), _mm512_permutexvar_ps(i, ln_c)), y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Kind;
    use proptest::prelude::*;

    /// Values that stress every branch: ties, signed zeros, the `exp` range's edges, huge and
    /// tiny magnitudes, infinities and NaN.
    const SPECIAL: [f32; 16] = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        -87.0,
        -87.5,
        88.0,
        88.5,
        1e-30,
        -1e30,
        3e38,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];

    fn value() -> impl Strategy<Value = f32> {
        prop_oneof![
            6 => -30.0f32..30.0,
            1 => -1e6f32..1e6,
            1 => prop::sample::select(SPECIAL.to_vec()),
            // Few distinct values: ties for the maximum.
            1 => (0..3u8).prop_map(f32::from),
        ]
    }

    fn group() -> impl Strategy<Value = (usize, Vec<f32>, Vec<u32>)> {
        (2usize..=21).prop_flat_map(|cols| {
            (Just(cols), prop::collection::vec(value(), cols * GROUP), prop::collection::vec(0..cols as u32, GROUP))
        })
    }

    /// Probabilities: softmax-like rows (mostly valid, so every path past the checks runs), or
    /// any values in and around [0, 1] (zeros, subnormals, epsilon, negatives, above 1, NaN).
    fn prob_group() -> impl Strategy<Value = (usize, Vec<f32>, Vec<u32>)> {
        let special = prop::sample::select(vec![
            0.0f32,
            -0.0,
            1.0,
            1e-40,
            f32::MIN_POSITIVE,
            f32::EPSILON,
            0.5,
            -1e-3,
            1.5,
            f32::INFINITY,
            f32::NAN,
        ]);
        let value = prop_oneof![4 => 0.0f32..1.0, 1 => special];
        (2usize..=21).prop_flat_map(move |cols| {
            let row = (prop::collection::vec(value.clone(), cols), prop::bool::weighted(0.7)).prop_map(
                |(mut row, normalize)| {
                    let sum: f32 = row.iter().sum();
                    if normalize && sum.is_finite() && sum > 0.0 {
                        row.iter_mut().for_each(|v| *v /= sum);
                    }
                    row
                },
            );
            (Just(cols), prop::collection::vec(row, GROUP), prop::collection::vec(0..cols as u32, GROUP)).prop_map(
                |(cols, rows, gold)| {
                    // Class-major, as the kernel's transposed scratch.
                    let zt = (0..cols * GROUP).map(|i| rows[i % GROUP][i / GROUP]).collect();
                    (cols, zt, gold)
                },
            )
        })
    }

    /// Each value's bits; every NaN alike (a NaN's sign and payload carry no meaning here: its
    /// row is flagged as non-finite).
    fn bits(v: &[f32; GROUP]) -> Vec<u32> {
        v.iter().map(|x| if x.is_nan() { f32::NAN.to_bits() } else { x.to_bits() }).collect()
    }

    /// The intrinsics agree with the portable code (compiled with FMA) bit for bit.
    fn check(kind: Kind, cols: usize, zt: &[f32], gold: Vec<u32>) -> Result<(), TestCaseError> {
        if !available() {
            eprintln!("no AVX-512 here: the intrinsic kernel is not tested");
            return Ok(());
        }
        let gold: [u32; GROUP] = gold.try_into().unwrap();
        let (mut want, mut got) = (Lanes::<f32>::new(), Lanes::<f32>::new());
        // SAFETY: the features were checked above (AVX-512 implies AVX2); `zt` has
        // `cols * GROUP` values.
        unsafe {
            super::super::observe_portable_fma(kind, zt, cols, &gold, &mut want);
            match kind {
                Kind::Logits => observe_logits(zt, cols, &gold, &mut got),
                Kind::Probs => observe_probs(zt, cols, &gold, &mut got),
            }
        }
        for (name, a, b) in [
            ("gold_prob", &want.gold_prob, &got.gold_prob),
            ("gold_value", &want.gold_value, &got.gold_value),
            ("max_other", &want.max_other, &got.max_other),
            ("el2n", &want.el2n, &got.el2n),
            ("loss_a", &want.loss_a, &got.loss_a),
            ("loss_b", &want.loss_b, &got.loss_b),
            ("entropy", &want.entropy, &got.entropy),
        ] {
            prop_assert_eq!(bits(a), bits(b), "{}", name);
        }
        prop_assert_eq!(want.pred, got.pred);
        prop_assert_eq!(want.flagged, got.flagged);
        Ok(())
    }

    /// A run of `GROUP + 3` examples with arbitrary histories, and results for one group of it.
    fn run_and_results() -> impl Strategy<Value = (RunColumns, Box<Lanes<f32>>, [u32; GROUP], u32)> {
        let len = GROUP + 3;
        let f64s = || prop::collection::vec(prop_oneof![-1e3f64..1e3, Just(0.0)], len);
        // Epoch fields: mostly small, sometimes none.
        let epochs = || prop::collection::vec(prop_oneof![3 => 0u32..50, 1 => Just(NONE)], len);
        let counts = || prop::collection::vec(prop_oneof![3 => 0u32..50, 1 => Just(0u32)], len);
        let lanes = prop::collection::vec((0.0f32..1.0, -5.0f32..5.0, -5.0f32..5.0, 0.0f32..2.0, 0u32..4), GROUP);
        (
            (f64s(), f64s(), f64s(), f64s(), f64s(), f64s()),
            (counts(), counts(), counts(), counts()),
            (epochs(), epochs(), epochs(), epochs(), epochs()),
            lanes,
            prop::collection::vec(0u32..4, GROUP),
            0u32..60,
        )
            .prop_map(move |(f, c, e, lanes, gold, epoch)| {
                let mut run = RunColumns::default();
                run.reset(len);
                (run.mean, run.m2, run.sum_margin, run.sum_el2n, run.sum_loss, run.sum_entropy) = f;
                (run.n, run.n_correct, run.n_confident, run.forgetting) = c;
                (run.first_epoch, run.first_learned, run.stable_from, run.last_epoch, run.final_pred) = e;
                let mut o = Lanes::<f32>::new();
                for (l, (g, a, b, x, pred)) in lanes.into_iter().enumerate() {
                    (o.gold_prob[l], o.gold_value[l], o.max_other[l], o.el2n[l]) = (g, a, b, x);
                    (o.loss_a[l], o.loss_b[l], o.entropy[l], o.pred[l]) = (x + 1.0, a, g * 2.0, pred);
                    if pred == 3 {
                        // Logits near float32's limits: `max - z_gold` overflowed.
                        (o.gold_value[l], o.max_other[l], o.loss_b[l]) = (-3e38, 3e38 * a.abs(), f32::INFINITY);
                    }
                }
                (run, o, gold.try_into().unwrap(), epoch)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The intrinsic state update agrees with the portable one bit for bit.
        #[test]
        fn run_updates_match_the_portable_version((run, o, gold, epoch) in run_and_results(), start in 0usize..4) {
            if !available() {
                eprintln!("no AVX-512 here: the intrinsic update is not tested");
                return Ok(());
            }
            let (mut want, mut got) = (run.clone(), run);
            super::super::update_run::<f32, true>(&mut want, start, GROUP, epoch, &gold, &o, &[true; GROUP]);
            // SAFETY: the features were checked above; the run has `start + GROUP` examples.
            unsafe { update_run(&mut got, start, epoch, &gold, &o) };
            let bits = |v: &Vec<f64>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for (name, a, b) in [
                ("mean", &want.mean, &got.mean),
                ("m2", &want.m2, &got.m2),
                ("sum_margin", &want.sum_margin, &got.sum_margin),
                ("sum_el2n", &want.sum_el2n, &got.sum_el2n),
                ("sum_loss", &want.sum_loss, &got.sum_loss),
                ("sum_entropy", &want.sum_entropy, &got.sum_entropy),
            ] {
                prop_assert_eq!(bits(a), bits(b), "{}", name);
            }
            for (name, a, b) in [
                ("n", &want.n, &got.n),
                ("n_correct", &want.n_correct, &got.n_correct),
                ("n_confident", &want.n_confident, &got.n_confident),
                ("forgetting", &want.forgetting, &got.forgetting),
                ("first_epoch", &want.first_epoch, &got.first_epoch),
                ("first_learned", &want.first_learned, &got.first_learned),
                ("stable_from", &want.stable_from, &got.stable_from),
                ("last_epoch", &want.last_epoch, &got.last_epoch),
                ("final_pred", &want.final_pred, &got.final_pred),
            ] {
                prop_assert_eq!(a, b, "{}", name);
            }
        }

        #[test]
        fn logits_match_the_portable_version((cols, zt, gold) in group()) {
            check(Kind::Logits, cols, &zt, gold)?;
        }

        #[test]
        fn probabilities_match_the_portable_version((cols, zt, gold) in prob_group()) {
            check(Kind::Probs, cols, &zt, gold)?;
        }
    }
}

//! The observation of `f32` rows (logits and probabilities) written with AVX-512 intrinsics.
//!
//! The portable versions (`observe_logits`, `observe_probs`) run each step over all 64 lanes of
//! a group before the next class, so their running values per lane live in memory: LLVM loads
//! and stores them for every class. Here each 16-lane slice of the group goes through all
//! classes with its running values in registers. Every lane sees the same operations in the same
//! order as the portable versions compiled with FMA (the clone that runs wherever these can), so
//! the two agree bit for bit; tests check that on random and adversarial rows.

use super::{GROUP, Lanes};
use crate::math::Real;
use crate::math::cephes_f32::*;
use std::arch::x86_64::*;

/// Lanes per register.
const W: usize = 16;

/// Whether this CPU runs the kernels here.
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("fma")
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
        // SAFETY (every load and store below): `lane + W <= GROUP`, and class `k < cols` of the
        // group starts at `k * GROUP` in `zt`.
        let at = zt.as_ptr().wrapping_add(lane);
        let goldf = _mm512_cvtepu32_ps(unsafe { _mm512_loadu_si512(gold.as_ptr().add(lane).cast()) });
        // Pass 1 (see `FirstPass`).
        let mut first = FirstPass::new(goldf);
        for k in 0..cols {
            first.take(ps(k as f32), unsafe { _mm512_loadu_ps(at.add(k * GROUP)) });
        }
        let FirstPass { sum, gold: z_gold, max_other, max, arg, .. } = first;
        // Pass 2: the sums of the exponentials, as in `observe_logits`.
        let (mut rest, mut tilt, mut sq_rest) = (zero, zero, zero);
        for k in 0..cols {
            let (kf, v) = (ps(k as f32), unsafe { _mm512_loadu_ps(at.add(k * GROUP)) });
            let gap = _mm512_sub_ps(v, max);
            let d = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(exp_min, gap), gap, exp_min);
            let e = _mm512_maskz_mov_ps(!_mm512_cmp_ps_mask::<_CMP_LT_OQ>(gap, exp_min), exp_in_range(d));
            let e_other = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(kf, arg), e);
            rest = _mm512_add_ps(rest, e_other);
            sq_rest = _mm512_fmadd_ps(e_other, e_other, sq_rest);
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
        // SAFETY: as in `observe_logits`.
        let at = zt.as_ptr().wrapping_add(lane);
        let goldf = _mm512_cvtepu32_ps(unsafe { _mm512_loadu_si512(gold.as_ptr().add(lane).cast()) });
        let mut first = FirstPass::new(goldf);
        let (mut lowest, mut entropy, mut sq_other) = (one, zero, zero);
        for k in 0..cols {
            let v = unsafe { _mm512_loadu_ps(at.add(k * GROUP)) };
            let is_gold = first.take(ps(k as f32), v);
            lowest = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, lowest), lowest, v);
            let v_other = _mm512_maskz_mov_ps(!is_gold, v);
            sq_other = _mm512_fmadd_ps(v_other, v_other, sq_other);
            let normal = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, ps(f32::MIN_POSITIVE));
            entropy = _mm512_sub_ps(entropy, _mm512_maskz_mov_ps(normal, _mm512_mul_ps(v, ln(v))));
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
        let above_other = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, self.max_other);
        self.max_other = _mm512_mask_blend_ps(above_other & !is_gold, self.max_other, v);
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

/// `f32::ln_with::<true>` on 16 lanes of positive normal numbers.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn ln(v: __m512) -> __m512 {
    let ps = _mm512_set1_ps;
    let bits = _mm512_castps_si512(v);
    let e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32::<23>(bits), _mm512_set1_epi32(126)));
    let m = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_and_si512(bits, _mm512_set1_epi32(0x007f_ffff)),
        _mm512_set1_epi32(0x3f00_0000),
    ));
    let small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(m, ps(std::f32::consts::FRAC_1_SQRT_2));
    let e = _mm512_mask_blend_ps(small, e, _mm512_sub_ps(e, ps(1.0)));
    let x = _mm512_mask_blend_ps(small, _mm512_sub_ps(m, ps(1.0)), _mm512_sub_ps(_mm512_add_ps(m, m), ps(1.0)));
    let z = _mm512_mul_ps(x, x);
    let mut p = ps(LN_POLY[0]);
    for c in &LN_POLY[1..] {
        p = _mm512_fmadd_ps(p, x, ps(*c));
    }
    let mut y = _mm512_mul_ps(_mm512_mul_ps(p, x), z);
    y = _mm512_add_ps(y, _mm512_mul_ps(e, ps(LN2_LO)));
    y = _mm512_add_ps(y, _mm512_mul_ps(ps(-0.5), z));
    _mm512_add_ps(_mm512_add_ps(x, y), _mm512_mul_ps(e, ps(LN2_HI)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Kind;
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

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

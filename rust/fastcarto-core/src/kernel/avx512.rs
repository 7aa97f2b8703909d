//! The logits observation of `f32` rows written with AVX-512 intrinsics.
//!
//! The portable version (`observe_logits`) runs each step over all 64 lanes of a group before
//! the next class, so its six running values per lane live in memory: LLVM loads and stores
//! them for every class. Here each 16-lane slice of the group goes through all classes with its
//! running values in registers. Every lane sees the same operations in the same order as the
//! portable version compiled with FMA (the clone that runs wherever this one can), so the two
//! agree bit for bit; a test checks that on random and adversarial rows.

use super::{GROUP, Lanes};
use crate::math::Real;
use crate::math::cephes_f32::*;
use std::arch::x86_64::*;

/// Lanes per register.
const W: usize = 16;

/// Whether this CPU runs [`observe_logits`].
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
        let (mut sum, mut z_gold) = (zero, zero);
        let (mut max_other, mut max, mut arg) = (ps(f32::NEG_INFINITY), ps(f32::NEG_INFINITY), zero);
        for k in 0..cols {
            let (kf, v) = (ps(k as f32), unsafe { _mm512_loadu_ps(at.add(k * GROUP)) });
            sum = _mm512_add_ps(sum, v);
            let is_gold = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(kf, goldf);
            z_gold = _mm512_mask_blend_ps(is_gold, z_gold, v);
            let above_other = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, max_other);
            max_other = _mm512_mask_blend_ps(above_other & !is_gold, max_other, v);
            let greater = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, max);
            max = _mm512_mask_blend_ps(greater, max, v);
            arg = _mm512_mask_blend_ps(greater, arg, kf);
        }
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
        let eg = _mm512_mask_blend_ps(is_arg, exp(_mm512_xor_ps(gap, ps(-0.0))), one);
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
        unsafe {
            _mm512_storeu_ps(out.gold_prob.as_mut_ptr().add(lane), _mm512_mul_ps(eg, inv_s));
            _mm512_storeu_ps(out.gold_value.as_mut_ptr().add(lane), z_gold);
            _mm512_storeu_ps(out.max_other.as_mut_ptr().add(lane), max_other);
            _mm512_storeu_ps(out.el2n.as_mut_ptr().add(lane), el2n);
            _mm512_storeu_ps(out.loss_a.as_mut_ptr().add(lane), ln_s);
            _mm512_storeu_ps(out.loss_b.as_mut_ptr().add(lane), gap);
            _mm512_storeu_ps(out.entropy.as_mut_ptr().add(lane), entropy);
            _mm512_storeu_si512(out.pred.as_mut_ptr().add(lane).cast(), _mm512_cvttps_epu32(arg));
            // One byte per lane: 1 (true) where the sum is not finite.
            let flags = _mm_maskz_mov_epi8(!finite, _mm_set1_epi8(1));
            _mm_storeu_si128(out.flagged.as_mut_ptr().add(lane).cast(), flags);
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

    /// Each value's bits; every NaN alike (a NaN's sign and payload carry no meaning here: its
    /// row is flagged as non-finite).
    fn bits(v: &[f32; GROUP]) -> Vec<u32> {
        v.iter().map(|x| if x.is_nan() { f32::NAN.to_bits() } else { x.to_bits() }).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The intrinsics agree with the portable code (compiled with FMA) bit for bit.
        #[test]
        fn matches_the_portable_version((cols, zt, gold) in group()) {
            if !available() {
                eprintln!("no AVX-512 here: the intrinsic kernel is not tested");
                return Ok(());
            }
            let gold: [u32; GROUP] = gold.try_into().unwrap();
            let (mut want, mut got) = (Lanes::<f32>::new(), Lanes::<f32>::new());
            // SAFETY: the features were checked above (AVX-512 implies AVX2); `zt` has
            // `cols * GROUP` values.
            unsafe {
                super::super::observe_logits_portable_fma(&zt, cols, &gold, &mut want);
                observe_logits(&zt, cols, &gold, &mut got);
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
        }
    }
}

//! Branch-free `exp` and `ln` that LLVM can vectorize when called in a loop over lanes.
//!
//! `f32::exp` and `f64::ln` from std are calls into libm, which stop auto-vectorization and
//! dominate a softmax over short class axes. The functions here are classic range reductions
//! (Cody–Waite for `exp`, Cephes / fdlibm for `ln`) written with selects instead of branches.
//! Their accuracy is pinned by tests at the bottom of this file: within a few ulp of std.

// Coefficients are kept digit for digit as published (Cephes, fdlibm), so they can be checked.
#![allow(clippy::excessive_precision)]

use std::ops::{Add, Div, Mul, Neg, Sub};

/// The floating-point element types the engine reads: `f32` and `f64`.
pub trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + std::fmt::Debug
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    /// Machine epsilon; probability inputs clip the gold probability to it before `ln` (as
    /// scikit-learn's `log_loss` does) so one exact zero does not make the mean loss infinite.
    const EPSILON: Self;
    /// Smallest positive normal number; `ln_fast` is accurate from here up.
    const MIN_POSITIVE: Self;
    /// Name used in error messages (`"float32"` / `"float64"`).
    const DTYPE: &'static str;

    fn from_f64(x: f64) -> Self;
    fn from_u32(x: u32) -> Self;
    fn to_f64(self) -> f64;
    /// Truncating conversion of a small nonnegative integral value (class indices).
    fn to_u32(self) -> u32;
    fn sqrt(self) -> Self;
    fn is_finite(self) -> bool;
    /// `e^x`; exactly 1 at 0, 0 below the smallest normal result, accurate to a few ulp.
    /// `FMA` fuses the polynomial's multiply-adds: only for code compiled with FMA enabled.
    #[inline(always)]
    fn exp_with<const FMA: bool>(self) -> Self {
        let out = self.clamp_(Self::EXP_MIN, Self::EXP_MAX).exp_in_range_with::<FMA>();
        if self < Self::EXP_MIN { Self::ZERO } else { out }
    }
    /// `e^x` for `x` in `EXP_MIN..=EXP_MAX` (the caller clamps; outside it the result is
    /// meaningless): [`Real::exp_with`] without its range handling, for hot loops that already
    /// know the sign of their argument.
    fn exp_in_range_with<const FMA: bool>(self) -> Self;
    /// The smallest argument whose `e^x` is a normal number.
    const EXP_MIN: Self;
    /// The largest argument whose `e^x` is finite.
    const EXP_MAX: Self;
    #[inline(always)]
    fn clamp_(self, lo: Self, hi: Self) -> Self {
        let x = if self < lo { lo } else { self };
        if x > hi { hi } else { x }
    }
    /// Natural log of a positive normal number, accurate to a few ulp (`FMA` as for `exp_with`).
    /// Finite at 0 and at subnormals (meaningless there, but `0 * ln 0` is 0, which the
    /// entropy relies on).
    fn ln_with<const FMA: bool>(self) -> Self;
    fn mul_add_(self, b: Self, c: Self) -> Self;
    #[inline(always)]
    fn exp_fast(self) -> Self {
        self.exp_with::<false>()
    }
    #[inline(always)]
    fn ln_fast(self) -> Self {
        self.ln_with::<false>()
    }
    /// `out[k * GROUP + l] = rows[l * cols + k]` for `g` rows (see `transpose`).
    #[inline(always)]
    fn transpose_group(rows: &[Self], cols: usize, g: usize, out: &mut [Self]) {
        crate::kernel::transpose::scalar(rows, cols, g, out);
    }
    #[inline(always)]
    fn max_(self, other: Self) -> Self {
        if other > self { other } else { self }
    }
}

impl Real for f32 {
    #[inline(always)]
    fn transpose_group(rows: &[Self], cols: usize, g: usize, out: &mut [Self]) {
        crate::kernel::transpose::f32_rows(rows, cols, g, out);
    }

    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    const EPSILON: Self = f32::EPSILON;
    const MIN_POSITIVE: Self = f32::MIN_POSITIVE;
    const DTYPE: &'static str = "float32";
    const EXP_MIN: Self = -87.0;
    const EXP_MAX: Self = 88.0;

    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn from_u32(x: u32) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn to_u32(self) -> u32 {
        self as u32
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        // Written as a comparison (NaN fails it) so it vectorizes to one compare.
        self.abs() <= f32::MAX
    }

    #[inline(always)]
    fn mul_add_(self, b: Self, c: Self) -> Self {
        self.mul_add(b, c)
    }

    #[inline(always)]
    fn exp_in_range_with<const FMA: bool>(self) -> Self {
        use cephes_f32::*;
        let fma = |a: f32, b: f32, c: f32| if FMA { a.mul_add_(b, c) } else { a * b + c };
        let x = self;
        let t = x * std::f32::consts::LOG2_E + SHIFTER;
        let n = t - SHIFTER;
        let k = (t.to_bits() as i32).wrapping_sub(SHIFTER.to_bits() as i32);
        let r = fma(-n, LN2_LO, fma(-n, LN2_HI, x));
        let r2 = r * r;
        let mut p = EXP_POLY[0];
        for c in &EXP_POLY[1..] {
            p = fma(p, r, *c);
        }
        let y = fma(p, r2, r) + 1.0;
        let scale = f32::from_bits(((k + 127) as u32) << 23);
        y * scale
    }

    #[inline(always)]
    fn ln_with<const FMA: bool>(self) -> Self {
        use ln_f32::*;
        let fma = |a: f32, b: f32, c: f32| if FMA { a.mul_add_(b, c) } else { a * b + c };
        let ix = self.to_bits() as i32;
        // x = 2^k z with z in [OFF, 2 OFF); z's leading mantissa bits pick its table entry c.
        let tmp = ix.wrapping_sub(OFF);
        let i = ((tmp >> 19) & 15) as usize;
        let k = (tmp >> 23) as f32;
        let z = f32::from_bits(ix.wrapping_sub(tmp & EXPONENT_MASK) as u32);
        // ln z = ln c + ln(1 + r), r = z / c - 1 (|r| < 0.031), formed without rounding error
        // to speak of: one fused rounding, or an exact difference times a near-exact 1 / c.
        let r = if FMA { z.mul_add_(INV_C[i], -1.0) } else { (z - C[i]) * INV_C[i] };
        let q = fma(fma(fma(POLY[0], r, POLY[1]), r, POLY[2]), r, POLY[3]);
        let y = fma(r * r, q, r);
        // k ln 2 + ln c: one rounding when fused, else through ln 2's exact-product split.
        let y0 =
            if FMA { k.mul_add_(LN2, LN_C[i]) } else { k * cephes_f32::LN2_HI + (k * cephes_f32::LN2_LO + LN_C[i]) };
        y0 + y
    }
}

/// The constants of the `f32` `ln` (a 16-entry table, as in ARM's optimized-routines `logf`,
/// with the polynomial in `f32`), shared with the AVX-512 kernel, which repeats its operations
/// with intrinsics. Each `C[i]` was searched near its interval's middle so that `1 / C[i]` and
/// `ln C[i]` both round to `f32` within 0.007 ulp (`INV_C`, `LN_C`), which keeps the table's
/// own rounding out of the result; the interval around 1 has `C = 1`, so `ln` is exact at 1 and
/// accurate (`r = z - 1`) for the probabilities near 1 that a confident model gives.
pub(crate) mod ln_f32 {
    /// The bits of 0.69921875: `z` lies in `[OFF, 2 OFF)`, an interval around 1.
    pub(crate) const OFF: i32 = 0x3f33_0000;
    /// The sign and exponent bits.
    pub(crate) const EXPONENT_MASK: i32 = 0xff80_0000_u32 as i32;
    pub(crate) const LN2: f32 = std::f32::consts::LN_2;
    pub(crate) const C: [f32; 16] = [
        0.715_952_5,
        0.746_572_5,
        0.777_840_3,
        0.808_824_3,
        0.840_769_77,
        0.870_453_83,
        0.903_320_2,
        0.934_557_74,
        0.965_683_76,
        1.0,
        1.055_045,
        1.114_961_5,
        1.177_664_5,
        1.239_899_3,
        1.302_714_1,
        1.364_808_2,
    ];
    pub(crate) const INV_C: [f32; 16] = [
        1.396_740_7,
        1.339_454_7,
        1.285_610_9,
        1.236_362_5,
        1.189_386_2,
        1.148_826,
        1.107_027_2,
        1.070_024_8,
        1.035_535_7,
        1.0,
        0.947_826_86,
        0.896_891_95,
        0.849_138_26,
        0.806_517_1,
        0.767_628_13,
        0.732_703_7,
    ];
    pub(crate) const LN_C: [f32; 16] = [
        -0.334_141_43,
        -0.292_262_55,
        -0.251_234_03,
        -0.212_173_57,
        -0.173_437_42,
        -0.138_740_55,
        -0.101_678_2,
        -0.067_681_87,
        -0.034_918_87,
        0.0,
        0.053_583_428,
        0.108_819_88,
        0.163_533_26,
        0.215_030_15,
        0.264_449_86,
        0.311_013_9,
    ];
    /// `(ln(1 + r) - r) / r^2` to degree 3 (Taylor), highest degree first: truncation below
    /// 5e-9 of the result for |r| < 0.031.
    pub(crate) const POLY: [f32; 4] = [0.2, -0.25, 1.0 / 3.0, -0.5];
}

/// The constants of the `f32` `exp` (Cephes `expf`), shared with the AVX-512 kernel, which
/// repeats its operations with intrinsics.
pub(crate) mod cephes_f32 {
    /// 1.5 * 2^23: adding it rounds to the nearest integer and leaves that integer in the low
    /// mantissa bits, which avoids a float->int conversion that does not vectorize.
    pub(crate) const SHIFTER: f32 = 12_582_912.0;
    /// ln 2 split in two: `LN2_HI` has few enough bits that `n * LN2_HI` is exact.
    pub(crate) const LN2_HI: f32 = 0.693_359_4;
    pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
    /// `expf`'s minimax polynomial on |r| <= ln2/2, highest degree first.
    pub(crate) const EXP_POLY: [f32; 6] =
        [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1];
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    const EPSILON: Self = f64::EPSILON;
    const MIN_POSITIVE: Self = f64::MIN_POSITIVE;
    const DTYPE: &'static str = "float64";
    const EXP_MIN: Self = -708.0;
    const EXP_MAX: Self = 709.0;

    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn from_u32(x: u32) -> Self {
        x as f64
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn to_u32(self) -> u32 {
        self as u32
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        self.abs() <= f64::MAX
    }

    #[inline(always)]
    fn mul_add_(self, b: Self, c: Self) -> Self {
        self.mul_add(b, c)
    }

    #[inline(always)]
    fn exp_in_range_with<const FMA: bool>(self) -> Self {
        let fma = |a: f64, b: f64, c: f64| if FMA { a.mul_add_(b, c) } else { a * b + c };
        const LOG2E: f64 = std::f64::consts::LOG2_E;
        // 1.5 * 2^52, see the f32 version.
        const SHIFTER: f64 = 6_755_399_441_055_744.0;
        const LN2_HI: f64 = 6.931_471_803_691_238_2e-1;
        const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
        let x = self;
        let t = x * LOG2E + SHIFTER;
        let n = t - SHIFTER;
        let k = (t.to_bits() as i64).wrapping_sub(SHIFTER.to_bits() as i64);
        let r = fma(-n, LN2_LO, fma(-n, LN2_HI, x));
        // Taylor series of e^r to degree 13: truncation error < 2e-16 for |r| <= ln2/2.
        const C: [f64; 14] = [
            1.0,
            1.0,
            1.0 / 2.0,
            1.0 / 6.0,
            1.0 / 24.0,
            1.0 / 120.0,
            1.0 / 720.0,
            1.0 / 5040.0,
            1.0 / 40320.0,
            1.0 / 362_880.0,
            1.0 / 3_628_800.0,
            1.0 / 39_916_800.0,
            1.0 / 479_001_600.0,
            1.0 / 6_227_020_800.0,
        ];
        let mut p = C[13];
        let mut i = 13;
        while i > 0 {
            i -= 1;
            p = fma(p, r, C[i]);
        }
        let scale = f64::from_bits(((k + 1023) as u64) << 52);
        p * scale
    }

    #[inline(always)]
    fn ln_with<const FMA: bool>(self) -> Self {
        let fma = |a: f64, b: f64, c: f64| if FMA { a.mul_add_(b, c) } else { a * b + c };
        // fdlibm e_log.c, with the branches turned into selects.
        const LN2_HI: f64 = 6.931_471_803_691_238_2e-1;
        const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
        const LG1: f64 = 6.666_666_666_666_735e-1;
        const LG2: f64 = 3.999_999_999_940_942e-1;
        const LG3: f64 = 2.857_142_874_366_239e-1;
        const LG4: f64 = 2.222_219_843_214_978_4e-1;
        const LG5: f64 = 1.818_357_216_161_805e-1;
        const LG6: f64 = 1.531_383_769_920_937_3e-1;
        const LG7: f64 = 1.479_819_860_511_658_6e-1;
        let bits = self.to_bits();
        let mut k = ((bits >> 52) as i64 - 1023) as f64;
        // Mantissa scaled into [1, 2), then into [sqrt(1/2), sqrt(2)).
        let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
        let big = m > std::f64::consts::SQRT_2;
        let m = if big { m * 0.5 } else { m };
        k = if big { k + 1.0 } else { k };
        let f = m - 1.0;
        let hfsq = 0.5 * f * f;
        let s = f / (2.0 + f);
        let z = s * s;
        let w = z * z;
        let t1 = w * fma(w, fma(w, LG6, LG4), LG2);
        let t2 = z * fma(w, fma(w, fma(w, LG7, LG5), LG3), LG1);
        let r = t2 + t1;
        k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)
    }
}

/// `ln(1 + x)` for `x >= 0`, accurate also for tiny `x` (the kernels use [`ln_1p_from`], with
/// the `1 + x` and `1 / (1 + x)` a softmax already has; this pins its accuracy in tests).
#[cfg(test)]
#[inline(always)]
pub fn ln_1p<T: Real>(x: T) -> T {
    ln_1p_with::<T, false>(x)
}

/// `a * b + c`, fused when `FMA` (only for code compiled with FMA enabled: elsewhere a fused
/// multiply-add is a call into libm, which is slow and stops vectorization).
#[inline(always)]
pub fn mul_add_with<T: Real, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA { a.mul_add_(b, c) } else { a * b + c }
}

/// [`ln_1p`] with fused multiply-adds when `FMA` (see [`Real::exp_with`]).
#[cfg(test)]
#[inline(always)]
pub fn ln_1p_with<T: Real, const FMA: bool>(x: T) -> T {
    let u = T::ONE + x;
    ln_1p_from::<T, FMA>(x, u, T::ONE / u)
}

/// `ln(1 + x)` from `u = 1 + x` (rounded) and `inv_u = 1 / u`, which a softmax already has:
/// `ln(u)` plus the rounding error of `u` over `u`, `(x - (u - 1)) / u`, to working precision
/// (exactly `x` when `u` rounds to 1).
#[inline(always)]
pub fn ln_1p_from<T: Real, const FMA: bool>(x: T, u: T, inv_u: T) -> T {
    u.ln_with::<FMA>() + (x - (u - T::ONE)) * inv_u
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps32(a: f32, b: f32) -> i64 {
        (a.to_bits() as i64 - b.to_bits() as i64).abs()
    }
    fn rel64(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn exp_f32_matches_std() {
        let mut worst = 0;
        let mut x = -86.9f32;
        while x < 88.0 {
            let want = (x as f64).exp() as f32;
            worst = worst.max(ulps32(x.exp_fast(), want)).max(ulps32(x.exp_with::<true>(), want));
            x += 0.000_37;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        assert_eq!(0.0f32.exp_fast(), 1.0);
        assert_eq!((-100.0f32).exp_fast(), 0.0);
        assert_eq!(f32::NEG_INFINITY.exp_fast(), 0.0);
    }

    #[test]
    fn exp_f64_matches_std() {
        let mut worst = 0.0f64;
        let mut x = -707.0f64;
        while x < 709.0 {
            worst = worst.max(rel64(x.exp_fast(), x.exp())).max(rel64(x.exp_with::<true>(), x.exp()));
            x += 0.000_731;
        }
        assert!(worst < 5e-16, "worst relative error {worst}");
        assert_eq!(0.0f64.exp_fast(), 1.0);
        assert_eq!((-1000.0f64).exp_fast(), 0.0);
    }

    #[test]
    fn ln_f32_matches_std() {
        let mut worst = 0;
        let mut x = f32::MIN_POSITIVE;
        while x < 1e30 {
            let want = (x as f64).ln() as f32;
            worst = worst.max(ulps32(x.ln_fast(), want)).max(ulps32(x.ln_with::<true>(), want));
            x *= 1.000_13;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        assert_eq!(1.0f32.ln_fast(), 0.0);
        for x in [0.0f32, 1e-45, 1e-40] {
            assert!(x.ln_fast().is_finite() && x.ln_with::<true>().is_finite(), "ln {x}");
        }
    }

    /// Every `f32` in [1/4, 4), where the table's intervals and their edges repeat with each
    /// exponent: probabilities, and the softmax sums of the logits kernel.
    #[test]
    fn ln_f32_is_within_one_ulp_around_one() {
        let mut worst = (0, 0);
        for bits in 0.25f32.to_bits()..4.0f32.to_bits() {
            let x = f32::from_bits(bits);
            let want = (x as f64).ln() as f32;
            worst.0 = worst.0.max(ulps32(x.ln_with::<true>(), want));
            worst.1 = worst.1.max(ulps32(x.ln_fast(), want));
        }
        assert!(worst.0 <= 1 && worst.1 <= 1, "worst errors (fused, unfused) {worst:?} ulp");
    }

    #[test]
    fn ln_f64_matches_std() {
        let mut worst = 0.0f64;
        let mut x = 1e-300f64;
        while x < 1e300 {
            let want = x.ln();
            if want != 0.0 {
                worst = worst.max(rel64(x.ln_fast(), want)).max(rel64(x.ln_with::<true>(), want));
            }
            x *= 1.000_61;
        }
        assert!(worst < 3e-16, "worst relative error {worst}");
        assert_eq!(1.0f64.ln_fast(), 0.0);
        for x in [0.0f64, 5e-324, 1e-310] {
            assert!(x.ln_fast().is_finite() && x.ln_with::<true>().is_finite(), "ln {x}");
        }
    }

    #[test]
    fn ln_1p_is_accurate_near_zero() {
        for &x in &[0.0, 1e-300, 1e-20, 1e-12, 3e-8, 1e-4, 0.5, 1.0, 7.0, 1e10] {
            let got = ln_1p(x);
            let got32 = ln_1p(x as f32) as f64;
            let want32 = (x as f32 as f64).ln_1p();
            assert!(got32 == want32 || ((got32 - want32) / want32).abs() < 4e-7, "f32 x={x}: {got32} vs {want32}");
            let want = f64::ln_1p(x);
            assert!(got == want || rel64(got, want) < 4e-16, "x={x}: {got} vs {want}");
        }
    }
}

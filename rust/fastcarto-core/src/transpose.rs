//! Row-major `[rows, cols]` to class-major `[cols][GROUP]` for one group of rows.
//!
//! The kernel works across examples (one vector lane per row), so each group of rows is turned
//! on its side first. Done element by element this took a fifth of the engine's instructions;
//! on x86-64 with AVX2, `f32` rows go through the classic 8x8 in-register transpose
//! (unpack / shuffle / permute), with masked loads for the last partial tile of columns.

use crate::kernel::GROUP;

/// Plain element-by-element transpose; the reference and the fallback.
#[inline(always)]
pub(crate) fn scalar<T: Copy>(rows: &[T], cols: usize, g: usize, out: &mut [T]) {
    for (l, row) in rows[..g * cols].chunks_exact(cols).enumerate() {
        for (k, &v) in row.iter().enumerate() {
            out[k * GROUP + l] = v;
        }
    }
}

/// `f32` transpose, vectorized when the CPU has AVX2.
#[inline(always)]
pub(crate) fn f32_rows(rows: &[f32], cols: usize, g: usize, out: &mut [f32]) {
    assert!(rows.len() >= g * cols && out.len() >= cols * GROUP && g <= GROUP);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked above) and the bounds were asserted.
        unsafe { avx2::transpose(rows, cols, g, out) };
        return;
    }
    scalar(rows, cols, g, out);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::GROUP;
    use std::arch::x86_64::*;

    /// # Safety
    /// Requires AVX2, `rows.len() >= g * cols`, `out.len() >= cols * GROUP`, `g <= GROUP`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose(rows: &[f32], cols: usize, g: usize, out: &mut [f32]) {
        let full = g / 8 * 8;
        let src = rows.as_ptr();
        let dst = out.as_mut_ptr();
        for r0 in (0..full).step_by(8) {
            let mut c0 = 0;
            while c0 < cols {
                if cols >= 8 {
                    // A last, partial tile overlaps the one before it (plain loads, which are
                    // cheaper than masked ones); only its new columns are stored.
                    let start = c0.min(cols - 8);
                    let load = |i: usize| unsafe { _mm256_loadu_ps(src.add((r0 + i) * cols + start)) };
                    let t = transpose8([load(0), load(1), load(2), load(3), load(4), load(5), load(6), load(7)]);
                    for (j, v) in t.iter().enumerate().skip(c0 - start) {
                        unsafe { _mm256_storeu_ps(dst.add((start + j) * GROUP + r0), *v) };
                    }
                    c0 += 8;
                    continue;
                }
                let width = (cols - c0).min(8);
                // Lanes past `width` are masked: they read nothing and become 0.
                let mask =
                    _mm256_cmpgt_epi32(_mm256_set1_epi32(width as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                let load = |i: usize| unsafe { _mm256_maskload_ps(src.add((r0 + i) * cols + c0), mask) };
                let t = transpose8([load(0), load(1), load(2), load(3), load(4), load(5), load(6), load(7)]);
                for (j, v) in t.iter().enumerate().take(width) {
                    unsafe { _mm256_storeu_ps(dst.add((c0 + j) * GROUP + r0), *v) };
                }
                c0 += 8;
            }
        }
        for r in full..g {
            for c in 0..cols {
                unsafe { *dst.add(c * GROUP + r) = *src.add(r * cols + c) };
            }
        }
    }

    #[inline(always)]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        unsafe {
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectorized_transpose_matches_scalar() {
        for cols in 1..=21 {
            for g in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64] {
                let rows: Vec<f32> = (0..g * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
                let mut want = vec![f32::NAN; cols * GROUP];
                let mut got = vec![f32::NAN; cols * GROUP];
                scalar(&rows, cols, g, &mut want);
                f32_rows(&rows, cols, g, &mut got);
                for k in 0..cols {
                    for l in 0..g {
                        assert_eq!(got[k * GROUP + l], want[k * GROUP + l], "cols {cols} g {g} k {k} l {l}");
                    }
                }
            }
        }
    }
}

//! Row-major `[rows, cols]` to class-major `[cols][GROUP]` for one group of rows.
//!
//! The kernel works across examples (one vector lane per row), so each group of rows is turned
//! on its side first. Done element by element this took a fifth of the engine's instructions.
//! On x86-64 with AVX-512, up to four columns are picked out of contiguous rows by permutes and
//! wider rows go through 4x4 transposes in 256-bit registers (see `avx512` for why not 512);
//! with AVX2 only, `f32` rows go through the classic 8x8 in-register transpose
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

/// `f32` transpose, vectorized when the CPU has AVX-512 or AVX2.
#[inline(always)]
pub(crate) fn f32_rows(rows: &[f32], cols: usize, g: usize, out: &mut [f32]) {
    assert!(rows.len() >= g * cols && out.len() >= cols * GROUP && g <= GROUP);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is present (checked above) and the bounds were asserted.
        unsafe { avx512::transpose(rows, cols, g, out) };
        return;
    }
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
                    // SAFETY: rows `r0..r0 + 8` are below `g` and columns `start..start + 8` below
                    // `cols`, so the 8 floats lie in `rows` (`rows.len() >= g * cols`).
                    let load = |i: usize| unsafe { _mm256_loadu_ps(src.add((r0 + i) * cols + start)) };
                    let t = transpose8([load(0), load(1), load(2), load(3), load(4), load(5), load(6), load(7)]);
                    for (j, v) in t.iter().enumerate().skip(c0 - start) {
                        // SAFETY: column `start + j < cols` and lanes `r0..r0 + 8 <= GROUP` lie in
                        // `out` (`out.len() >= cols * GROUP`).
                        unsafe { _mm256_storeu_ps(dst.add((start + j) * GROUP + r0), *v) };
                    }
                    c0 += 8;
                    continue;
                }
                let width = (cols - c0).min(8);
                // Lanes past `width` are masked: they read nothing and become 0.
                let mask =
                    _mm256_cmpgt_epi32(_mm256_set1_epi32(width as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                // SAFETY: row `r0 + i < g`; the mask reads only columns `c0..c0 + width <= cols`
                // of it, which lie in `rows`.
                let load = |i: usize| unsafe { _mm256_maskload_ps(src.add((r0 + i) * cols + c0), mask) };
                let t = transpose8([load(0), load(1), load(2), load(3), load(4), load(5), load(6), load(7)]);
                for (j, v) in t.iter().enumerate().take(width) {
                    // SAFETY: column `c0 + j < cols` and lanes `r0..r0 + 8 <= GROUP` lie in `out`.
                    unsafe { _mm256_storeu_ps(dst.add((c0 + j) * GROUP + r0), *v) };
                }
                c0 += 8;
            }
        }
        for r in full..g {
            for c in 0..cols {
                // SAFETY: `r < g <= GROUP` and `c < cols`: both offsets lie in their slices.
                unsafe { *dst.add(c * GROUP + r) = *src.add(r * cols + c) };
            }
        }
    }

    #[inline(always)]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        // SAFETY: register-only AVX intrinsics; only called from `transpose`, which requires AVX2.
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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::GROUP;
    use std::arch::x86_64::*;

    /// # Safety
    /// Requires AVX-512F, `rows.len() >= g * cols`, `out.len() >= cols * GROUP`, `g <= GROUP`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose(rows: &[f32], cols: usize, g: usize, out: &mut [f32]) {
        let (src, dst) = (rows.as_ptr(), out.as_mut_ptr());
        match cols {
            0 => {}
            1 => out[..g].copy_from_slice(&rows[..g]),
            // SAFETY: forwarded from this function's contract, with `cols` the width `narrow`
            // is instantiated for.
            2 => unsafe { narrow::<2>(src, g, dst) },
            // SAFETY: as above.
            3 => unsafe { narrow::<3>(src, g, dst) },
            // SAFETY: as above.
            4 => unsafe { narrow::<4>(src, g, dst) },
            // SAFETY: forwarded from this function's contract (`wide` takes any `cols`).
            _ => unsafe { wide(src, cols, g, dst) },
        }
    }

    /// Up to four columns: 16 rows are `C` contiguous vectors, so each column is picked out of
    /// them with two-source permutes (`C - 1` per column, or 2 per column for four) instead of
    /// assembling every row's few values on their own.
    ///
    /// # Safety
    /// As [`transpose`], with `cols == C`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn narrow<const C: usize>(src: *const f32, g: usize, dst: *mut f32) {
        // Lane `r` of column `c` is element `C * r + c` of the block (permutes read the low 5
        // bits of an index, or 4 for one source).
        let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let at = |c: i32| _mm512_add_epi32(_mm512_mullo_epi32(iota, _mm512_set1_epi32(C as i32)), _mm512_set1_epi32(c));
        let mut r0 = 0;
        while r0 < g {
            let n = (g - r0).min(16);
            let base = src.wrapping_add(r0 * C);
            let z: [__m512; C] = std::array::from_fn(|j| {
                if n == 16 {
                    // SAFETY: the whole block lies in `rows[..g * C]`.
                    unsafe { _mm512_loadu_ps(base.add(j * 16)) }
                } else {
                    // A partial block reads only its `n * C` values: masked-off lanes are not
                    // accessed (and cannot fault), so the address may lie past the rows.
                    let left = (n * C).saturating_sub(j * 16).min(16);
                    // SAFETY: every lane read lies in `rows[..g * C]`.
                    unsafe { _mm512_maskz_loadu_ps(((1u32 << left) - 1) as __mmask16, base.wrapping_add(j * 16)) }
                }
            });
            let keep = ((1u32 << n) - 1) as __mmask16;
            // SAFETY: lanes r0..r0 + n < g of column c < C, inside `out`.
            let put = |c: usize, v: __m512| unsafe { _mm512_mask_storeu_ps(dst.add(c * GROUP + r0), keep, v) };
            if C == 4 {
                // Each pair of vectors (8 rows) gives two half-columns per permute; the halves
                // of the two pairs are then joined 128 bits at a time.
                let half = |c: i32| {
                    let i = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
                    _mm512_add_epi32(i, _mm512_set1_epi32(c))
                };
                let (i01, i23) = (half(0), half(2));
                let lo01 = _mm512_permutex2var_ps(z[0], i01, z[1]);
                let lo23 = _mm512_permutex2var_ps(z[0], i23, z[1]);
                let hi01 = _mm512_permutex2var_ps(z[C - 2], i01, z[C - 1]);
                let hi23 = _mm512_permutex2var_ps(z[C - 2], i23, z[C - 1]);
                put(0, _mm512_shuffle_f32x4::<0x44>(lo01, hi01));
                put(1, _mm512_shuffle_f32x4::<0xEE>(lo01, hi01));
                put(2, _mm512_shuffle_f32x4::<0x44>(lo23, hi23));
                put(3, _mm512_shuffle_f32x4::<0xEE>(lo23, hi23));
            } else {
                for c in 0..C {
                    let idx = at(c as i32);
                    let mut v = _mm512_permutex2var_ps(z[0], idx, z[1]);
                    if C == 3 {
                        // Rows whose value lies in the third vector (element >= 32).
                        let hi = _mm512_cmpge_epi32_mask(idx, _mm512_set1_epi32(32));
                        v = _mm512_mask_permutexvar_ps(v, hi, idx, z[C - 1]);
                    }
                    put(c, v);
                }
            }
            r0 += 16;
        }
    }

    /// How a group's rows are split into blocks (the same for every group of columns).
    #[derive(Clone, Copy)]
    struct Blocks {
        /// Rows 0..4 go through a 4-row tile first, so the 8-row stores after them are 32-byte
        /// aligned: a store split across cache lines costs several times a whole one.
        lead: bool,
        /// 8-row blocks after the lead.
        eights: usize,
        /// A 4-row tile after them.
        four: bool,
    }

    /// Five or more columns, 4 at a time, in 256-bit registers even with AVX-512: `vshufps` on
    /// ymm issues on ports 1 and 5, while 512-bit shuffles only go to port 5 (and port 1 takes
    /// no vector work while 512-bit instructions are in flight), so ymm shuffles twice as many
    /// values per cycle; stores, at about one per cycle to distinct lines, then bound the rest.
    /// Columns outermost keep each inner loop free of branches on the column count.
    ///
    /// # Safety
    /// As [`transpose`], with `cols >= 4`.
    #[inline]
    #[target_feature(enable = "avx")]
    unsafe fn wide(src: *const f32, cols: usize, g: usize, dst: *mut f32) {
        let lead = g >= 4 && dst as usize % 32 == 16;
        let first = if lead { 4 } else { 0 };
        let eights = (g - first) / 8;
        let four = g - first - 8 * eights >= 4;
        let plan = Blocks { lead, eights, four };
        let mut c0 = 0;
        while c0 + 4 <= cols {
            // SAFETY: columns c0..c0 + 4 <= cols of rows below g.
            unsafe { columns::<0>(src.add(c0), cols, dst.add(c0 * GROUP), plan) };
            c0 += 4;
        }
        if c0 < cols {
            // The last, partial group overlaps the one before it (plain loads, in bounds); only
            // its new columns are stored, and only their shuffles are kept.
            let start = cols - 4;
            // SAFETY: as above, for columns start..cols.
            unsafe {
                let (p, q) = (src.add(start), dst.add(start * GROUP));
                match c0 - start {
                    1 => columns::<1>(p, cols, q, plan),
                    2 => columns::<2>(p, cols, q, plan),
                    _ => columns::<3>(p, cols, q, plan),
                }
            }
        }
        let done = first + 8 * eights + if four { 4 } else { 0 };
        for r in done..g {
            for c in 0..cols {
                // SAFETY: r < g, c < cols.
                unsafe { *dst.add(c * GROUP + r) = *src.add(r * cols + c) };
            }
        }
    }

    /// Columns `SKIP..4` of the group at `src` (row stride `s`) for every block of `plan`.
    ///
    /// # Safety
    /// `src` and `dst` as in [`wide`], offset to the group's first column; `s = cols >= 4`.
    #[inline(always)]
    unsafe fn columns<const SKIP: usize>(src: *const f32, s: usize, dst: *mut f32, plan: Blocks) {
        let (mut p, mut q) = (src, dst);
        // SAFETY: (all tiles) each reads and writes only the rows of its block.
        unsafe {
            if plan.lead {
                tile4::<SKIP>(p, s, q);
                (p, q) = (p.add(4 * s), q.add(4));
            }
            for _ in 0..plan.eights {
                tile8::<SKIP>(p, s, q);
                (p, q) = (p.add(8 * s), q.add(8));
            }
            if plan.four {
                tile4::<SKIP>(p, s, q);
            }
        }
    }

    /// 8 rows by 4 columns: ymm `i` holds rows `i` and `4 + i` (a load and an insert from
    /// memory, which runs on ports 0, 1 or 5), then a 4x4 transpose in each 128-bit half. The
    /// shuffles pick even and odd elements (`0x88`, `0xDD`): LLVM turns the usual `0x44` /
    /// `0xEE` into `vunpck*pd`, which only port 5 runs.
    ///
    /// # Safety
    /// Rows `0..8` at `p + i * s` must hold 4 readable values (6 for `SKIP == 2`: the two
    /// after row `i`'s four are the start of row `i + 1`), and `q + j * GROUP` 8 writable lanes.
    #[inline(always)]
    unsafe fn tile8<const SKIP: usize>(p: *const f32, s: usize, q: *mut f32) {
        // SAFETY: as this function's contract.
        unsafe {
            let row = |i: usize, at: usize| _mm_loadu_ps(p.add(i * s + at));
            let pair =
                |i: usize, at: usize| _mm256_insertf128_ps::<1>(_mm256_castps128_ps256(row(i, at)), row(4 + i, at));
            let put = |j: usize, v: __m256| _mm256_storeu_ps(q.add(j * GROUP), v);
            if SKIP == 2 {
                // The last two columns alone: rows 0 and 2 loaded two columns later line them
                // up with rows 1 and 3, so one blend replaces the first round of shuffles.
                let t = _mm256_blend_ps::<0xCC>(pair(0, 2), pair(1, 0));
                let u = _mm256_blend_ps::<0xCC>(pair(2, 2), pair(3, 0));
                put(2, _mm256_shuffle_ps::<0x88>(t, u));
                put(3, _mm256_shuffle_ps::<0xDD>(t, u));
                return;
            }
            let (a, b, c, d) = (pair(0, 0), pair(1, 0), pair(2, 0), pair(3, 0));
            let t0 = _mm256_shuffle_ps::<0x88>(a, b);
            let t1 = _mm256_shuffle_ps::<0xDD>(a, b);
            let t2 = _mm256_shuffle_ps::<0x88>(c, d);
            let t3 = _mm256_shuffle_ps::<0xDD>(c, d);
            if SKIP == 0 {
                put(0, _mm256_shuffle_ps::<0x88>(t0, t2));
            }
            if SKIP <= 1 {
                put(1, _mm256_shuffle_ps::<0x88>(t1, t3));
                put(2, _mm256_shuffle_ps::<0xDD>(t0, t2));
            }
            put(3, _mm256_shuffle_ps::<0xDD>(t1, t3));
        }
    }

    /// [`tile8`] for 4 rows, in 128-bit registers (the alignment lead and the last rows).
    ///
    /// # Safety
    /// As [`tile8`], for rows `0..4`.
    #[inline(always)]
    unsafe fn tile4<const SKIP: usize>(p: *const f32, s: usize, q: *mut f32) {
        // SAFETY: as this function's contract.
        unsafe {
            let row = |i: usize, at: usize| _mm_loadu_ps(p.add(i * s + at));
            let put = |j: usize, v: __m128| _mm_storeu_ps(q.add(j * GROUP), v);
            if SKIP == 2 {
                let t = _mm_blend_ps::<0xC>(row(0, 2), row(1, 0));
                let u = _mm_blend_ps::<0xC>(row(2, 2), row(3, 0));
                put(2, _mm_shuffle_ps::<0x88>(t, u));
                put(3, _mm_shuffle_ps::<0xDD>(t, u));
                return;
            }
            let (a, b, c, d) = (row(0, 0), row(1, 0), row(2, 0), row(3, 0));
            let t0 = _mm_shuffle_ps::<0x88>(a, b);
            let t1 = _mm_shuffle_ps::<0xDD>(a, b);
            let t2 = _mm_shuffle_ps::<0x88>(c, d);
            let t3 = _mm_shuffle_ps::<0xDD>(c, d);
            if SKIP == 0 {
                put(0, _mm_shuffle_ps::<0x88>(t0, t2));
            }
            if SKIP <= 1 {
                put(1, _mm_shuffle_ps::<0x88>(t1, t3));
                put(2, _mm_shuffle_ps::<0xDD>(t0, t2));
            }
            put(3, _mm_shuffle_ps::<0xDD>(t1, t3));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: [usize; 43] = {
        let mut c = [0; 43];
        let mut i = 0;
        while i < 40 {
            c[i] = i + 1;
            i += 1;
        }
        c[40] = 64;
        c[41] = 100;
        c[42] = 1000;
        c
    };
    const GS: [usize; 12] = [0, 1, 3, 7, 8, 9, 15, 16, 17, 33, 63, 64];

    type Transpose = fn(&[f32], usize, usize, &mut [f32]);

    /// Every vectorized version this CPU runs, so a machine with AVX-512 still tests AVX2.
    fn paths() -> Vec<(&'static str, Transpose)> {
        let mut p: Vec<(&'static str, Transpose)> = vec![("dispatch", f32_rows)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F is present; the callers below pass valid bounds.
                p.push(("avx512", |r, c, g, o| unsafe { avx512::transpose(r, c, g, o) }));
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present; the callers below pass valid bounds.
                p.push(("avx2", |r, c, g, o| unsafe { avx2::transpose(r, c, g, o) }));
            }
        }
        p
    }

    /// Compares against `scalar` and checks that nothing but `out[k * GROUP + l]` for `k < cols`,
    /// `l < g` was written (the rest stays NaN).
    fn check(name: &str, f: Transpose, rows: &[f32], cols: usize, g: usize) {
        let mut want = vec![f32::NAN; cols * GROUP + 64];
        let mut got = vec![f32::NAN; cols * GROUP + 64];
        scalar(rows, cols, g, &mut want);
        f(rows, cols, g, &mut got[..cols * GROUP]);
        for (i, (&x, &y)) in got.iter().zip(&want).enumerate() {
            let (k, l) = (i / GROUP, i % GROUP);
            if k < cols && l < g {
                assert_eq!(x.to_bits(), y.to_bits(), "{name} cols {cols} g {g} k {k} l {l}");
            } else {
                assert!(x.is_nan(), "{name} cols {cols} g {g}: wrote element {i} outside the rows");
            }
        }
    }

    #[test]
    fn vectorized_transpose_matches_scalar() {
        for (name, f) in paths() {
            for cols in COLS {
                for g in GS {
                    // Distinct values, including a NaN payload and -0.0, copied bit for bit.
                    let mut rows: Vec<f32> = (0..g * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
                    if let Some(x) = rows.get_mut(1) {
                        *x = f32::from_bits(0x7fc0_1234);
                    }
                    if let Some(x) = rows.get_mut(2) {
                        *x = -0.0;
                    }
                    check(name, f, &rows, cols, g);
                }
            }
        }
    }

    /// The rows are placed against an unreadable page, at the end and at the start of the
    /// readable ones, so any read outside `rows[..g * cols]` faults.
    #[cfg(unix)]
    #[test]
    fn vectorized_transpose_reads_only_the_rows() {
        // SAFETY: plain libc calls on a private anonymous mapping owned by this test.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let data = (1000 * GROUP * 4).div_ceil(page) * page;
        let len = data + 2 * page;
        // SAFETY: as above.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let base = base as *mut u8;
        // SAFETY: both guard pages lie inside the mapping.
        unsafe {
            assert_eq!(libc::mprotect(base as *mut libc::c_void, page, libc::PROT_NONE), 0);
            assert_eq!(libc::mprotect(base.add(page + data) as *mut libc::c_void, page, libc::PROT_NONE), 0);
        }
        // SAFETY: the mapping is `data + 2 * page` bytes long.
        let first = unsafe { base.add(page) } as *mut f32;
        for (name, f) in paths() {
            for cols in COLS {
                for g in GS {
                    let n = g * cols;
                    for at in [0, data / 4 - n] {
                        // SAFETY: `at..at + n` lies in the readable pages, which nothing else uses.
                        let rows = unsafe { std::slice::from_raw_parts_mut(first.add(at), n) };
                        for (i, x) in rows.iter_mut().enumerate() {
                            *x = i as f32;
                        }
                        check(name, f, rows, cols, g);
                    }
                }
            }
        }
        // SAFETY: unmaps the mapping made above; no slice into it is alive.
        unsafe { libc::munmap(base as *mut libc::c_void, len) };
    }
}

//! Working around the caches where they get in the way: software prefetch, for the two places
//! whose memory accesses the hardware prefetcher cannot foresee (the dense kernel's jumps from
//! one epoch's rows to the next's and the keyed scatter's random accesses to example states), and
//! streaming stores for output written once and not read back soon (the metrics table).

use std::mem::MaybeUninit;

/// Asks the CPU to start loading every cache line that `values` touches (a value that does not
/// start on a line boundary may straddle one more line than its size suggests). A hint only.
#[inline(always)]
pub(crate) fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    prefetch_lines::<{ std::arch::x86_64::_MM_HINT_T0 }, T>(values);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// [`prefetch`] into the second-level cache (`prefetcht1`), for lines needed a few thousand
/// cycles from now, which the first level would not keep. Called once or twice per group of
/// rows: not inlined, which keeps the kernel's loop smaller (inlined, the `f64` kernel is
/// measurably slower; `f32` is the same either way).
#[inline(never)]
pub(crate) fn prefetch_l2<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    prefetch_lines::<{ std::arch::x86_64::_MM_HINT_T1 }, T>(values);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_lines<const HINT: i32, T>(values: &[T]) {
    const LINE: usize = 64;
    let start = values.as_ptr() as usize;
    let end = start + std::mem::size_of_val(values);
    for line in (start / LINE * LINE..end).step_by(LINE) {
        // SAFETY: prefetching never faults, whatever the address.
        unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(line as *const i8) };
    }
}

/// Copies `src` over `dst` with stores that bypass the caches where the CPU has them (x86-64:
/// `movntdq`, 8-byte values two at a time). An ordinary store first reads its cache line from
/// memory, so writing a large table that way moves its bytes twice; streamed, once. Call
/// [`stream_fence`] before other threads read what was written.
#[inline]
pub(crate) fn stream_copy<T: Copy>(src: &[MaybeUninit<T>], dst: &mut [MaybeUninit<T>]) {
    assert_eq!(src.len(), dst.len(), "a streamed copy's source and destination differ in length");
    #[cfg(target_arch = "x86_64")]
    if std::mem::size_of::<T>() == 8 && std::mem::align_of::<T>() == 8 {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
        let n = src.len();
        // 8-byte values are 8-byte aligned: at most one plain store reaches 16-byte alignment.
        let head = usize::from(!(dst.as_ptr() as usize).is_multiple_of(16)).min(n);
        dst[..head].copy_from_slice(&src[..head]);
        let pairs = (n - head) / 2;
        // SAFETY: SSE2 is part of x86-64; `pairs` pairs of 8-byte values from `head` lie inside
        // both slices (lengths checked equal), `d` is 16-byte aligned (above), and the values
        // are plain bytes of a `Copy` type.
        unsafe {
            let s = src.as_ptr().add(head).cast::<__m128i>();
            let d = dst.as_mut_ptr().add(head).cast::<__m128i>();
            for j in 0..pairs {
                _mm_stream_si128(d.add(j), _mm_loadu_si128(s.add(j)));
            }
        }
        let done = head + 2 * pairs;
        dst[done..].copy_from_slice(&src[done..]);
        return;
    }
    dst.copy_from_slice(src);
}

/// Orders this thread's streaming stores before everything it does afterwards (x86-64 `sfence`;
/// a no-op elsewhere, where [`stream_copy`] stores plainly).
#[inline]
pub(crate) fn stream_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86-64; a fence has no operands.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length and both 8-byte alignments of the destination (the streamed middle, the
    /// plain head and tail), and a value size that is copied plainly.
    #[test]
    fn streamed_copies_write_every_value() {
        let src: Vec<MaybeUninit<i64>> = (0..40).map(|i| MaybeUninit::new(i * 7 - 3)).collect();
        for offset in 0..2 {
            for len in 0..=33 {
                let mut dst = vec![MaybeUninit::new(-1i64); offset + len + 1];
                stream_copy(&src[..len], &mut dst[offset..offset + len]);
                stream_fence();
                // SAFETY: all initialized (filled with -1, then copied over).
                let got: Vec<i64> = dst.iter().map(|v| unsafe { v.assume_init() }).collect();
                assert_eq!(&got[offset..offset + len], &(0..len as i64).map(|i| i * 7 - 3).collect::<Vec<_>>()[..]);
                assert!(got[..offset].iter().chain(&got[offset + len..]).all(|&v| v == -1), "wrote outside");
            }
        }
        let bytes: Vec<MaybeUninit<u8>> = (0..5).map(MaybeUninit::new).collect();
        let mut out = [MaybeUninit::new(0u8); 5];
        stream_copy(&bytes, &mut out);
        // SAFETY: `out` was initialized when it was made and `stream_copy` wrote initialized values.
        assert_eq!(out.map(|v| unsafe { v.assume_init() }), [0, 1, 2, 3, 4]);
    }
}

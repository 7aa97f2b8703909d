//! Software prefetch, for the two places whose memory accesses the hardware prefetcher cannot
//! foresee: the kernel's rows a few groups ahead within one call and the keyed scatter's random
//! accesses to example states.

/// Asks the CPU to start loading every cache line that `values` touches (a value that does not
/// start on a line boundary may straddle one more line than its size suggests). A hint only.
#[inline(always)]
pub(crate) fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64;
        let start = values.as_ptr() as usize;
        let end = start + std::mem::size_of_val(values);
        for line in (start / LINE * LINE..end).step_by(LINE) {
            // SAFETY: prefetching never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

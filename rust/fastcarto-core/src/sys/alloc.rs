//! Handing memory back to the system. (The per-example state lives in its own mapping on huge
//! pages: [`crate::sys::bigvec`].)
//!
//! Memory no longer needed (a consumed state, a memory-mapped file already read) goes back to
//! the system page by page ([`dont_need`]); large fresh buffers ask for huge pages
//! ([`advise_huge`]).

/// Returns memory freed by this process to the system. glibc's allocator keeps freed blocks of a
/// few MiB (the keyed state's chunks) in its heap for reuse, after raising its mmap threshold,
/// so a state copied chunk by chunk into its final layout would otherwise hold twice its size.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; it does not touch live blocks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The system's page size.
#[cfg(unix)]
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// Hands the whole pages inside addresses `start..end` back to the system (`MADV_DONTNEED`); a
/// page only partly inside stays. Unmapping costs the kernel time per page (≈ 5% of a long
/// read), so pieces of the range are released in parallel.
///
/// # Safety
/// `start..end` lies inside one mapping of this process whose bytes there no one reads again,
/// or may read again and find unchanged (a read-only file mapping faults them back in).
#[cfg(unix)]
pub(crate) unsafe fn dont_need(start: usize, end: usize) {
    use rayon::prelude::*;
    const PIECE: usize = 4 << 20;
    let page = page_size();
    let (start, end) = (start.next_multiple_of(page), end / page * page);
    if end > start {
        (start..end).step_by(PIECE).collect::<Vec<_>>().into_par_iter().for_each(|at| {
            // SAFETY: whole pages inside the caller's range (see above).
            unsafe { libc::madvise(at as *mut libc::c_void, PIECE.min(end - at), libc::MADV_DONTNEED) };
        });
    }
}

/// Asks for transparent huge pages over the whole 2 MiB pages inside `values` (a hint, honoured
/// in the `madvise` and `always` modes), before they are first written. A fresh 128 MB table
/// otherwise takes one page fault per 4 KiB page, whose kernel time can exceed the whole
/// computation of the table's examples.
pub(crate) fn advise_huge<T>(values: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let at = values.as_mut_ptr() as usize;
        let (start, end) = (at.next_multiple_of(HUGE), (at + std::mem::size_of_val(values)) / HUGE * HUGE);
        if end > start {
            // SAFETY: whole pages inside `values`, which this borrow owns; the advice changes no
            // contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = values;
}

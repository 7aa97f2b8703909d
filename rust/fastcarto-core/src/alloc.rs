//! Large buffers (per-example state, result columns) backed by transparent huge pages.
//!
//! Touching fresh memory costs a page fault per 4 KiB page; on virtual machines that is the
//! slowest part of building a map for millions of examples (measured here: 0.3–4 GB/s).
//! Asking the kernel for 2 MiB pages (`MADV_HUGEPAGE`, honoured when transparent huge pages are
//! in `madvise` or `always` mode) cuts the faults 512-fold. A hint only: it never fails.
//! Memory no longer needed (a consumed state, a memory-mapped file already read) goes back to
//! the system page by page ([`dont_need`]).

/// Below this a buffer is not worth advising.
const HUGE_MIN_BYTES: usize = 4 << 20;

/// An empty vector with room for `len` elements, advised to use huge pages.
pub(crate) fn with_capacity<T>(len: usize) -> std::result::Result<Vec<T>, std::collections::TryReserveError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)?;
    advise_huge(&mut v);
    Ok(v)
}

/// Advises the whole capacity of `v` (again, after it grew) to use huge pages.
pub(crate) fn advise_huge<T>(v: &mut Vec<T>) {
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes < HUGE_MIN_BYTES {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 2 << 20;
        let start = v.as_mut_ptr() as usize;
        let aligned = start.next_multiple_of(PAGE);
        let end = (start + bytes) / PAGE * PAGE;
        if end > aligned {
            // SAFETY: the range lies inside this vector's own, not yet initialized allocation;
            // MADV_HUGEPAGE only changes how the kernel backs it.
            unsafe { libc::madvise(aligned as *mut libc::c_void, end - aligned, libc::MADV_HUGEPAGE) };
        }
    }
}

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

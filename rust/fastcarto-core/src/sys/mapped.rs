//! Read-only memory maps of input files that survive the file being truncated underneath them.
//!
//! Reading a page of a shared file mapping that lies past the end of the file raises `SIGBUS`,
//! which kills the process. Another process can shrink a file at any moment (a writer that
//! restarts, `truncate`, a copy over it), and no check of the file's length before a read
//! closes that window: the truncation can land between the check and the read.
//!
//! So the reading is made safe instead: every [`GuardedMap`] registers its address range in a
//! fixed, lock-free table, and a `SIGBUS` handler, installed on the first map (and again if
//! something replaced it since), looks the faulting address up there. For an address inside a
//! registered map it maps zero-filled anonymous pages over the rest of the map (`MAP_FIXED`),
//! marks the map as cut, and returns: the faulting load is retried and reads zeros. The reader
//! finishes its pass over wrong (zero) bytes, and then [`GuardedMap::check`] turns the mark
//! into an error naming the file, whatever the pass returned. Faults at any other address go
//! to the handler that was installed before (Python's `faulthandler`, Rust's stack-overflow
//! handler, or the default action, which kills the process as before).
//! libwayland-server guards clients' shared-memory pools the same way (`wl_shm_buffer_begin_access`).
//!
//! What is guaranteed: on Linux and macOS, a mapped input (a `.npy` array, an Arrow IPC file or
//! stream) that shrinks while fastcarto reads it gives an error (`OSError` in Python), never a
//! signal, and no result computed from the cut file is returned. What is not: bytes that another
//! process rewrites in place without shrinking the file are read as they are at that moment
//! (they are not a fault, only different data); on other Unix systems the map is unguarded; and
//! a reader must call `check` after its pass (every reader in this crate does).
//! Cost: one table update per file opened and one `fstat` per pass; nothing per page or batch.

use crate::error::{Error, Result};
use memmap2::Mmap;
use std::path::{Path, PathBuf};

/// A read-only map of a whole file, guarded against the file shrinking while it is read.
pub struct GuardedMap {
    // Declared before `guard`, so the map is gone before its range leaves the table.
    map: Mmap,
    guard: imp::Registration,
    file: std::fs::File,
    path: PathBuf,
}

impl GuardedMap {
    /// Maps `file` (opened from `path`) read-only.
    pub fn map(file: &std::fs::File, path: &Path) -> Result<Self> {
        // SAFETY: the map is read-only and private to this struct. A file that shrinks while it
        // is mapped would make reads past its new end fault; the registration below turns those
        // faults into zero pages and a mark that `check` reports (module docs).
        let map = unsafe { Mmap::map(file) }.map_err(|source| Error::Io { path: path.into(), source })?;
        let guard = imp::Registration::new(map.as_ptr() as usize, map.len());
        let file = file.try_clone().map_err(|source| Error::Io { path: path.into(), source })?;
        Ok(GuardedMap { map, guard, file, path: path.into() })
    }

    /// Whether the file has been truncated since it was mapped: a read faulted past its end, or
    /// it is now shorter than the map. The second test catches what no fault reveals: a cut
    /// inside a page leaves the rest of that page readable as zeros (a stream then reads zeros
    /// where its next message should be), and pages never touched after the cut never fault.
    pub fn cut(&self) -> bool {
        self.guard.cut() || self.file.metadata().is_ok_and(|m| m.len() < self.map.len() as u64)
    }

    /// An error naming the file if it was cut while mapped; call after each pass over the map.
    pub fn check(&self) -> Result<()> {
        if self.cut() { Err(truncated(&self.path)) } else { Ok(()) }
    }

    /// `result` of a pass over the map, unless the file was cut during it: then what the pass
    /// saw (zeros past the cut) is no result, and the error says so whatever the pass returned.
    pub fn checked<T>(&self, result: Result<T>) -> Result<T> {
        self.check()?;
        result
    }
}

impl std::ops::Deref for GuardedMap {
    type Target = Mmap;
    fn deref(&self) -> &Mmap {
        &self.map
    }
}

/// The error for a file cut while it was read.
pub fn truncated(path: &Path) -> Error {
    let source = std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the file was truncated by another process while fastcarto read it; \
         read it again once whatever writes it has finished",
    );
    Error::Io { path: path.into(), source }
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "macos"))]
mod imp {
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

    /// Maps registered at once; a map opened while the table is full is unguarded (a process
    /// never holds this many input files mapped: readers map one file at a time, or one per epoch).
    const SLOTS: usize = 4096;

    struct Slot {
        /// Claimed by a registration.
        used: AtomicBool,
        /// The registered range `start..end`; `start == 0` while (un)registering.
        start: AtomicUsize,
        end: AtomicUsize,
        /// A fault was answered with zero pages.
        cut: AtomicBool,
    }

    #[allow(clippy::declare_interior_mutable_const)]
    const FREE: Slot = Slot {
        used: AtomicBool::new(false),
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        cut: AtomicBool::new(false),
    };
    static TABLE: [Slot; SLOTS] = [FREE; SLOTS];

    /// The `SIGBUS` action that was installed before ours (leaked: the handler may read it at
    /// any time, and each install replaces the pointer rather than the value behind it).
    static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    pub(super) struct Registration(Option<usize>);

    impl Registration {
        pub(super) fn new(start: usize, len: usize) -> Self {
            if len == 0 {
                return Registration(None);
            }
            install();
            let slot = TABLE
                .iter()
                .position(|s| s.used.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok());
            if let Some(i) = slot {
                let s = &TABLE[i];
                s.cut.store(false, Ordering::Relaxed);
                s.end.store(start + len, Ordering::Relaxed);
                s.start.store(start, Ordering::Release);
            }
            Registration(slot)
        }

        pub(super) fn cut(&self) -> bool {
            self.0.is_some_and(|i| TABLE[i].cut.load(Ordering::Acquire))
        }
    }

    impl Drop for Registration {
        fn drop(&mut self) {
            if let Some(i) = self.0 {
                TABLE[i].start.store(0, Ordering::Release);
                TABLE[i].used.store(false, Ordering::Release);
            }
        }
    }

    /// Installs [`on_sigbus`] unless it is the current `SIGBUS` action.
    fn install() {
        let _lock = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        let handler = on_sigbus as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
        // SAFETY: `sigaction` is plain C data, for which all-zero bytes are a valid value.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: sigaction with a null new action only reads the current one into `current`.
        let read = unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut current) };
        if read != 0 || current.sa_sigaction == handler as libc::sighandler_t {
            return;
        }
        // SAFETY: a zeroed sigaction is a valid value; the handler only calls async-signal-safe
        // functions (`mmap`, `sigaction`, and the previous handler, which was installed to be
        // called from a signal); the previous action is leaked so that it outlives any call.
        unsafe {
            let mut ours: libc::sigaction = std::mem::zeroed();
            ours.sa_sigaction = handler as libc::sighandler_t;
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigemptyset(&mut ours.sa_mask);
            let previous = Box::into_raw(Box::new(current));
            PREVIOUS.store(previous, Ordering::Release);
            libc::sigaction(libc::SIGBUS, &ours, std::ptr::null_mut());
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    unsafe fn fault_address(info: *const libc::siginfo_t) -> usize {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
        unsafe { (*info).si_addr() as usize }
    }

    #[cfg(target_os = "macos")]
    unsafe fn fault_address(info: *const libc::siginfo_t) -> usize {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
        unsafe { (*info).si_addr as usize }
    }

    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: see `fault_address`; `info` is never null for SA_SIGINFO handlers.
        let addr = if info.is_null() { 0 } else { unsafe { fault_address(info) } };
        for slot in &TABLE {
            let start = slot.start.load(Ordering::Acquire);
            let end = slot.end.load(Ordering::Relaxed);
            if start == 0 || addr < start || addr >= end {
                continue;
            }
            // SAFETY: sysconf is async-signal-safe in practice (a constant read).
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
            let from = addr / page * page;
            let to = end.next_multiple_of(page);
            // SAFETY: replaces pages of a read-only file map that this process owns (the
            // registration lives as long as the map) with zero pages; nothing else lives there.
            let zeros = unsafe {
                libc::mmap(
                    from as *mut libc::c_void,
                    to - from,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if zeros != libc::MAP_FAILED {
                slot.cut.store(true, Ordering::Release);
                return;
            }
        }
        // Not a fault in a guarded map: what would have happened without us.
        let previous = PREVIOUS.load(Ordering::Acquire);
        // SAFETY: `previous` is null or a leaked, never freed sigaction.
        let Some(previous) = (unsafe { previous.as_ref() }) else { return default(sig) };
        let h = previous.sa_sigaction;
        if h == libc::SIG_DFL || h == libc::SIG_IGN {
            return default(sig);
        }
        if previous.sa_flags & libc::SA_SIGINFO != 0 {
            // SAFETY: installed as an SA_SIGINFO handler, so it has this signature.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(h) };
            f(sig, info, ctx);
        } else {
            // SAFETY: installed as a plain handler, so it has this signature.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
            f(sig);
        }
    }

    /// Restores the default action; the faulting instruction then runs again and the signal
    /// takes its course (a hardware fault cannot be ignored).
    fn default(sig: libc::c_int) {
        // SAFETY: sigaction is async-signal-safe; a zeroed action with SIG_DFL is valid.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
mod imp {
    /// Unguarded: on Windows a mapped file cannot be truncated; elsewhere see the module docs.
    pub(super) struct Registration;
    impl Registration {
        pub(super) fn new(_start: usize, _len: usize) -> Self {
            Registration
        }
        pub(super) fn cut(&self) -> bool {
            false
        }
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "macos")))]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_cut_while_mapped_reads_zeros_and_reports_it() {
        let path = std::env::temp_dir().join(format!("fastcarto-cut-{}.bin", std::process::id()));
        let page = crate::sys::alloc::page_size();
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![7u8; 4 * page]).unwrap();
        drop(f);
        let file = std::fs::File::open(&path).unwrap();
        let map = GuardedMap::map(&file, &path).unwrap();
        assert_eq!(map[3 * page], 7);
        map.check().unwrap();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(page as u64).unwrap();
        // The file is shorter than the map: cut, even before any read faults.
        assert!(map.cut());
        // The first page is still the file's; the rest faulted and reads zeros.
        let seen: Vec<u8> = (0..4).map(|p| map[p * page + 1]).collect();
        assert_eq!(seen, [7, 0, 0, 0]);
        let err = map.check().unwrap_err().to_string();
        assert!(err.contains("truncated by another process"), "{err}");
        assert!(map.checked(Ok(1)).is_err());
        drop(map);
        std::fs::remove_file(&path).unwrap();
    }
}

//! Thread pools: sized by the caller's `threads`, else `FASTCARTO_NUM_THREADS`, else all cores;
//! small work runs on the caller's own thread.
//!
//! Pools are cached per size and per process: a child created by `fork` (multiprocessing, Dask
//! workers) sees a different process id and builds its own, instead of waiting forever on
//! worker threads that did not survive the fork. Rayon's global pool is never used.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Environment variable read when no thread count is given.
pub const THREADS_ENV: &str = "FASTCARTO_NUM_THREADS";

/// Below this many rows a call runs on one thread: splitting costs more than it saves.
pub const MIN_PARALLEL_ROWS: usize = 1 << 15;

/// Resolves the number of worker threads.
pub fn thread_count(threads: Option<usize>) -> Result<usize> {
    if let Some(t) = threads {
        return if t == 0 { Err(Error::invalid("threads must be at least 1")) } else { Ok(t) };
    }
    // Set but empty is unset, as for OMP_NUM_THREADS and kin.
    if let Ok(v) = std::env::var(THREADS_ENV)
        .map(|v| v.trim().to_owned())
        .and_then(|v| if v.is_empty() { Err(std::env::VarError::NotPresent) } else { Ok(v) })
    {
        return match v.parse::<usize>() {
            Ok(t) if t > 0 => Ok(t),
            _ => Err(Error::invalid(format!("{THREADS_ENV}={v:?} is not a positive integer"))),
        };
    }
    Ok(cores())
}

/// The cores this process may use, asked once: the standard library reads the cgroup quota
/// files on every call (a dozen system calls), and small calls ask every time.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

type PoolCache = Mutex<(u32, HashMap<usize, Arc<rayon::ThreadPool>>)>;

fn pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<PoolCache> = OnceLock::new();
    let cache = POOLS.get_or_init(|| Mutex::new((std::process::id(), HashMap::new())));
    let mut guard = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let pid = std::process::id();
    if guard.0 != pid {
        // Forked: the cached pools' threads belong to the parent. Forget them without dropping
        // (dropping would try to signal threads that do not exist in this process).
        std::mem::forget(std::mem::take(&mut guard.1));
        guard.0 = pid;
    }
    if let Some(p) = guard.1.get(&threads) {
        return Ok(p.clone());
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("fastcarto-{i}"))
        .build()
        .map_err(|e| Error::invalid(format!("could not start {threads} threads: {e}")))?;
    let p = Arc::new(p);
    guard.1.insert(threads, p.clone());
    Ok(p)
}

/// Runs `f` on the default pool, falling back to all cores if `FASTCARTO_NUM_THREADS` is
/// malformed: for work whose result does not depend on the thread count (merging, building
/// tables), so a bad variable is reported by the calls that take `threads`, not here.
pub fn run_default<R: Send>(rows: usize, f: impl FnOnce() -> R + Send) -> R {
    if rows < MIN_PARALLEL_ROWS {
        return on_this_thread(f);
    }
    let t = thread_count(None).unwrap_or_else(|_| cores());
    match pool(t) {
        Ok(p) => p.install(f),
        Err(_) => on_this_thread(f),
    }
}

/// Runs small work on the calling thread, as the only worker of a pool of its own (its
/// parallel iterators then run in sequence, and rayon's global pool stays unused). Handing it
/// to a one-worker pool instead would cost two thread switches per call, more than a small
/// `Accumulator` minibatch update itself.
fn on_this_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        // Already a worker of one of our pools, whose threads run any parallel work in `f`.
        return f();
    }
    thread_local! {
        static OWN: Option<rayon::ThreadPool> =
            rayon::ThreadPoolBuilder::new().num_threads(1).use_current_thread().build().ok();
    }
    OWN.with(|own| match own {
        Some(p) => p.install(f),
        None => match pool(1) {
            Ok(p) => p.install(f),
            Err(_) => f(),
        },
    })
}

/// Runs `f` on a pool of `threads` workers (one worker when `rows` is small).
pub fn run<R: Send>(threads: Option<usize>, rows: usize, f: impl FnOnce() -> R + Send) -> Result<R> {
    let t = thread_count(threads)?;
    if rows < MIN_PARALLEL_ROWS {
        return Ok(on_this_thread(f));
    }
    // Large work on one thread too goes to a pool's worker: a dense compute runs slower on the
    // caller's thread, and the hand-off costs nothing at that size.
    Ok(pool(t)?.install(f))
}

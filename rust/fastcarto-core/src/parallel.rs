//! Thread pools: sized by the caller's `threads`, else `FASTCARTO_NUM_THREADS`, else all cores.
//!
//! A pool is built per call and dropped afterwards rather than kept global, so a process that
//! forks (multiprocessing, Dask workers) never inherits a pool whose threads did not survive.

use crate::error::{Error, Result};

/// Environment variable read when no thread count is given.
pub const THREADS_ENV: &str = "FASTCARTO_NUM_THREADS";

/// Below this many rows a call runs on the calling thread: spawning costs more than it saves.
pub const MIN_PARALLEL_ROWS: usize = 1 << 15;

/// Resolves the number of worker threads.
pub fn thread_count(threads: Option<usize>) -> Result<usize> {
    if let Some(t) = threads {
        return if t == 0 { Err(Error::invalid("threads must be at least 1")) } else { Ok(t) };
    }
    if let Ok(v) = std::env::var(THREADS_ENV) {
        return match v.trim().parse::<usize>() {
            Ok(t) if t > 0 => Ok(t),
            _ => Err(Error::invalid(format!("{THREADS_ENV}={v:?} is not a positive integer"))),
        };
    }
    Ok(std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runs `f` on a pool of `threads` workers (inline when one thread, or when `rows` is small).
pub fn run<R: Send>(threads: Option<usize>, rows: usize, f: impl FnOnce() -> R + Send) -> Result<R> {
    let t = thread_count(threads)?;
    let t = if rows < MIN_PARALLEL_ROWS { 1 } else { t };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(t)
        .thread_name(|i| format!("fastcarto-{i}"))
        .build()
        .map_err(|e| Error::invalid(format!("could not start {t} threads: {e}")))?;
    Ok(pool.install(f))
}

//! What this machine's memory alone costs for a long-table read, with no metric computed:
//! `cargo run --release --example memory_floor -- FILE [EXAMPLES] [EPOCHS] [THREADS]`
//! (`FILE`: the Arrow IPC file of `benches/bench_readers.py ipc`, or any large file).
//!
//! Three passes that any reader of that file must make, each timed on its own (best of five):
//! - **file**: map the file and load one byte of every cache line, threads over 4 MiB pieces,
//!   then unmap it (the page-table work of a fresh mapping is most of it; fastcarto maps the
//!   file the same way and reads every byte once);
//! - **state**: `EPOCHS` × `EXAMPLES` read-modify-writes of one 64-byte state each (8 `f64`
//!   adds), ids shuffled per epoch, in batches of 65,536 rows already routed to chunks of
//!   65,536 states (routing not timed), threads over chunks, the state 16 rows ahead
//!   prefetched — the update every row makes, with nothing computed. Timed with routed rows of
//!   4 bytes (the slot alone), 32 and 64 bytes (a slot and an observation: fastcarto's rows are
//!   64), since reading the rows competes with the state for memory;
//! - **table**: 16 columns of `EXAMPLES` `f64` written in parallel into fresh memory (the
//!   metrics table; "fresh" is the first allocation, "reused" the best of the later ones,
//!   which the allocator may serve from memory already touched).
//!
//! Their sum bounds how fast the read can be on this machine, whatever the code does.

use rayon::prelude::*;
use std::time::{Duration, Instant};

const BATCH: usize = 1 << 16;
const CHUNK: usize = 1 << 16;
const PREFETCH: usize = 16;
const COLUMNS: usize = 16;

fn best(mut f: impl FnMut() -> Duration) -> (Duration, Duration) {
    let first = f();
    let rest = (0..4).map(|_| f()).min().unwrap_or(first);
    (first, rest.min(first))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn file_pass(path: &str) -> Duration {
    let file = std::fs::File::open(path).expect("an existing file");
    let t = Instant::now();
    // SAFETY: read-only map of a file nobody truncates while this runs.
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("mappable");
    let sum: u64 = map.par_chunks(4 << 20).map(|piece| piece.iter().step_by(64).map(|&b| b as u64).sum::<u64>()).sum();
    drop(map);
    std::hint::black_box(sum);
    t.elapsed()
}

/// One cache line of state.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f64; 8]);

/// The rows of every batch (each epoch a shuffle of `0..n`), routed to their chunks; a row is
/// `W` words, the first its slot's offset within the chunk.
fn routed_batches<const W: usize>(n: usize, epochs: usize) -> Vec<Vec<Vec<[u32; W]>>> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let chunks = n.div_ceil(CHUNK);
    let mut ids: Vec<u32> = (0..n as u32).collect();
    let mut batches = Vec::new();
    for _ in 0..epochs {
        for i in (1..n).rev() {
            ids.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        for batch in ids.chunks(BATCH) {
            let mut routed = vec![Vec::new(); chunks];
            for &id in batch {
                routed[id as usize / CHUNK].push([id % CHUNK as u32; W]);
            }
            batches.push(routed);
        }
    }
    batches
}

#[inline(always)]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((value as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

fn state_pass<const W: usize>(state: &mut [Line], batches: &[Vec<Vec<[u32; W]>>]) -> Duration {
    let t = Instant::now();
    for batch in batches {
        state.par_chunks_mut(CHUNK).zip(batch.par_iter()).for_each(|(chunk, rows)| {
            for (k, &r) in rows.iter().enumerate() {
                if let Some(&ahead) = rows.get(k + PREFETCH) {
                    prefetch(&chunk[ahead[0] as usize]);
                }
                for (j, v) in chunk[r[0] as usize].0.iter_mut().enumerate() {
                    *v += 1.0 + j as f64;
                }
            }
        });
    }
    t.elapsed()
}

fn table_pass(n: usize) -> Duration {
    let t = Instant::now();
    let columns: Vec<Vec<f64>> = (0..COLUMNS)
        .into_par_iter()
        .map(|c| {
            let mut col = Vec::with_capacity(n);
            col.extend((0..n).map(|i| (i * c) as f64));
            col
        })
        .collect();
    let elapsed = t.elapsed();
    std::hint::black_box(&columns);
    elapsed
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().expect("usage: memory_floor FILE [EXAMPLES] [EPOCHS] [THREADS]");
    let arg = |i: usize, default: usize| args.get(i).map_or(default, |a| a.parse().expect("a number"));
    let (n, epochs, threads) = (arg(1, 1_000_000), arg(2, 10), arg(3, 2));
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("one pool");

    let (file_first, file_best) = best(|| file_pass(path));
    let mut state = vec![Line([0.0; 8]); n.div_ceil(CHUNK) * CHUNK];
    let mut state_with = |bytes: usize| -> Duration {
        fn time<const W: usize>(state: &mut [Line], n: usize, epochs: usize) -> Duration {
            let routed = routed_batches::<W>(n, epochs);
            best(|| state_pass(state, &routed)).1
        }
        match bytes {
            4 => time::<1>(&mut state, n, epochs),
            32 => time::<8>(&mut state, n, epochs),
            _ => time::<16>(&mut state, n, epochs),
        }
    };
    let (state_4, state_32, state_64) = (state_with(4), state_with(32), state_with(64));
    let (table_fresh, table_reused) = best(|| table_pass(n));
    println!("{threads} threads, {n} examples x {epochs} epochs");
    println!("file   {:7.1} ms  (first {:.1} ms)", ms(file_best), ms(file_first));
    println!(
        "state  {:7.1} ms with 64-byte rows ({:.1} ms with 32, {:.1} ms with 4)",
        ms(state_64),
        ms(state_32),
        ms(state_4)
    );
    println!("table  {:7.1} ms fresh, {:.1} ms reused", ms(table_fresh), ms(table_reused));
    let floor = file_best + state_64;
    println!(
        "sum    {:7.1} ms (64-byte rows, fresh table), {:.1} ms (reused)",
        ms(floor + table_fresh),
        ms(floor + table_reused)
    );
}

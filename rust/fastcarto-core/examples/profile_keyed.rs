//! Profiling driver for keyed (long-table) reads: `cargo run --release --example profile_keyed
//! -- 30000000 4 2` (examples, epochs, threads; `FIRST_EPOCH=5000` starts past the packed
//! state). Ids are shuffled within each epoch, batches of 2^20 rows, two float32 logits per
//! row; prints the time of each epoch's fold (batch generation not counted). `SPARSE=1` spreads
//! the ids over a range 10^6 times wider (they stay hashed).

use arrow_array::Int64Array;
use fastcarto_core::KeyedState;
use fastcarto_core::read::long::{Epochs, Ids, LongBatch, Outputs};
use fastcarto_core::{Kind, NanPolicy};
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("a number"));
    let n = args.next().unwrap_or(30_000_000);
    let epochs = args.next().unwrap_or(4);
    let threads = args.next().unwrap_or(2);
    let first: usize = std::env::var("FIRST_EPOCH").map_or(0, |v| v.parse().unwrap());
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().unwrap();
    let mut x = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let spread: i64 = if std::env::var_os("SPARSE").is_some() { 1_000_003 } else { 1 };
    let mut ids: Vec<i64> = (0..n as i64).map(|i| i * spread).collect();
    let mut keyed = KeyedState::new(Kind::Logits, NanPolicy::Raise);
    let start = Instant::now();
    for e in 0..epochs {
        for i in (1..n).rev() {
            ids.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        let mut folding = Duration::ZERO;
        for rows in ids.chunks(1 << 20) {
            let logits: Vec<f32> =
                rows.iter().flat_map(|&id| [(id % 7) as f32 * 0.3, (next() % 5) as f32 * 0.2]).collect();
            let batch = LongBatch {
                rows: rows.len(),
                epochs: Epochs::Constant((first + e) as u32),
                ids: Ids::Int(Int64Array::from(rows.to_vec())),
                labels: rows.iter().map(|id| id % 2).collect::<Vec<_>>().into(),
                outputs: Outputs::F32(logits.into()),
                n_classes: 2,
                lines: None,
            };
            let t = Instant::now();
            keyed.fold(&batch, &|_| true).unwrap();
            folding += t.elapsed();
        }
        println!("epoch {e}: {:.3} s ({:.1}M rows/s)", folding.as_secs_f64(), n as f64 / folding.as_secs_f64() / 1e6);
    }
    if let Ok(rollup) = std::fs::read_to_string("/proc/self/smaps_rollup") {
        // Resident memory and how much of it is on huge pages (Linux only).
        for line in rollup.lines().filter(|l| l.starts_with("Rss") || l.starts_with("AnonHugePages")) {
            println!("{line}");
        }
    }
    let t = Instant::now();
    let (state, _) = keyed.into_state().unwrap();
    println!(
        "into_state {:.3} s, {} examples; total {:.1} s",
        t.elapsed().as_secs_f64(),
        state.n_examples(),
        start.elapsed().as_secs_f64()
    );
}

//! Profiling driver: `cargo run --release --example profile_dense -- logits 1`
//! (kind, threads). Generates E=10, N=1M, C=10 float32 outputs and times each stage.

use fastcarto_core::{FinalizeOptions, Kind, NanPolicy, Task, compute_dense, finalize};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let kind: Kind = args.next().unwrap_or_else(|| "logits".into()).parse().expect("kind");
    let threads: usize = args.next().map_or(1, |t| t.parse().expect("threads"));
    let n: usize = std::env::var("N").map_or(1_000_000, |v| v.parse().unwrap());
    let (e, c) = (10usize, 10usize);
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut data: Vec<f32> = (0..e * n * c).map(|_| (next() - 0.5) * 6.0).collect();
    if kind == Kind::Probs {
        for row in data.chunks_mut(c) {
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let s: f32 = row
                .iter_mut()
                .map(|v| {
                    *v = (*v - m).exp();
                    *v
                })
                .sum();
            row.iter_mut().for_each(|v| *v /= s);
        }
    }
    let labels: Vec<i64> = (0..n).map(|i| (i % c) as i64).collect();
    let arr = ndarray::ArrayView3::from_shape((e, n, c), &data).expect("shape");
    let epochs: Vec<usize> = (0..e).collect();
    for _ in 0..std::env::var("REPS").map_or(3, |r| r.parse().unwrap()) {
        let t = Instant::now();
        let state = compute_dense(
            arr,
            &epochs,
            &labels,
            Task::MultiClass { n_classes: c as u32 },
            kind,
            NanPolicy::Raise,
            Some(threads),
        )
        .expect("compute");
        let t1 = t.elapsed();
        let t = Instant::now();
        let table = finalize(&state, None, FinalizeOptions::default()).expect("finalize");
        let t2 = t.elapsed();
        println!(
            "compute {:.3}s ({:.1} M rows/s)  finalize {:.3}s  rows {}",
            t1.as_secs_f64(),
            (e * n) as f64 / t1.as_secs_f64() / 1e6,
            t2.as_secs_f64(),
            table.num_rows()
        );
    }
}

//! Profiling driver for the datamodels solver: `cargo run --release --example profile_datamodels
//! -- DIR THREADS [STEP]`, where `DIR` holds `train.*` and `val.*` statistics as raw
//! little-endian files (`.hdr` = `[n_rows, n_cols, n_targets]` u64, `.xtx` u32, `.xty`, `.sy`,
//! `.syy` f64), as `Stats::parts` gives them, e.g. for the first 4,500 models as training and
//! the rest as validation models (`fit`'s split of 5,000):
//!
//! ```text
//! for name, rows in [("train", slice(0, 4500)), ("val", slice(4500, None))]:
//!     n, xtx, xty, sy, syy = fdm.statistics(masks[rows], outputs[rows]).parts()
//!     np.array([n, *xty.shape[:1], xty.shape[1]], "<u8").tofile(f"{d}/{name}.hdr")
//!     for ext, a in [("xtx", xtx), ("xty", xty), ("sy", sy), ("syy", syy)]:
//!         a.tofile(f"{d}/{name}.{ext}")
//! ```
//!
//! `STEP` defaults to `FitOptions`'s. Environment: `PATH_TOL` sets `path_tol`, `PATH_F64` runs
//! the path in `f64`, `SAVE=file` writes `λ`, the weights and the biases as raw `f64`. Prints
//! the fit's time, the median number of non-zero weights and the largest gap.

use fastcarto_core::datamodels::{FitOptions, Stats, fit};
use ndarray::Array2;
use std::time::Instant;

fn read<T: Copy>(path: &str, len: usize) -> Vec<T> {
    let bytes = std::fs::read(path).expect(path);
    assert_eq!(bytes.len(), len * std::mem::size_of::<T>(), "{path}");
    let mut out = Vec::with_capacity(len);
    // SAFETY: `bytes` holds exactly `len` values of the plain-old-data type `T`; `read_unaligned`
    // copes with the byte buffer's alignment.
    unsafe {
        let p = bytes.as_ptr().cast::<T>();
        for i in 0..len {
            out.push(p.add(i).read_unaligned());
        }
    }
    out
}

fn load(dir: &str, name: &str) -> Stats {
    let hdr: Vec<u64> = read(&format!("{dir}/{name}.hdr"), 3);
    let (rows, n, k) = (hdr[0], hdr[1] as usize, hdr[2] as usize);
    let xtx = Array2::from_shape_vec((n, n), read(&format!("{dir}/{name}.xtx"), n * n)).unwrap();
    let xty = Array2::from_shape_vec((n, k), read(&format!("{dir}/{name}.xty"), n * k)).unwrap();
    Stats::from_parts(rows, xtx, xty, read(&format!("{dir}/{name}.sy"), k), read(&format!("{dir}/{name}.syy"), k))
        .unwrap()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("DIR");
    let threads: usize = args.next().map_or(1, |t| t.parse().expect("threads"));
    let step: usize = args.next().map_or(FitOptions::default().step, |t| t.parse().expect("step"));
    let (train, val) = (load(&dir, "train"), load(&dir, "val"));
    let mut opts = FitOptions { step, ..FitOptions::default() };
    if let Ok(t) = std::env::var("PATH_TOL") {
        opts.path_tol = t.parse().unwrap();
    }
    opts.path_f64 = std::env::var("PATH_F64").is_ok();
    let t0 = Instant::now();
    let f = fit(&train, &val, &opts, Some(threads)).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let nnz: Vec<usize> =
        (0..f.weights.ncols()).map(|t| f.weights.column(t).iter().filter(|v| **v != 0.0).count()).collect();
    let mut sorted = nnz.clone();
    sorted.sort_unstable();
    println!(
        "fit {secs:.3} s on {threads} threads; median nnz {}; not converged {}; max gap {:.3e}",
        sorted[sorted.len() / 2],
        f.converged.iter().filter(|c| !**c).count(),
        f.gap.iter().cloned().fold(0.0, f64::max)
    );
    if let Ok(path) = std::env::var("SAVE") {
        let mut bytes = Vec::new();
        for v in f.lam.iter().chain(f.weights.iter()).chain(f.bias.iter()) {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        std::fs::write(path, bytes).unwrap();
    }
}

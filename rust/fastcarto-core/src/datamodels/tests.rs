//! Statistics against plain sums, and the solver against a plain coordinate descent on the
//! standardized masks themselves.

#![allow(clippy::needless_range_loop)] // index loops read like the formulas they check

use super::*;
use ndarray::{Array2, s};
use proptest::prelude::*;

/// A small xorshift: the tests need varied, reproducible data, not quality randomness.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

fn random(m: usize, n: usize, k: usize, seed: u64) -> (Array2<u8>, Array2<f64>) {
    let mut next = xorshift(seed);
    let x = Array2::from_shape_fn((m, n), |_| u8::from(next().is_multiple_of(2)));
    let w: Vec<f64> =
        (0..n * k).map(|_| if next().is_multiple_of(4) { (next() % 1000) as f64 / 250.0 - 2.0 } else { 0.0 }).collect();
    let y = Array2::from_shape_fn((m, k), |(r, t)| {
        let signal: f64 = (0..n).map(|j| f64::from(x[(r, j)]) * w[j * k + t]).sum();
        signal + (next() % 1000) as f64 / 500.0 - 1.0
    });
    (x, y)
}

fn stats_of(x: &Array2<u8>, y: &Array2<f64>) -> Stats {
    let mut s = Stats::new(x.ncols(), y.ncols()).unwrap();
    s.update(Masks::Bytes(x.view()), y.view(), Some(2)).unwrap();
    s
}

fn packbits(x: &Array2<u8>, little: bool) -> Array2<u8> {
    Array2::from_shape_fn((x.nrows(), x.ncols().div_ceil(8)), |(r, b)| {
        (0..8)
            .filter(|i| b * 8 + i < x.ncols() && x[(r, b * 8 + i)] != 0)
            .fold(0u8, |acc, i| acc | if little { 1 << i } else { 0x80 >> i })
    })
}

/// Plain coordinate descent on explicitly standardized masks, residual kept as a vector.
fn reference(x: &Array2<u8>, y: &[f64], lam: f64) -> (Vec<f64>, f64) {
    let (m, n) = x.dim();
    let mf = m as f64;
    let mut xs = Array2::<f64>::zeros((m, n));
    let mut scale = vec![0.0; n];
    let mut mean = vec![0.0; n];
    for j in 0..n {
        let col: Vec<f64> = (0..m).map(|r| f64::from(x[(r, j)])).collect();
        mean[j] = col.iter().sum::<f64>() / mf;
        scale[j] = (col.iter().map(|v| (v - mean[j]).powi(2)).sum::<f64>() / mf).sqrt();
        if scale[j] > 0.0 {
            for r in 0..m {
                xs[(r, j)] = (col[r] - mean[j]) / scale[j];
            }
        }
    }
    let ybar = y.iter().sum::<f64>() / mf;
    let mut res: Vec<f64> = y.iter().map(|v| v - ybar).collect();
    let mut w = vec![0.0; n];
    for _ in 0..20_000 {
        let mut dmax = 0.0f64;
        for j in 0..n {
            let col = xs.column(j);
            let norm: f64 = col.iter().map(|v| v * v).sum::<f64>() / mf;
            if norm == 0.0 {
                continue;
            }
            let rho: f64 = col.iter().zip(&res).map(|(a, b)| a * b).sum::<f64>() / mf + norm * w[j];
            let new = solve_soft(rho, lam) / norm;
            let d = new - w[j];
            if d != 0.0 {
                res.iter_mut().zip(col.iter()).for_each(|(r, c)| *r -= d * c);
                w[j] = new;
                dmax = dmax.max(d.abs());
            }
        }
        if dmax < 1e-15 {
            break;
        }
    }
    let beta: Vec<f64> = (0..n).map(|j| if scale[j] > 0.0 { w[j] / scale[j] } else { 0.0 }).collect();
    let bias = ybar - beta.iter().zip(&mean).map(|(b, m)| b * m).sum::<f64>();
    (beta, bias)
}

fn solve_soft(z: f64, lam: f64) -> f64 {
    z.signum() * (z.abs() - lam).max(0.0)
}

fn tight() -> FitOptions {
    FitOptions { tol: 1e-13, path_tol: 1e-13, max_iter: 100_000, ..FitOptions::default() }
}

#[test]
fn statistics_are_the_plain_sums() {
    let (x, y) = random(150, 13, 3, 1);
    let st = stats_of(&x, &y);
    let (rows, xtx, xty, sy, syy) = st.parts();
    assert_eq!(rows, 150);
    let xf = x.mapv(f64::from);
    assert_eq!(xtx.mapv(f64::from), xf.t().dot(&xf));
    let direct = xf.t().dot(&y);
    assert!(xty.iter().zip(direct.iter()).all(|(a, b)| (a - b).abs() < 1e-9));
    for t in 0..3 {
        assert!((sy[t] - y.column(t).sum()).abs() < 1e-9);
        assert!((syy[t] - y.column(t).mapv(|v| v * v).sum()).abs() < 1e-9);
    }
}

#[test]
fn chunks_shards_and_packing_agree() {
    let (x, y) = random(9000, 21, 2, 2);
    let whole = stats_of(&x, &y);
    let mut a = stats_of(&x.slice(s![..4000, ..]).to_owned(), &y.slice(s![..4000, ..]).to_owned());
    a.merge(&stats_of(&x.slice(s![4000.., ..]).to_owned(), &y.slice(s![4000.., ..]).to_owned())).unwrap();
    assert_eq!(whole.parts().1, a.parts().1);
    for little in [false, true] {
        let packed = packbits(&x, little);
        let mut p = Stats::new(21, 2).unwrap();
        let masks = Masks::Packed { rows: packed.view(), n_cols: 21, little };
        p.update(masks, y.mapv(|v| v as f32).view(), None).unwrap();
        assert_eq!(p.parts().1, whole.parts().1);
    }
}

#[test]
fn bad_input_is_an_error_and_leaves_the_statistics_alone() {
    let (x, mut y) = random(20, 5, 2, 3);
    let mut st = Stats::new(5, 2).unwrap();
    assert!(st.update(Masks::Bytes(x.view()), y.slice(s![..19, ..]), None).is_err());
    y[(7, 1)] = f64::NAN;
    let err = st.update(Masks::Bytes(x.view()), y.view(), None).unwrap_err().to_string();
    assert!(err.contains("model 7, target 1"), "{err}");
    assert_eq!(st.n_rows(), 0);
    assert!(Stats::new(0, 3).is_err());
    assert!(st.merge(&Stats::new(4, 2).unwrap()).is_err());
    let packed = packbits(&x, false);
    assert!(st.update(Masks::Packed { rows: packed.view(), n_cols: 9, little: false }, y.view(), None).is_err());
}

#[test]
fn constant_columns_and_targets_get_zero_weights() {
    let (mut x, mut y) = random(200, 8, 2, 4);
    x.column_mut(2).fill(1);
    x.column_mut(5).fill(0);
    y.column_mut(1).fill(3.5);
    let st = stats_of(&x, &y);
    let fit = fit_fixed(&[&st], &[0.01, 0.01], &tight(), None).unwrap();
    assert_eq!(fit.constant_columns, vec![2, 5]);
    assert_eq!(fit.weights[(2, 0)], 0.0);
    assert_eq!(fit.weights[(5, 0)], 0.0);
    assert!(fit.weights.column(1).iter().all(|v| *v == 0.0));
    assert_eq!(fit.bias[1], 3.5);
}

#[test]
fn validation_error_from_statistics_is_the_direct_one() {
    let (x, y) = random(600, 10, 2, 5);
    let (tx, ty) = (x.slice(s![..500, ..]).to_owned(), y.slice(s![..500, ..]).to_owned());
    let (vx, vy) = (x.slice(s![500.., ..]).to_owned(), y.slice(s![500.., ..]).to_owned());
    let (train, val) = (stats_of(&tx, &ty), stats_of(&vx, &vy));
    let opts = FitOptions { patience: None, n_lambdas: 12, step: 1, ..tight() };
    let fit = fit(&train, &val, &opts, None).unwrap();
    for t in 0..2 {
        for i in [0, 5, 11] {
            let lam = fit.lambdas[(t, i)];
            let (beta, bias) = reference(&tx, &ty.column(t).to_vec(), lam);
            let direct = (0..100)
                .map(|r| {
                    let p: f64 = (0..10).map(|j| f64::from(vx[(r, j)]) * beta[j]).sum::<f64>() + bias;
                    (vy[(r, t)] - p).powi(2)
                })
                .sum::<f64>()
                / 100.0;
            assert!((fit.val_mse[(t, i)] - direct).abs() < 1e-8 * direct.max(1.0), "{t} {i}");
        }
        // The chosen λ is the best of the curve, and the final model is refit on all 600 models.
        let best = (0..12).min_by(|&a, &b| fit.val_mse[(t, a)].total_cmp(&fit.val_mse[(t, b)])).unwrap();
        assert_eq!(fit.lam[t], fit.lambdas[(t, best)]);
        let (beta, bias) = reference(&x, &y.column(t).to_vec(), fit.lam[t]);
        for j in 0..10 {
            assert!((fit.weights[(j, t)] - beta[j]).abs() < 1e-7);
        }
        assert!((fit.bias[t] - bias).abs() < 1e-7);
    }
}

/// The coarse pass and its one refinement score the λ they visit as the full path does, and
/// choose a λ next to the full path's best, whose validation error is within a hair of it.
#[test]
fn coarse_path_evaluates_the_same_curve_around_the_best() {
    for seed in [9, 10, 11] {
        let (x, y) = random(900, 30, 3, seed);
        let (tx, ty) = (x.slice(s![..800, ..]).to_owned(), y.slice(s![..800, ..]).to_owned());
        let (vx, vy) = (x.slice(s![800.., ..]).to_owned(), y.slice(s![800.., ..]).to_owned());
        let (train, val) = (stats_of(&tx, &ty), stats_of(&vx, &vy));
        let fine = fit(&train, &val, &FitOptions { step: 1, patience: None, ..tight() }, None).unwrap();
        for step in [4, 8] {
            let coarse = fit(&train, &val, &FitOptions { step, patience: Some(5), ..tight() }, None).unwrap();
            for t in 0..3 {
                let walked: Vec<usize> = (0..100).filter(|&i| !coarse.val_mse[(t, i)].is_nan()).collect();
                assert!(walked.len() <= 100 / step + 2, "{}", walked.len());
                for &i in &walked {
                    let (a, b) = (coarse.val_mse[(t, i)], fine.val_mse[(t, i)]);
                    assert!((a - b).abs() <= 1e-9 * b, "{t} {i}: {a} vs {b}");
                }
                let best = (0..100).min_by(|&a, &b| fine.val_mse[(t, a)].total_cmp(&fine.val_mse[(t, b)])).unwrap();
                let chosen = (0..100).find(|&i| coarse.lambdas[(t, i)] == coarse.lam[t]).unwrap();
                let excess = fine.val_mse[(t, chosen)] / fine.val_mse[(t, best)] - 1.0;
                assert!(chosen.abs_diff(best) <= step && excess <= 1e-3, "{t}: chose {chosen}, best {best}, {excess}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn solver_matches_plain_coordinate_descent(
        m in 20usize..200, n in 1usize..24, seed in 0u64..1000, frac in 0.001f64..0.9,
    ) {
        let (x, y) = random(m, n, 2, seed);
        let st = stats_of(&x, &y);
        let lam0 = {
            let d = solve_probe(&st);
            d * frac
        };
        let fit = fit_fixed(&[&st], &[lam0, lam0 * 0.5], &tight(), Some(2)).unwrap();
        for t in 0..2 {
            let lam = fit.lam[t];
            let (beta, bias) = reference(&x, &y.column(t).to_vec(), lam);
            for j in 0..n {
                prop_assert!((fit.weights[(j, t)] - beta[j]).abs() < 1e-7, "w[{j}] {} vs {}", fit.weights[(j, t)], beta[j]);
            }
            prop_assert!((fit.bias[t] - bias).abs() < 1e-7);
            prop_assert!(fit.converged[t]);
            prop_assert!(fit.gap[t] >= -1e-12 && fit.gap[t] < 1e-9);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    /// Targets share blocks (lanes, grouped updates, dense targets set aside and resumed), yet
    /// each is solved as if alone: every lane rounds its own arithmetic the same way whatever
    /// the others do, so the path, λ and weights are bitwise those of a fit of that target
    /// only, on the `f32` path (the default `path_tol`) and the `f64` one.
    #[test]
    fn targets_fitted_together_match_each_fitted_alone(
        k in 1usize..20, n in 4usize..60, seed in 0u64..1000, step in 1usize..9, f32_path in any::<bool>(),
    ) {
        let (x, y) = random(400, n, k, seed);
        let split = |r: std::ops::Range<usize>, y: &Array2<f64>| stats_of(&x.slice(s![r.clone(), ..]).to_owned(), &y.slice(s![r, ..]).to_owned());
        let opts = if f32_path { FitOptions::default() } else { tight() };
        let opts = FitOptions { step, n_lambdas: 40, ..opts };
        let all = fit(&split(0..340, &y), &split(340..400, &y), &opts, Some(2)).unwrap();
        for t in 0..k {
            let yt = y.slice(s![.., t..t + 1]).to_owned();
            let one = fit(&split(0..340, &yt), &split(340..400, &yt), &opts, Some(1)).unwrap();
            prop_assert!(all.lam[t] == one.lam[0] || (all.lam[t].is_nan() && one.lam[0].is_nan()), "{t}: {} vs {}", all.lam[t], one.lam[0]);
            for i in 0..40 {
                let (a, b) = (all.val_mse[(t, i)], one.val_mse[(0, i)]);
                prop_assert!((a.is_nan() && b.is_nan()) || a == b, "{t} {i}: {a} vs {b}");
            }
            for j in 0..n {
                prop_assert_eq!(all.weights[(j, t)], one.weights[(j, 0)]);
            }
            prop_assert_eq!(all.bias[t], one.bias[0]);
            prop_assert!(all.converged[t] && (f32_path || all.gap[t] < 1e-9));
        }
    }
}

/// A λ of the right size for target 0: the largest |correlation| with the standardized masks.
fn solve_probe(st: &Stats) -> f64 {
    let fit = fit(st, st, &FitOptions { n_lambdas: 1, ..FitOptions::default() }, None).unwrap();
    fit.lambdas[(0, 0)].max(1e-3)
}

/// Timing of the shape (not run by default): `cargo test --release --lib
/// datamodels::tests::timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing() {
    let (m, n, k) = (5000, 1000, 800);
    let mut next = xorshift(88172645463325252);
    let x = Array2::from_shape_fn((m, n), |_| u8::from(next().is_multiple_of(2)));
    let xf = x.mapv(f64::from);
    let w = Array2::from_shape_fn((n, k), |_| {
        if next().is_multiple_of(20) { (next() % 1000) as f64 / 250.0 - 2.0 } else { 0.0 }
    });
    let y = xf.dot(&w) + Array2::from_shape_fn((m, k), |_| (next() % 1000) as f64 / 125.0 - 4.0);
    let t = std::time::Instant::now();
    let train = stats_of(&x.slice(s![..4500, ..]).to_owned(), &y.slice(s![..4500, ..]).to_owned());
    let val = stats_of(&x.slice(s![4500.., ..]).to_owned(), &y.slice(s![4500.., ..]).to_owned());
    eprintln!("stats {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let f = fit(&train, &val, &FitOptions::default(), None).unwrap();
    eprintln!("fit {:?}", t.elapsed());
    let nnz: usize = f.weights.iter().filter(|v| **v != 0.0).count();
    eprintln!("nnz/target {}", nnz as f64 / k as f64);
}

/// The `f32` path chooses the λ of the `f64` path on well-posed cases, and the refit (in `f64`
/// at `tol` from either path's solution) gives the same weights up to the tolerance.
#[test]
fn f32_path_chooses_the_f64_lambda() {
    for seed in 0..6 {
        let (x, y) = random(1500, 60, 12, 100 + seed);
        let (tx, ty) = (x.slice(s![..1300, ..]).to_owned(), y.slice(s![..1300, ..]).to_owned());
        let (vx, vy) = (x.slice(s![1300.., ..]).to_owned(), y.slice(s![1300.., ..]).to_owned());
        let (train, val) = (stats_of(&tx, &ty), stats_of(&vx, &vy));
        for step in [1, 4, 8] {
            let opts = FitOptions { step, tol: 1e-8, path_tol: 1e-3, ..FitOptions::default() };
            let f32_path = fit(&train, &val, &opts, Some(2)).unwrap();
            let f64_path = fit(&train, &val, &FitOptions { path_f64: true, ..opts.clone() }, Some(2)).unwrap();
            for t in 0..12 {
                assert_eq!(f32_path.lam[t], f64_path.lam[t], "seed {seed} step {step} target {t}");
                let wmax = f64_path.weights.column(t).iter().fold(0.0f64, |m, v| m.max(v.abs()));
                for j in 0..60 {
                    let (a, b) = (f32_path.weights[(j, t)], f64_path.weights[(j, t)]);
                    assert!((a - b).abs() <= 1e-5 * wmax.max(1e-12), "seed {seed} target {t} w[{j}] {a} vs {b}");
                }
                assert!(f32_path.converged[t]);
            }
        }
    }
}

/// The statistics keep `XᵀX`'s upper triangle only; `parts` gives the whole symmetric matrix
/// and `from_parts` takes it back to the same statistics, after updates in several chunks.
#[test]
fn parts_round_trip_the_upper_triangle() {
    let (x, y) = random(300, 70, 3, 21);
    let mut s = Stats::new(70, 3).unwrap();
    for r in [0..64, 64..200, 200..300] {
        s.update(Masks::Bytes(x.slice(s![r.clone(), ..])), y.slice(s![r, ..]), Some(2)).unwrap();
    }
    let (rows, xtx, xty, sy, syy) = s.parts();
    let xf = x.mapv(f64::from);
    assert_eq!(xtx.mapv(f64::from), xf.t().dot(&xf));
    assert_eq!(Stats::from_parts(rows, xtx, xty, sy, syy).unwrap(), s);
}

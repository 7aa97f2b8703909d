use super::*;
use crate::Result;
use ndarray::Array2;
use proptest::prelude::*;

fn opts(k: usize, metric: Metric, exact: bool) -> KnnOptions {
    KnnOptions { k, metric, exact: Some(exact), seed: 7, threads: Some(2) }
}

fn dist(a: &[f64], b: &[f64], metric: Metric) -> f64 {
    match metric {
        Metric::Euclidean => a.iter().zip(b).map(|(u, v)| (u - v).powi(2)).sum::<f64>().sqrt(),
        Metric::Cosine => {
            let (na, nb) = (a.iter().map(|u| u * u).sum::<f64>().sqrt(), b.iter().map(|u| u * u).sum::<f64>().sqrt());
            if na == 0.0 || nb == 0.0 {
                return 1.0;
            }
            (1.0 - a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>() / (na * nb)).clamp(0.0, 2.0)
        }
    }
}

/// Every pair, sorted by (distance, row): the plain reference.
fn brute(x: &Array2<f64>, k: usize, metric: Metric) -> (Vec<f32>, Vec<i64>) {
    let n = x.nrows();
    let ok = |i: usize| x.row(i).iter().all(|v| !v.is_nan());
    let (mut d, mut idx) = (vec![f32::INFINITY; n * k], vec![-1i64; n * k]);
    for i in (0..n).filter(|&i| ok(i)) {
        let a = x.row(i).to_vec();
        let mut all: Vec<(f64, usize)> =
            (0..n).filter(|&j| j != i && ok(j)).map(|j| (dist(&a, &x.row(j).to_vec(), metric), j)).collect();
        all.sort_by(|p, q| p.0.total_cmp(&q.0).then(p.1.cmp(&q.1)));
        for (t, &(dd, j)) in all.iter().take(k).enumerate() {
            d[i * k + t] = dd as f32;
            idx[i * k + t] = j as i64;
        }
    }
    (d, idx)
}

fn check_same(x: &Array2<f64>, k: usize, metric: Metric) {
    let g = knn(x.view(), opts(k, metric, true)).unwrap();
    let (d, i) = brute(x, k, metric);
    assert_eq!(g.indices, i, "{metric:?}");
    for (a, b) in g.distances.iter().zip(&d) {
        assert!(a == b || (a - b).abs() <= 1e-6 * b.abs().max(1e-6), "{a} vs {b}");
    }
    // float32 input: the same graph up to the rounding of the input.
    let x32 = x.mapv(|v| v as f32);
    let g32 = knn(x32.view(), opts(k, metric, true)).unwrap();
    let (_, i32_) = brute(&x32.mapv(f64::from), k, metric);
    assert_eq!(g32.indices, i32_);
}

fn random(n: usize, d: usize, seed: u64) -> Array2<f64> {
    let mut r = ivf::SplitMix(seed);
    Array2::from_shape_fn((n, d), |_| (r.next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
}

fn gauss(r: &mut ivf::SplitMix) -> f64 {
    // Box–Muller.
    let u = ((r.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let v = (r.next() >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A mixture of `c` Gaussian clusters in `d` dimensions.
fn clustered(n: usize, d: usize, c: usize, seed: u64) -> Array2<f32> {
    let mut r = ivf::SplitMix(seed);
    let centres: Vec<f64> = (0..c * d).map(|_| 3.0 * gauss(&mut r)).collect();
    let mut x = Array2::zeros((n, d));
    for i in 0..n {
        let c = r.below(c);
        for j in 0..d {
            x[[i, j]] = (centres[c * d + j] + gauss(&mut r)) as f32;
        }
    }
    x
}

#[test]
fn matches_brute_force_on_random_rows() {
    for metric in [Metric::Euclidean, Metric::Cosine] {
        check_same(&random(300, 5, 1), 7, metric);
        check_same(&random(1500, 33, 2), 10, metric);
    }
}

#[test]
fn streams_in_chunks_with_the_same_result() {
    let x = random(700, 9, 3).mapv(|v| v as f32);
    for metric in [Metric::Euclidean, Metric::Cosine] {
        let src = pack::Source::new(x.view(), (0..700).collect(), metric);
        let whole = exact::search(&src, 5);
        let chunked = exact::search_in_chunks(&src, 5, 128);
        assert_eq!(src.refine(&whole, 5, 700), src.refine(&chunked, 5, 700));
    }
}

#[test]
fn nan_rows_are_left_out() {
    let mut x = random(200, 4, 4);
    for r in [0, 17, 199] {
        x[[r, 2]] = f64::NAN;
    }
    check_same(&x, 6, Metric::Euclidean);
    let g = knn(x.view(), opts(6, Metric::Cosine, true)).unwrap();
    assert!(g.indices[17 * 6..18 * 6].iter().all(|&i| i == -1));
    assert!(g.distances[17 * 6..18 * 6].iter().all(|d| d.is_infinite()));
    assert!(!g.indices.contains(&0) && !g.indices.contains(&199));
}

#[test]
fn near_duplicates_far_from_the_origin_keep_their_order() {
    // Norms ~1e4 and gaps ~1e-3: the dot-product form alone cancels to noise in f32.
    let base = random(50, 8, 5).mapv(|v| 1e4 + v);
    let mut x = Array2::zeros((200, 8));
    for i in 0..200 {
        for j in 0..8 {
            x[[i, j]] = base[[i % 50, j]] + 1e-3 * (i / 50) as f64 * (j as f64 + 1.0);
        }
    }
    check_same(&x, 5, Metric::Euclidean);
    let g = knn(x.view(), opts(5, Metric::Euclidean, true)).unwrap();
    assert!(g.distances.iter().all(|&d| d > 0.0));
}

#[test]
fn exact_duplicates_come_first_as_cleanlab_puts_them() {
    // Row r repeats row r % 40: sets of 1..=5 members and k on both sides of the set size.
    let base = random(40, 6, 6);
    let n = 40 + 30 + 20 + 10;
    let x = Array2::from_shape_fn((n, 6), |(i, j)| {
        let r = if i < 40 {
            i
        } else if i < 70 {
            i - 40
        } else if i < 90 {
            i - 70
        } else {
            i - 90
        };
        base[[r, j]]
    });
    for k in [1, 2, 3, 4, 6] {
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let g = knn(x.view(), opts(k, metric, true)).unwrap();
            let (_, want) = brute(&x, k, Metric::Euclidean);
            if metric == Metric::Euclidean {
                assert_eq!(g.indices, want);
            }
            for r in 0..n {
                let twins = (0..n).filter(|&j| j != r && x.row(j) == x.row(r)).count().min(k);
                assert!(g.distances[r * k..r * k + twins].iter().all(|&d| d == 0.0));
                assert!(g.indices[r * k..r * k + twins].windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}

#[test]
fn all_rows_identical() {
    let x = Array2::<f32>::from_elem((30, 3), 1.5);
    for exact in [true, false] {
        let g = knn(x.view(), opts(4, Metric::Cosine, exact)).unwrap();
        assert!(g.distances.iter().all(|&d| d == 0.0));
        assert_eq!(&g.indices[0..4], &[1, 2, 3, 4]);
        assert_eq!(&g.indices[29 * 4..30 * 4], &[0, 1, 2, 3]);
    }
}

#[test]
fn bad_input_is_an_error() {
    let x = random(10, 3, 8);
    assert!(knn(x.view(), opts(10, Metric::Euclidean, true)).is_err());
    assert!(knn(x.view(), opts(0, Metric::Euclidean, true)).is_err());
    assert!(knn(Array2::<f64>::zeros((0, 3)).view(), opts(1, Metric::Euclidean, true)).is_err());
    assert!(knn(Array2::<f64>::zeros((5, 0)).view(), opts(1, Metric::Euclidean, true)).is_err());
    let mut inf = x.clone();
    inf[[3, 1]] = f64::INFINITY;
    let e = knn(inf.view(), opts(2, Metric::Euclidean, true)).unwrap_err().to_string();
    assert!(e.contains("row 3"), "{e}");
    let mut nan = x.clone();
    for r in 0..8 {
        nan[[r, 0]] = f64::NAN;
    }
    assert!(knn(nan.view(), opts(2, Metric::Euclidean, true)).is_err());
    assert!("manhattan".parse::<Metric>().is_err());
}

#[test]
fn approximate_recall_on_clustered_data() {
    let (n, k) = (6000, 10);
    let x = clustered(n, 32, 30, 9);
    for metric in [Metric::Euclidean, Metric::Cosine] {
        let exact = knn(x.view(), opts(k, metric, true)).unwrap();
        let approx = knn(x.view(), opts(k, metric, false)).unwrap();
        let hits: usize = (0..n)
            .map(|r| {
                let want = &exact.indices[r * k..(r + 1) * k];
                approx.indices[r * k..(r + 1) * k].iter().filter(|i| want.contains(i)).count()
            })
            .sum();
        let recall = hits as f64 / (n * k) as f64;
        assert!(recall >= 0.95, "{metric:?} recall {recall}");
        assert_eq!(approx, knn(x.view(), KnnOptions { threads: Some(1), ..opts(k, metric, false) }).unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn small_inputs_match_brute_force(
        n in 2usize..40, d in 1usize..6, seed in any::<u64>(), dup in 0usize..5, cosine in any::<bool>()
    ) {
        let mut x = random(n, d, seed).mapv(|v| (v * 4.0).round() / 4.0); // coarse: many ties
        for r in 0..dup.min(n - 1) {
            let src = x.row(r + 1).to_owned();
            x.row_mut(r).assign(&src);
        }
        let k = 1 + (seed as usize % (n - 1));
        let metric = if cosine { Metric::Cosine } else { Metric::Euclidean };
        let g = knn(x.view(), opts(k, metric, true)).unwrap();
        let (d_ref, _) = brute(&x, k, metric);
        for r in 0..n {
            // Zero rows are at cosine distance 1 from everything, but the duplicate correction
            // puts identical zero rows at 0, as cleanlab does.
            if cosine && x.row(r).iter().all(|&v| v == 0.0) {
                continue;
            }
            for (a, b) in g.distances[r * k..(r + 1) * k].iter().zip(&d_ref[r * k..(r + 1) * k]) {
                prop_assert!((a - b).abs() <= 1e-6, "{} vs {}", a, b);
            }
        }
        if !cosine {
            // Euclidean ties at exactly equal distances: the lower row first, as brute force.
            prop_assert_eq!(g.indices, brute(&x, k, metric).1);
        }
    }
}

/// The graph searched in blocks of rows (`cuts` bound the blocks), each query block's parts
/// merged in the order `order` gives.
fn blockwise<T: Real>(x: ArrayView2<'_, T>, cuts: &[usize], k: usize, metric: Metric, rev: bool) -> Result<KnnGraph> {
    let n = x.nrows();
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c > 0 && c < n).collect();
    bounds.extend([0, n]);
    bounds.sort_unstable();
    bounds.dedup();
    let blocks: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
    let (mut distances, mut indices) = (Vec::new(), Vec::new());
    for &(q0, q1) in &blocks {
        let mut refs: Vec<(usize, usize)> = blocks.clone();
        if rev {
            refs.reverse();
        }
        let mut part: Option<KnnPart> = None;
        for (r0, r1) in refs {
            let p = knn_block(
                x.slice(ndarray::s![q0..q1, ..]),
                q0,
                x.slice(ndarray::s![r0..r1, ..]),
                r0,
                k,
                metric,
                Some(2),
            )?;
            match part.as_mut() {
                None => part = Some(p),
                Some(acc) => acc.merge(&p)?,
            }
        }
        let g = part.expect("one block at least").finish(n)?;
        distances.extend(g.distances);
        indices.extend(g.indices);
    }
    Ok(KnnGraph { n, k, distances, indices })
}

#[test]
fn blocks_give_the_exact_graph() {
    let x = clustered(900, 12, 6, 11);
    for metric in [Metric::Euclidean, Metric::Cosine] {
        let whole = knn(x.view(), opts(10, metric, true)).unwrap();
        assert_eq!(blockwise(x.view(), &[300, 600], 10, metric, false).unwrap(), whole);
        assert_eq!(blockwise(x.view(), &[7, 450, 451, 899], 10, metric, true).unwrap(), whole);
    }
}

#[test]
fn blocks_bad_input_is_an_error() {
    let x = random(20, 3, 12);
    let v = x.view();
    let s = |a: usize, b: usize| x.slice(ndarray::s![a..b, ..]);
    // k too large for the rows, and the k ≥ n check happens once every block is merged.
    assert!(blockwise(v, &[10], 20, Metric::Euclidean, false).is_err());
    assert!(knn_block(v, 0, random(5, 4, 1).view(), 0, 2, Metric::Euclidean, None).is_err());
    assert!(knn_block(v, 0, v, 0, 0, Metric::Euclidean, None).is_err());
    // A reference block merged twice, a block missing, parts of different query blocks.
    let mut a = knn_block(s(0, 10), 0, s(0, 10), 0, 3, Metric::Euclidean, None).unwrap();
    let twice = a.clone();
    assert!(a.merge(&twice).is_err());
    assert!(a.finish(20).is_err());
    let other = knn_block(s(10, 20), 10, s(0, 10), 0, 3, Metric::Euclidean, None).unwrap();
    assert!(a.merge(&other).is_err());
    let mut inf = x.clone();
    inf[[4, 0]] = f64::INFINITY;
    assert!(knn_block(v, 0, inf.view(), 0, 2, Metric::Euclidean, None).is_err());
    let mut broken = a.clone();
    broken.dups.pop();
    assert!(a.merge(&broken).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn blocks_match_the_whole_search(
        n in 3usize..60, d in 1usize..5, seed in any::<u64>(), dup in 0usize..12, nan in 0usize..3,
        cosine in any::<bool>(), cuts in proptest::collection::vec(0usize..60, 0..4), rev in any::<bool>(),
    ) {
        // Coarse values (ties), repeated rows and scaled copies (cosine distance 0), NaN rows.
        let mut x = random(n, d, seed).mapv(|v| (v * 4.0).round() / 4.0);
        for r in 0..dup.min(n - 1) {
            let src = x.row((r * 7 + 1) % n).to_owned();
            let scale = if r % 3 == 0 { 2.0 } else { 1.0 };
            x.row_mut(r).assign(&src.mapv(|v| v * scale));
        }
        for r in 0..nan.min(n - 2) {
            x[[(r * 5 + 2) % n, 0]] = f64::NAN;
        }
        let metric = if cosine { Metric::Cosine } else { Metric::Euclidean };
        let m = (0..n).filter(|&r| !x[[r, 0]].is_nan()).count();
        let k = 1 + (seed as usize % (n - 1));
        let whole = knn(x.view(), opts(k, metric, true));
        let parts = blockwise(x.view(), &cuts, k, metric, rev);
        prop_assert_eq!(whole.is_ok(), k < m);
        match (whole, parts) {
            (Ok(w), Ok(p)) => prop_assert_eq!(w, p),
            (Err(_), Err(_)) => {}
            (w, p) => prop_assert!(false, "whole {:?} vs blocks {:?}", w.is_ok(), p.is_ok()),
        }
    }
}

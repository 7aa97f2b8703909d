//! The `non_iid` issue type: cleanlab 2.9's `NonIIDIssueManager`.
//!
//! If rows are IID, how far apart in the dataset's order a row and its neighbours lie follows
//! the distribution of `|i - j|` over all pairs. The test statistic is the Kolmogorov-Smirnov
//! distance between the empirical CDF of the neighbour index distances (with `N - 1` appended,
//! as cleanlab does) and the background CDF `F(d) = sum_{e <= d} (N - e) / (N (N - 1) / 2)`. The
//! same statistic under `num_permutations` (25) random orders gives a Gaussian KDE (Scott's
//! bandwidth `n^(-1/5)` times the statistics' standard deviation); the p-value is its mass
//! above the observed statistic. The permutations are those of `np.random.seed(seed)` then
//! `np.random.permutation(N)` (MT19937 and numpy's legacy bounded draw), so p-values equal
//! cleanlab's. When the p-value is below `significance_threshold` (0.05), the row with the
//! lowest score is flagged (only that one: the issue concerns the dataset as a whole).
//!
//! Per-row score: the area between the CDF of the row's own neighbour index distances and the
//! analytic CDF of `|i - j|` for its position `i`, over `max(i, N - i)`, through `1 + tanh(-x)`
//! (cleanlab's `_score_dataset`, expression for expression). A row without neighbours scores
//! 1 and its entries are left out of the statistic; if no row has a neighbour the p-value is 1.

use super::neighbours::Graph;
use super::stats::pairwise_sum;
use crate::error::{Error, Result};
use crate::sys::pool;
use rayon::prelude::*;

/// cleanlab's defaults.
pub const DEFAULT_NUM_PERMUTATIONS: usize = 25;
pub const DEFAULT_SIGNIFICANCE_THRESHOLD: f64 = 0.05;
/// `gaussian_kde.integrate_box(statistic, 100)`: cleanlab's upper bound of integration.
const UPPER_BOUND: f64 = 100.0;

/// What [`non_iid`] finds.
#[derive(Clone, Debug)]
pub struct NonIid {
    pub scores: Vec<f64>,
    pub is_issue: Vec<bool>,
    pub p_value: f64,
    /// The KS statistic of the dataset's own order.
    pub statistic: f64,
    /// The KS statistic under each permutation.
    pub permutation_statistics: Vec<f64>,
}

/// The non-IID test and scores of a neighbour graph (module docs).
pub fn non_iid(
    graph: &Graph<'_>,
    num_permutations: usize,
    seed: u32,
    significance_threshold: f64,
    threads: Option<usize>,
) -> Result<NonIid> {
    if num_permutations == 0 {
        return Err(Error::invalid("num_permutations must be at least 1"));
    }
    if !significance_threshold.is_finite() {
        return Err(Error::invalid(format!("significance_threshold must be finite, got {significance_threshold}")));
    }
    let n = graph.n();
    if u32::try_from(n).is_err() {
        return Err(Error::invalid(format!("non_iid supports up to {} rows, got {n}", u32::MAX)));
    }
    let edges = (0..n).map(|i| graph.neighbours(i).count()).sum::<usize>();
    let background = background_cdf(n);
    let identity: Vec<u32> = (0..n as u32).collect();
    let statistic = ks_statistic(&identity, graph, edges, &background);
    let mut rng = Mt19937::new(seed);
    let permutation_statistics = pool::run(threads, edges, || {
        let batch = rayon::current_num_threads().max(1);
        let mut stats = Vec::with_capacity(num_permutations);
        while stats.len() < num_permutations {
            // Drawn in order from one stream, as numpy draws them; scored in parallel.
            let perms: Vec<Vec<u32>> =
                (0..batch.min(num_permutations - stats.len())).map(|_| rng.permutation(n)).collect();
            stats.par_extend(perms.par_iter().map(|p| ks_statistic(p, graph, edges, &background)));
        }
        stats
    })?;
    let p_value = if edges == 0 { 1.0 } else { kde_upper_mass(&permutation_statistics, statistic) };
    let scores = pool::run(threads, n, || {
        (0..n).into_par_iter().map_init(RowBuffers::default, |buf, i| row_score(graph, i, buf)).collect::<Vec<f64>>()
    })?;
    let mut is_issue = vec![false; n];
    if p_value < significance_threshold {
        // np.argmin: the first of the lowest.
        let worst = scores.iter().enumerate().fold(0, |best, (i, &s)| if s < scores[best] { i } else { best });
        is_issue[worst] = true;
    }
    Ok(NonIid { scores, is_issue, p_value, statistic, permutation_statistics })
}

/// `np.cumsum((N - np.arange(1, N)) / (N * (N - 1) / 2))`: the CDF of `|i - j|` over pairs, at
/// distances 1..N-1.
fn background_cdf(n: usize) -> Vec<f64> {
    let pairs = (n as u128 * (n as u128 - 1)) as f64 / 2.0;
    let mut acc = 0.0;
    (1..n)
        .map(|d| {
            acc += (n - d) as f64 / pairs;
            acc
        })
        .collect()
}

/// cleanlab's `_get_statistics` for the order `position` (row `i` sits at `position[i]`): the
/// largest gap between the foreground CDF `r / M` at each rank `r` of the sorted distances (with
/// `N - 1` appended, `M` their count without it) over the graph's `edges` present entries, and the
/// background CDF. Counting replaces the sort: within a run of equal distances the gap is largest
/// at one of its ends.
fn ks_statistic(position: &[u32], graph: &Graph<'_>, edges: usize, background: &[f64]) -> f64 {
    let n = position.len();
    if edges == 0 {
        return f64::NAN;
    }
    let mut counts = vec![0u32; n];
    for (i, &at) in position.iter().enumerate() {
        for (j, _) in graph.neighbours(i) {
            counts[at.abs_diff(position[j]) as usize] += 1;
        }
    }
    counts[n - 1] += 1;
    let m = edges as f64;
    let mut rank = 0u64;
    let mut worst = 0.0f64;
    for (distance, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        // Distance 0 (only from a row listed twice by the permutation, which cannot happen)
        // would index -1 in numpy, the last value.
        let b = background[distance.checked_sub(1).unwrap_or(background.len() - 1)];
        let first = (rank as f64 / m - b).abs();
        let last = ((rank + u64::from(c) - 1) as f64 / m - b).abs();
        worst = worst.max(first).max(last);
        rank += u64::from(c);
    }
    worst
}

/// `gaussian_kde(samples).integrate_box(x, 100)` in one dimension: the mean over samples of
/// `Phi((100 - s) / h) - Phi((x - s) / h)`, `h` the samples' standard deviation (ddof 1) times
/// Scott's factor `n^(-1/5)`. With no spread (all samples equal, or one sample; scipy cannot
/// factor that covariance) it is the limit as `h -> 0`: the share of samples above `x`, ties
/// counting one half.
fn kde_upper_mass(samples: &[f64], x: f64) -> f64 {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var =
        if samples.len() > 1 { samples.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    let h = var.sqrt() * n.powf(-1.0 / 5.0);
    let mass: f64 = if h > 0.0 && h.is_finite() {
        samples.iter().map(|s| ndtr((UPPER_BOUND - s) / h) - ndtr((x - s) / h)).sum()
    } else {
        samples
            .iter()
            .map(|&s| {
                if s > x {
                    1.0
                } else if s == x {
                    0.5
                } else {
                    0.0
                }
            })
            .sum()
    };
    (mass / n).clamp(0.0, 1.0)
}

/// The standard normal CDF, as cephes' `ndtr` (scipy) computes it.
fn ndtr(a: f64) -> f64 {
    let x = a * std::f64::consts::FRAC_1_SQRT_2;
    let z = x.abs();
    if z < std::f64::consts::FRAC_1_SQRT_2 {
        0.5 + 0.5 * libm::erf(x)
    } else {
        let y = 0.5 * libm::erfc(z);
        if x > 0.0 { 1.0 - y } else { y }
    }
}

/// Scratch space of [`row_score`], reused across the rows of one worker.
#[derive(Default)]
struct RowBuffers {
    distances: Vec<i64>,
    areas: Vec<f64>,
}

/// cleanlab's `_score_dataset` for row `i` (module docs); 1 without neighbours.
fn row_score(graph: &Graph<'_>, i: usize, buf: &mut RowBuffers) -> f64 {
    let n = graph.n() as i64;
    let ii = i as i64;
    let s = &mut buf.distances;
    s.clear();
    s.extend(graph.neighbours(i).map(|(j, _)| (ii - j as i64).abs()));
    if s.is_empty() {
        return 1.0;
    }
    s.sort_unstable();
    s.push(n - 1);
    let m = (s.len() - 1) as f64;
    let nm1 = (n - 1) as f64;
    let middle = (n - 1) / 2;
    let d = if ii > middle { n - 1 - ii } else { ii };
    let area_beginning = (d * d) as f64 / nm1;
    let length = (n - 2 * d - 1) as f64;
    let a = (2 * d) as f64 / nm1;
    let area_middle = 0.5 * (a + 1.0) * length;
    let mut prev_s = 0i64;
    let mut prev_area = 0.0f64;
    buf.areas.clear();
    buf.areas.extend(s.iter().enumerate().map(|(r, &sv)| {
        let area = if sv <= d {
            (sv * sv) as f64 / nm1
        } else if sv < n - d {
            area_beginning + 0.5 * (((sv + 3 * d) * (sv - d)) as f64 / nm1)
        } else {
            area_beginning + area_middle + (sv as f64 - (n - d - 1) as f64 * 1.0)
        };
        let foreground = (r as f64 / m) * (sv as f64 - prev_s as f64);
        let background = area - prev_area;
        prev_s = sv;
        prev_area = area;
        (foreground - background).abs()
    }));
    let normalizer = ii.max(n - ii) as f64;
    (-(pairwise_sum(&buf.areas) / normalizer)).tanh() + 1.0
}

/// MT19937 as numpy's legacy `RandomState` seeds and draws it.
struct Mt19937 {
    state: [u32; 624],
    next: usize,
}

impl Mt19937 {
    /// `np.random.seed(seed)` (Matsumoto and Nishimura's `init_genrand`).
    fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { state, next: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.next >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.state[i] = v;
            }
            self.next = 0;
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// numpy's `random_interval(max)`: a uniform draw in `0..=max` by masked rejection.
    fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mask = u32::MAX >> max.leading_zeros();
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `np.random.permutation(n)`: Fisher-Yates from the last position down.
    fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut p: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            let j = self.interval(i as u32) as usize;
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn permutations_are_numpys() {
        // np.random.seed(0); np.random.permutation(10)
        let mut rng = Mt19937::new(0);
        assert_eq!(rng.permutation(10), vec![2, 8, 4, 9, 1, 6, 7, 3, 0, 5]);
        // The first draw of MT19937 seeded with 5489, the reference implementation's default.
        assert_eq!(Mt19937::new(5489).next_u32(), 3_499_211_612);
    }

    #[test]
    fn ks_counting_equals_sorting() {
        let n = 40usize;
        let mut idx = Array2::from_shape_fn((n, 2), |(i, c)| [(i + 1) % n, (i * 7 + 3) % n][c] as i64);
        for i in 0..n {
            if idx[[i, 1]] == i as i64 {
                idx[[i, 1]] = -1;
            }
        }
        let d = Array2::from_elem((n, 2), 1.0f32);
        let graph = Graph::new(d.view(), idx.view()).unwrap();
        let edges: Vec<(usize, usize)> = (0..n).flat_map(|i| graph.neighbours(i).map(move |(j, _)| (i, j))).collect();
        let bg = background_cdf(n);
        let position: Vec<u32> = Mt19937::new(3).permutation(n);
        let mut sorted: Vec<usize> = edges.iter().map(|&(i, j)| position[i].abs_diff(position[j]) as usize).collect();
        sorted.sort_unstable();
        sorted.push(n - 1);
        let m = (sorted.len() - 1) as f64;
        let want = sorted.iter().enumerate().map(|(r, &s)| (r as f64 / m - bg[s - 1]).abs()).fold(0.0, f64::max);
        assert_eq!(ks_statistic(&position, &graph, edges.len(), &bg), want);
    }

    #[test]
    fn sorted_order_is_not_iid_and_shuffled_is() {
        // Rows on a line, in order: each row's neighbours are the adjacent rows.
        let n = 300;
        let k = 4;
        let line = |order: &[usize]| {
            let mut at = vec![0usize; n];
            for (row, &p) in order.iter().enumerate() {
                at[p] = row;
            }
            let idx = Array2::from_shape_fn((n, k), |(row, c)| {
                let p = order[row] as i64;
                let step = [1i64, -1, 2, -2][c];
                let q = if (0..n as i64).contains(&(p + step)) { p + step } else { p - 3 * step.signum() };
                at[q as usize] as i64
            });
            let d = Array2::from_shape_fn((n, k), |(_, c)| [1.0f32, 1.0, 2.0, 2.0][c]);
            (d, idx)
        };
        let ordered: Vec<usize> = (0..n).collect();
        let (d, idx) = line(&ordered);
        let r = non_iid(&Graph::new(d.view(), idx.view()).unwrap(), 25, 0, 0.05, Some(1)).unwrap();
        assert!(r.p_value < 1e-6, "{}", r.p_value);
        assert_eq!(r.is_issue.iter().filter(|&&x| x).count(), 1);
        // A shuffled order (with 25 permutations, about one order in twenty still tests below
        // 0.05: the test's false-positive rate).
        let shuffled: Vec<usize> = Mt19937::new(3).permutation(n).into_iter().map(|x| x as usize).collect();
        let (d, idx) = line(&shuffled);
        let r = non_iid(&Graph::new(d.view(), idx.view()).unwrap(), 25, 0, 0.05, Some(1)).unwrap();
        assert!(r.p_value > 0.5, "{}", r.p_value);
        assert!(r.is_issue.iter().all(|&x| !x));
        assert!(r.scores.iter().all(|&s| (0.0..=1.0).contains(&s)));
    }

    #[test]
    fn rows_without_neighbours_and_degenerate_kde() {
        let d = Array2::from_elem((3, 2), 1.0f32);
        // A complete graph: every order gives the same statistic.
        let idx = Array2::from_shape_fn((3, 2), |(i, c)| ((i + c + 1) % 3) as i64);
        let r = non_iid(&Graph::new(d.view(), idx.view()).unwrap(), 5, 0, 0.05, None).unwrap();
        assert_eq!(r.p_value, 0.5);
        let idx = Array2::from_elem((3, 2), -1i64);
        let r = non_iid(&Graph::new(d.view(), idx.view()).unwrap(), 5, 0, 0.05, None).unwrap();
        assert_eq!(r.p_value, 1.0);
        assert_eq!(r.scores, vec![1.0; 3]);
    }
}

//! numpy's order statistics and sums, expression for expression, so that thresholds computed
//! here match cleanlab's bit for bit (a flag at a threshold must not flip on rounding).

/// `np.percentile(values, q)` with the default `"linear"` method, of values sorted ascending
/// (not empty): virtual index `(n - 1) * q / 100`, then numpy's `_lerp`, which interpolates
/// from the upper neighbour when the fraction is at least 1/2.
pub(crate) fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let virtual_index = (n - 1) as f64 * (q / 100.0);
    let lo = virtual_index.floor();
    let gamma = virtual_index - lo;
    let lo = lo as usize;
    let hi = (lo + 1).min(n - 1);
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    if gamma >= 0.5 { b - diff * (1.0 - gamma) } else { a + diff * gamma }
}

/// `np.median` of values sorted ascending (not empty): the middle value, or the mean of the
/// two middle values.
pub(crate) fn median_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 }
}

/// `np.sum` of a contiguous run: numpy's pairwise summation (eight accumulators below 128
/// values, halves above), so a row sum has the same bits as cleanlab's `np.sum(..., axis=1)`.
pub(crate) fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]];
        let whole = n - n % 8;
        let mut i = 8;
        while i < whole {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[whole..] {
            res += x;
        }
        res
    } else {
        let mut half = n / 2;
        half -= half % 8;
        pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
    }
}

/// `np.mean` of a contiguous run (NaN when empty).
pub(crate) fn numpy_mean(a: &[f64]) -> f64 {
    pairwise_sum(a) / a.len() as f64
}

/// Values sorted ascending (NaN-free input).
pub(crate) fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_unstable_by(f64::total_cmp);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy() {
        // np.percentile([1, 2, 3, 4], 75) == 3.25, np.percentile([1, 2, 3, 4, 5], 25) == 2.0
        assert_eq!(percentile_sorted(&[1.0, 2.0, 3.0, 4.0], 75.0), 3.25);
        assert_eq!(percentile_sorted(&[1.0, 2.0, 3.0, 4.0, 5.0], 25.0), 2.0);
        assert_eq!(percentile_sorted(&[7.0], 75.0), 7.0);
        assert_eq!(median_sorted(&[1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(median_sorted(&[1.0, 2.0, 3.0]), 2.0);
    }

    #[test]
    fn pairwise_sum_is_a_sum() {
        for n in [0usize, 1, 7, 8, 9, 11, 16, 127, 128, 129, 300, 1000] {
            let a: Vec<f64> = (0..n).map(|i| i as f64).collect();
            assert_eq!(pairwise_sum(&a), (n * n.saturating_sub(1) / 2) as f64);
        }
    }
}

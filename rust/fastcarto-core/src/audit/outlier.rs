//! The `outlier` issue type: cleanlab 2.9's `OutlierIssueManager`.
//!
//! From a neighbour graph (features): each example's average distance `a_i` to its neighbours;
//! flagged when `a_i > Q3 + (1/threshold - 1) * IQR` (quartiles of `a` with numpy's linear
//! percentile; `threshold` defaults to 0.37037, so the fence is Q3 + 1.7 IQR); score
//! `exp(-t * a_i / max(s, 1e-6))` with `s` the median of `a` (at least `100 * f64::EPSILON`)
//! unless given, and score 1 where `a_i` is below the metric's rounding tolerance (cosine
//! `100 * 2^-53`, euclidean `sqrt(100 * 2^-52)`: cleanlab's `correct_precision_errors`).
//!
//! From `pred_probs` only (cleanlab's `OutOfDistribution`): probabilities adjusted by the class
//! confident thresholds (`p - c + max(c)`, renormalized; `c_j` = mean of `p_j` over examples
//! labelled `j`, 2 for an absent class, at least 2e-6), then `1 - entropy / ln K` (or the largest
//! probability, or the GEN score); flagged when below `threshold * median` (threshold 0.13).

use super::neighbours::Graph;
use super::stats::{median_sorted, pairwise_sum, percentile_sorted, sorted};
use crate::error::{Error, Result};
use crate::kernel::math::Real;
use ndarray::ArrayView2;
use std::str::FromStr;

/// cleanlab's `OutlierIssueManager.DEFAULT_THRESHOLDS["features"]`.
pub const DEFAULT_FEATURES_THRESHOLD: f64 = 0.37037;
/// cleanlab's `OutlierIssueManager.DEFAULT_THRESHOLDS["pred_probs"]`.
pub const DEFAULT_PRED_PROBS_THRESHOLD: f64 = 0.13;
/// cleanlab's `internal.constants.EPSILON`, the least scaling factor.
const EPSILON: f64 = 1e-6;
/// cleanlab's `CONFIDENT_THRESHOLDS_LOWER_BOUND`.
const CONFIDENT_THRESHOLDS_LOWER_BOUND: f64 = 2e-6;
/// The confident threshold of a class no example is labelled with (cleanlab's `BIG_VALUE`).
const ABSENT_CLASS_THRESHOLD: f64 = 2.0;

/// Distance of a neighbour graph, for the rounding tolerance below which an average distance
/// counts as zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Euclidean,
    Cosine,
}

impl FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "euclidean" => Ok(Metric::Euclidean),
            "cosine" => Ok(Metric::Cosine),
            _ => Err(Error::invalid(format!("metric must be \"euclidean\" or \"cosine\", got {s:?}"))),
        }
    }
}

impl Metric {
    /// cleanlab's `correct_precision_errors` tolerance (`C = 100`).
    fn tolerance(self) -> f64 {
        match self {
            Metric::Cosine => 100.0 * (f64::EPSILON / 2.0),
            Metric::Euclidean => (100.0 * f64::EPSILON).sqrt(),
        }
    }
}

/// Parameters of [`knn_outliers`], as cleanlab names them.
#[derive(Clone, Copy, Debug)]
pub struct KnnParams {
    /// In [0, 1]; None: [`DEFAULT_FEATURES_THRESHOLD`].
    pub threshold: Option<f64>,
    pub t: f64,
    /// None: the median average distance.
    pub scaling_factor: Option<f64>,
    /// None: no rounding correction (a graph of unknown metric).
    pub metric: Option<Metric>,
}

/// What [`knn_outliers`] finds.
#[derive(Clone, Debug)]
pub struct KnnOutliers {
    pub scores: Vec<f64>,
    pub is_issue: Vec<bool>,
    /// Average distance to the present neighbours; NaN for a row with none.
    pub average_distance: Vec<f64>,
    pub threshold: f64,
    /// The fence on the average distance (NaN when no row has neighbours).
    pub issue_threshold: f64,
    pub scaling_factor: f64,
}

/// Outliers from a neighbour graph (module docs). All present neighbours of a row count, as
/// cleanlab averages every column of the graph it is given.
pub fn knn_outliers(graph: &Graph<'_>, p: &KnnParams) -> Result<KnnOutliers> {
    let threshold = p.threshold.unwrap_or(DEFAULT_FEATURES_THRESHOLD);
    if !(0.0..=1.0).contains(&threshold) {
        return Err(Error::invalid(format!("outlier threshold must be a number between 0 and 1, got {threshold}")));
    }
    if !p.t.is_finite() {
        return Err(Error::invalid(format!("outlier t must be finite, got {}", p.t)));
    }
    if let Some(s) = p.scaling_factor.filter(|s| !s.is_finite()) {
        return Err(Error::invalid(format!("outlier scaling_factor must be finite, got {s}")));
    }
    let n = graph.n();
    let mut row = Vec::with_capacity(graph.k());
    let average_distance: Vec<f64> = (0..n)
        .map(|i| {
            row.clear();
            row.extend(graph.neighbours(i).map(|(_, d)| f64::from(d)));
            // np.mean: numpy's pairwise sum over the row, then the division.
            if row.is_empty() { f64::NAN } else { pairwise_sum(&row) / row.len() as f64 }
        })
        .collect();
    let present = sorted(average_distance.iter().copied().filter(|a| !a.is_nan()).collect());
    let (issue_threshold, median) = if present.is_empty() {
        (f64::NAN, f64::NAN)
    } else {
        let (q1, q3) = (percentile_sorted(&present, 25.0), percentile_sorted(&present, 75.0));
        let iqr_scale = if threshold != 0.0 { 1.0 / threshold - 1.0 } else { f64::INFINITY };
        (q3 + iqr_scale * (q3 - q1), median_sorted(&present))
    };
    // `max` with a NaN median (no neighbours anywhere) gives the floor.
    let scaling_factor = p.scaling_factor.unwrap_or_else(|| median.max(100.0 * f64::EPSILON));
    let tolerance = p.metric.map(Metric::tolerance);
    let scale = scaling_factor.max(EPSILON);
    let scores = average_distance
        .iter()
        .map(|&a| if a.is_nan() || tolerance.is_some_and(|tol| a < tol) { 1.0 } else { (-p.t * a / scale).exp() })
        .collect();
    let is_issue = average_distance.iter().map(|&a| a > issue_threshold).collect();
    Ok(KnnOutliers { scores, is_issue, average_distance, threshold, issue_threshold, scaling_factor })
}

/// How [`prob_outliers`] scores a row of (adjusted) probabilities.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OodMethod {
    /// `1 - H(p) / ln K`.
    Entropy,
    /// `max p`.
    LeastConfidence,
    /// Liu et al.'s GEN: `1 - sum over the top m of softmax(p) of q^gamma (1 - q)^gamma / m`.
    Gen { m: usize, gamma: f64 },
}

impl OodMethod {
    /// The method cleanlab names `name` (`M` and `gamma` for "gen").
    pub fn parse(name: &str, m: usize, gamma: f64) -> Result<Self> {
        match name {
            "entropy" => Ok(OodMethod::Entropy),
            "least_confidence" => Ok(OodMethod::LeastConfidence),
            "gen" if m >= 1 && gamma.is_finite() => Ok(OodMethod::Gen { m, gamma }),
            "gen" => Err(Error::invalid(format!("GEN needs M >= 1 and a finite gamma, got M={m}, gamma={gamma}"))),
            _ => Err(Error::invalid(format!(
                "{name:?} is not a valid OOD scoring method; choose \"entropy\", \"least_confidence\" or \"gen\""
            ))),
        }
    }
}

/// Parameters of [`prob_outliers`], as cleanlab names them.
#[derive(Clone, Debug)]
pub struct ProbParams {
    /// At least 0; None: [`DEFAULT_PRED_PROBS_THRESHOLD`].
    pub threshold: Option<f64>,
    pub method: OodMethod,
    pub adjust_pred_probs: bool,
    /// Per class; None: computed from the labels.
    pub confident_thresholds: Option<Vec<f64>>,
}

/// What [`prob_outliers`] finds.
#[derive(Clone, Debug)]
pub struct ProbOutliers {
    pub scores: Vec<f64>,
    pub is_issue: Vec<bool>,
    pub threshold: f64,
    pub issue_threshold: f64,
    /// The thresholds used to adjust (None when `adjust_pred_probs` is false).
    pub confident_thresholds: Option<Vec<f64>>,
}

/// cleanlab's `get_confident_thresholds`: per class, the mean probability of that class over
/// the examples labelled with it (2 if none is), at least 2e-6. Labels must be in `0..K`.
pub fn confident_thresholds<T: Real>(pred_probs: ArrayView2<'_, T>, labels: &[i64]) -> Result<Vec<f64>> {
    let (n, k) = pred_probs.dim();
    if labels.len() != n {
        return Err(Error::invalid(format!("{} labels for {n} rows of pred_probs", labels.len())));
    }
    let mut sums = vec![Vec::new(); k];
    for (i, (&y, row)) in labels.iter().zip(pred_probs.rows()).enumerate() {
        let c = usize::try_from(y).ok().filter(|&c| c < k).ok_or_else(|| {
            Error::invalid(format!("label {y} of example {i} is out of range for {k} classes of pred_probs"))
        })?;
        sums[c].push(row[c].to_f64());
    }
    Ok(sums
        .iter()
        .map(|v| {
            let mean = if v.is_empty() { ABSENT_CLASS_THRESHOLD } else { pairwise_sum(v) / v.len() as f64 };
            mean.max(CONFIDENT_THRESHOLDS_LOWER_BOUND)
        })
        .collect())
}

/// Outliers from predicted probabilities alone (module docs). `labels` are needed when
/// `adjust_pred_probs` is set and no thresholds are given.
pub fn prob_outliers<T: Real>(
    pred_probs: ArrayView2<'_, T>,
    labels: Option<&[i64]>,
    p: &ProbParams,
) -> Result<ProbOutliers> {
    let (n, k) = pred_probs.dim();
    if n == 0 || k == 0 {
        return Err(Error::invalid(format!("pred_probs has shape ({n}, {k}); it needs rows and classes")));
    }
    let threshold = p.threshold.unwrap_or(DEFAULT_PRED_PROBS_THRESHOLD);
    if !(threshold >= 0.0 && threshold.is_finite()) {
        return Err(Error::invalid(format!("outlier threshold must be non-negative, got {threshold}")));
    }
    for (i, row) in pred_probs.rows().into_iter().enumerate() {
        if let Some(v) = row.iter().map(|v| v.to_f64()).find(|v| !(0.0..=1.0).contains(v)) {
            return Err(Error::invalid(format!(
                "pred_probs of example {i} holds {v}; probabilities must lie in [0, 1]"
            )));
        }
    }
    let thresholds = if !p.adjust_pred_probs {
        None
    } else if let Some(c) = &p.confident_thresholds {
        if c.len() != k || c.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "confident_thresholds must be {k} finite values (one per class), got {}",
                c.len()
            )));
        }
        Some(c.clone())
    } else {
        let labels = labels
            .ok_or_else(|| Error::invalid("outliers from pred_probs need labels (or adjust_pred_probs=False)"))?;
        Some(confident_thresholds(pred_probs, labels)?)
    };
    let shift = thresholds.as_ref().map(|c| c.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    let ln_k = (k as f64).ln();
    let mut row = vec![0.0f64; k];
    let mut scores = Vec::with_capacity(n);
    for probs in pred_probs.rows() {
        for (r, v) in row.iter_mut().zip(probs) {
            *r = v.to_f64();
        }
        if let (Some(c), Some(shift)) = (&thresholds, shift) {
            // `(p - c) + max(c)`, then divided by the row's (pairwise) sum, as numpy does it.
            for (r, &cj) in row.iter_mut().zip(c) {
                *r = (*r - cj) + shift;
            }
            let total = pairwise_sum(&row);
            for r in row.iter_mut() {
                *r /= total;
            }
        }
        scores.push(score_row(&mut row, p.method, ln_k));
    }
    let issue_threshold = threshold * median_sorted(&sorted(scores.clone()));
    let is_issue = scores.iter().map(|&s| s < issue_threshold).collect();
    Ok(ProbOutliers { scores, is_issue, threshold, issue_threshold, confident_thresholds: thresholds })
}

/// One row's OOD score (the row may be overwritten).
fn score_row(row: &mut [f64], method: OodMethod, ln_k: f64) -> f64 {
    match method {
        OodMethod::Entropy => {
            // xlogy(p, p) is 0 at p = 0.
            let terms: Vec<f64> = row.iter().map(|&p| if p == 0.0 { 0.0 } else { p * p.ln() }).collect();
            1.0 - (-pairwise_sum(&terms)) / ln_k
        }
        OodMethod::LeastConfidence => row.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        OodMethod::Gen { m, gamma } => {
            for r in row.iter_mut() {
                *r = r.exp();
            }
            let total = pairwise_sum(row);
            for r in row.iter_mut() {
                *r /= total;
            }
            row.sort_unstable_by(f64::total_cmp);
            let top = &row[row.len().saturating_sub(m)..];
            let terms: Vec<f64> = top.iter().map(|&q| q.powf(gamma) * (1.0 - q).powf(gamma)).collect();
            1.0 - pairwise_sum(&terms) / m as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    fn graph_of<'a>(d: &'a Array2<f32>, i: &'a Array2<i64>) -> Graph<'a> {
        Graph::new(d.view(), i.view()).unwrap()
    }

    #[test]
    fn far_row_is_flagged_and_scores_fall_with_distance() {
        // Eight rows at distance 1 from their neighbours, one at distance 10.
        let n = 9;
        let mut d = Array2::from_elem((n, 2), 1.0f32);
        d.row_mut(8).fill(10.0);
        let idx = Array2::from_shape_fn((n, 2), |(i, j)| ((i + j + 1) % n) as i64);
        let g = graph_of(&d, &idx);
        let p = KnnParams { threshold: None, t: 1.0, scaling_factor: None, metric: Some(Metric::Euclidean) };
        let r = knn_outliers(&g, &p).unwrap();
        assert_eq!(r.is_issue.iter().filter(|&&x| x).count(), 1);
        assert!(r.is_issue[8]);
        assert_eq!(r.scaling_factor, 1.0);
        assert!((r.scores[0] - (-1.0f64).exp()).abs() < 1e-15);
        assert!(r.scores[8] < r.scores[0]);
    }

    #[test]
    fn rows_without_neighbours_score_one() {
        let d = array![[f32::INFINITY], [0.5], [0.5]];
        let idx = array![[-1i64], [2], [1]];
        let p = KnnParams { threshold: Some(0.5), t: 1.0, scaling_factor: None, metric: None };
        let r = knn_outliers(&graph_of(&d, &idx), &p).unwrap();
        assert_eq!(r.scores[0], 1.0);
        assert!(!r.is_issue[0]);
        assert!(r.average_distance[0].is_nan());
    }

    #[test]
    fn exact_duplicates_score_one_under_a_known_metric() {
        let d = array![[0.0f32], [0.0], [3.0]];
        let idx = array![[1i64], [0], [0]];
        for metric in [Metric::Cosine, Metric::Euclidean] {
            let p = KnnParams { threshold: None, t: 1.0, scaling_factor: Some(0.0), metric: Some(metric) };
            let r = knn_outliers(&graph_of(&d, &idx), &p).unwrap();
            assert_eq!(&r.scores[..2], &[1.0, 1.0]);
        }
    }

    #[test]
    fn bad_parameters_are_errors() {
        let d = array![[1.0f32], [1.0]];
        let idx = array![[1i64], [0]];
        let g = graph_of(&d, &idx);
        for threshold in [-0.1, 1.5, f64::NAN] {
            let p = KnnParams { threshold: Some(threshold), t: 1.0, scaling_factor: None, metric: None };
            assert!(knn_outliers(&g, &p).is_err());
        }
        let probs = array![[0.5f64, 0.5], [1.0, 0.0]];
        let p = ProbParams {
            threshold: None,
            method: OodMethod::Entropy,
            adjust_pred_probs: true,
            confident_thresholds: None,
        };
        assert!(prob_outliers(probs.view(), None, &p).is_err());
        assert!(prob_outliers(probs.view(), Some(&[0, 2]), &p).is_err());
        assert!(prob_outliers(array![[1.5f64, -0.5]].view(), Some(&[0]), &p).is_err());
        assert!(OodMethod::parse("typo", 100, 0.1).is_err());
    }

    #[test]
    fn confident_thresholds_are_class_means() {
        let probs = array![[0.9f64, 0.1, 0.0], [0.7, 0.3, 0.0], [0.2, 0.8, 0.0]];
        let c = confident_thresholds(probs.view(), &[0, 0, 1]).unwrap();
        assert!((c[0] - 0.8).abs() < 1e-15);
        assert_eq!(c[1], 0.8);
        assert_eq!(c[2], ABSENT_CLASS_THRESHOLD);
    }

    #[test]
    fn uncertain_rows_score_low() {
        let probs = array![[0.98f64, 0.01, 0.01], [0.01, 0.98, 0.01], [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]];
        for method in [OodMethod::Entropy, OodMethod::LeastConfidence, OodMethod::Gen { m: 3, gamma: 0.1 }] {
            let p = ProbParams { threshold: None, method, adjust_pred_probs: false, confident_thresholds: None };
            let r = prob_outliers(probs.view(), None, &p).unwrap();
            assert!(r.scores[2] < r.scores[0], "{method:?}: {:?}", r.scores);
        }
    }
}

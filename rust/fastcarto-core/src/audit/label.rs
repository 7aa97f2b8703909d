//! Label issues by confident learning (Northcutt et al., 2021), as cleanlab 2.x's `Datalab`
//! finds them: `CleanLearning.find_label_issues` with out-of-sample `pred_probs`, i.e.
//! `filter.find_label_issues(filter_by="prune_by_noise_rate", min_examples_per_class=10)` on the
//! calibrated confident joint, self-confidence scores (`rank.get_label_quality_scores`), and
//! `dataset.health_summary`'s joint and issue count for the summary score.
//!
//! Every step keeps cleanlab's constants and order of floating-point operations where a rounding
//! or a strict comparison depends on it (the `1e-6` slack on the thresholds, `round` half to
//! even, numpy's pairwise sums). Where cleanlab breaks a tie by the order of numpy's unstable
//! `argsort` (equal rounding residuals, equal pruning margins), fastcarto breaks it by row order:
//! cleanlab with a stable sort.

use super::per_row;
use super::stats::numpy_mean;
use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

/// cleanlab's `CONFIDENT_THRESHOLDS_LOWER_BOUND`.
const THRESHOLD_LOWER_BOUND: f64 = 2e-6;
/// cleanlab's `FLOATING_POINT_COMPARISON`: the slack on `p >= threshold`, and the bonus the
/// given label gets before `argmax` when an issue is dropped because the model agrees.
const SLACK: f64 = 1e-6;
/// cleanlab's `TINY_VALUE`, the floor of every denominator.
const TINY: f64 = 1e-100;
/// cleanlab's `CLIPPING_LOWER_BOUND` for the prior of the true labels.
const PY_LOWER_BOUND: f64 = 1e-6;
/// Threshold of a class nobody is labelled with (cleanlab's `BIG_VALUE`): never reached.
const ABSENT_CLASS_THRESHOLD: f64 = 2.0;

/// What cleanlab's `Datalab` lets change in the label issue type.
#[derive(Clone, Debug)]
pub struct LabelOptions {
    /// Per-class confident thresholds; `None` is the mean self-confidence of each class.
    pub thresholds: Option<Vec<f64>>,
    /// Classes with at most this many examples are never pruned (`CleanLearning`'s default 10).
    pub min_examples_per_class: usize,
}

impl Default for LabelOptions {
    fn default() -> Self {
        LabelOptions { thresholds: None, min_examples_per_class: 10 }
    }
}

/// The label issues of a dataset and the estimates behind them, named as cleanlab names them.
#[derive(Clone, Debug)]
pub struct LabelIssues {
    /// `is_label_issue` per example.
    pub is_issue: Vec<bool>,
    /// `label_score`: the probability of the given label (self-confidence).
    pub score: Vec<f64>,
    /// `predicted_label`: the first class of highest probability.
    pub predicted: Vec<i64>,
    /// The default confident thresholds (`count.get_confident_thresholds`).
    pub confident_thresholds: Vec<f64>,
    /// The calibrated confident joint, `[given, true]` counts summing to `n`.
    pub confident_joint: Array2<i64>,
    /// `py`: estimated prior of the true labels.
    pub py: Vec<f64>,
    /// `noise_matrix[given, true]`: P(given | true).
    pub noise_matrix: Array2<f64>,
    /// `inverse_noise_matrix[true, given]`: P(true | given).
    pub inverse_noise_matrix: Array2<f64>,
    /// `health_summary`'s joint: the calibrated confident joint at the default thresholds, / n.
    pub joint: Array2<f64>,
    /// `count.num_label_issues`: examples confidently of another class whose given label the
    /// model does not favour; the summary score is `1 - this / n`.
    pub num_off_diagonal: usize,
}

/// Checks labels against `pred_probs` and returns the number of classes.
fn check(labels: &[i64], pred_probs: &ArrayView2<'_, f64>) -> Result<usize> {
    let (n, k) = pred_probs.dim();
    if n == 0 {
        return Err(Error::Empty("no examples to find label issues in".into()));
    }
    if labels.len() != n {
        return Err(Error::InvalidInput(format!("labels has {} examples but pred_probs has {n} rows", labels.len())));
    }
    if k < 2 {
        return Err(Error::InvalidInput(format!("pred_probs has {k} column(s); label issues need at least 2 classes")));
    }
    super::check_labels(labels, k)?;
    for (i, row) in pred_probs.outer_iter().enumerate() {
        if let Some(&v) = row.iter().find(|v| !v.is_finite() || **v < 0.0 || **v > 1.0) {
            return Err(Error::InvalidInput(format!(
                "pred_probs[{i}] holds {v}; out-of-sample probabilities must lie in [0, 1]"
            )));
        }
    }
    Ok(k)
}

/// Number of examples given each class.
fn label_counts(labels: &[i64], k: usize) -> Vec<i64> {
    let mut counts = vec![0i64; k];
    for &y in labels {
        counts[y as usize] += 1;
    }
    counts
}

/// First index of the largest value (numpy's `argmax`).
fn argmax(row: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (j, v) in row.enumerate() {
        if v > best.1 {
            best = (j, v);
        }
    }
    best.0
}

/// `count.get_confident_thresholds`: per class, the mean probability of that class over the
/// examples labelled with it (2 for a class nobody has), floored at 2e-6.
pub fn confident_thresholds(labels: &[i64], pred_probs: ArrayView2<'_, f64>) -> Result<Vec<f64>> {
    let k = check(labels, &pred_probs)?;
    Ok(default_thresholds(labels, &pred_probs, k))
}

fn default_thresholds(labels: &[i64], pred_probs: &ArrayView2<'_, f64>, k: usize) -> Vec<f64> {
    let mut own: Vec<Vec<f64>> = vec![Vec::new(); k];
    for (row, &y) in pred_probs.outer_iter().zip(labels) {
        own[y as usize].push(row[y as usize]);
    }
    own.iter()
        .map(|v| if v.is_empty() { ABSENT_CLASS_THRESHOLD } else { numpy_mean(v) }.max(THRESHOLD_LOWER_BOUND))
        .collect()
}

/// The confident guess of each example's true class (`compute_confident_joint`): the classes
/// whose probability reaches their threshold (less 1e-6); with several, the `argmax` of all
/// probabilities; with none, no guess (-1).
fn true_label_guesses(pred_probs: &ArrayView2<'_, f64>, thresholds: &[f64]) -> Vec<i64> {
    per_row(pred_probs.nrows(), |i| {
        let row = pred_probs.row(i);
        let mut confident = row.iter().zip(thresholds).enumerate().filter(|(_, (p, t))| **p >= **t - SLACK);
        match (confident.next(), confident.next()) {
            (None, _) => -1,
            (Some((j, _)), None) => j as i64,
            (Some(_), Some(_)) => argmax(row.iter().copied()) as i64,
        }
    })
}

/// The confident joint `[given, true]` of the guesses, its diagonal at least 1 (uncalibrated).
fn confident_counts(labels: &[i64], guesses: &[i64], k: usize) -> Array2<i64> {
    let mut cj = Array2::<i64>::zeros((k, k));
    for (&y, &g) in labels.iter().zip(guesses) {
        if g >= 0 {
            cj[(y as usize, g as usize)] += 1;
        }
    }
    for j in 0..k {
        cj[(j, j)] = cj[(j, j)].max(1);
    }
    cj
}

/// `count.calibrate_confident_joint`: each row rescaled to its class's count, the whole to
/// `n`, then rounded row by row keeping the row totals.
fn calibrate(cj: &Array2<i64>, counts: &[i64]) -> Array2<i64> {
    let k = counts.len();
    let mut cal = Array2::<f64>::zeros((k, k));
    for i in 0..k {
        let row_sum = (cj.row(i).sum() as f64).max(TINY);
        for j in 0..k {
            cal[(i, j)] = cj[(i, j)] as f64 / row_sum * counts[i] as f64;
        }
    }
    let total = super::stats::pairwise_sum(cal.as_slice().expect("a fresh array is contiguous")).max(TINY);
    let n: i64 = counts.iter().sum();
    cal.mapv_inplace(|v| v / total * n as f64);
    let mut out = Array2::<i64>::zeros((k, k));
    for i in 0..k {
        let row = round_preserving_sum(&cal.row(i).to_vec());
        out.row_mut(i).assign(&ndarray::ArrayView1::from(&row));
    }
    out
}

/// `internal.util.round_preserving_sum`: round half to even, then move the rounding of the
/// values farthest from their integers until the integers add up to the rounded sum.
pub fn round_preserving_sum(floats: &[f64]) -> Vec<i64> {
    let mut ints: Vec<f64> = floats.iter().map(|v| v.round_ties_even()).collect();
    let orig_sum = super::stats::pairwise_sum(floats).round_ties_even();
    let mut int_sum = super::stats::pairwise_sum(&ints).round_ties_even();
    while (int_sum - orig_sum).abs() > SLACK {
        let diff = (orig_sum - int_sum).round_ties_even();
        let increment = if diff < 0.0 { -1.0 } else { 1.0 };
        let changes = (diff.abs() as usize).min(floats.len());
        // Stable order (cleanlab's numpy `argsort` is not); `[::-1]` reverses it.
        let mut order: Vec<usize> = (0..floats.len()).collect();
        order.sort_by(|&a, &b| (floats[a] - ints[a]).total_cmp(&(floats[b] - ints[b])));
        if increment > 0.0 {
            order.reverse();
        }
        for &i in &order[..changes] {
            ints[i] += increment;
        }
        int_sum = super::stats::pairwise_sum(&ints).round_ties_even();
    }
    ints.iter().map(|&v| v as i64).collect()
}

/// `internal.util.clip_noise_rates`: off-diagonal rates clipped to [0, 0.9999], then each
/// column normalized to sum to 1.
fn clip_noise_rates(m: &mut Array2<f64>) {
    let k = m.nrows();
    for i in 0..k {
        for j in 0..k {
            if i != j {
                m[(i, j)] = m[(i, j)].clamp(0.0, 0.9999);
            }
        }
    }
    for j in 0..k {
        let mut col_sum = 0.0;
        for i in 0..k {
            col_sum += m[(i, j)];
        }
        let col_sum = col_sum.max(TINY);
        for i in 0..k {
            m[(i, j)] /= col_sum;
        }
    }
}

/// `count.estimate_latent` (`py_method="cnt"`, no convergence step): the noise matrices from
/// the confident joint's column and row sums, and `py = inv.diag / noise.diag * ps`, clipped
/// to [1e-6, 1] and renormalized.
fn estimate_latent(cj: &Array2<i64>, counts: &[i64], n: usize) -> (Vec<f64>, Array2<f64>, Array2<f64>) {
    let k = counts.len();
    let row_sums: Vec<f64> = (0..k).map(|i| cj.row(i).sum() as f64).collect();
    let col_sums: Vec<f64> = (0..k).map(|j| cj.column(j).sum() as f64).collect();
    let mut noise = Array2::from_shape_fn((k, k), |(i, j)| cj[(i, j)] as f64 / col_sums[j].max(TINY));
    let mut inv = Array2::from_shape_fn((k, k), |(i, j)| cj[(j, i)] as f64 / row_sums[j].max(TINY));
    let py: Vec<f64> = (0..k)
        .map(|j| {
            let ps = counts[j] as f64 / n as f64;
            (inv[(j, j)] / noise[(j, j)].max(TINY) * ps).clamp(PY_LOWER_BOUND, 1.0)
        })
        .collect();
    let py_sum = super::stats::pairwise_sum(&py).max(TINY);
    let py = py.iter().map(|v| v * 1.0 / py_sum).collect();
    clip_noise_rates(&mut noise);
    clip_noise_rates(&mut inv);
    (py, noise, inv)
}

/// `filter._keep_at_least_n_per_class` on `prune[true, given]` (the confident joint
/// transposed): each class keeps at least `keep` examples, taking the difference evenly from
/// that column's non-zero noise counts, truncated to integers.
fn keep_at_least(prune: &Array2<i64>, keep: usize) -> Array2<i64> {
    let k = prune.nrows();
    let mut out = Array2::<i64>::zeros((k, k));
    for j in 0..k {
        let diag = prune[(j, j)];
        let new_diag = diag.max(keep as i64);
        let diff = (new_diag - diag) as f64;
        let nonzero = prune.column(j).iter().filter(|&&v| v != 0).count() as f64;
        let rates = (nonzero - 1.0).max(1.0);
        for i in 0..k {
            out[(i, j)] = if i == j { new_diag } else { (prune[(i, j)] as f64 - diff / rates).max(0.0) as i64 };
        }
    }
    out
}

/// Whether the model, given a 1e-6 head start to the given label, predicts it
/// (`filter._reduce_issues`): such an example is never an issue.
fn model_agrees(row: ndarray::ArrayView1<'_, f64>, y: usize) -> bool {
    argmax(row.iter().enumerate().map(|(j, &p)| if j == y { p + SLACK } else { p })) == y
}

/// `filter._prune_by_count` for every class: among the examples labelled `given` (when more
/// than `min_examples` are), flag for each other class `true` the `prune[true, given]` with
/// the largest margin `p[true] - p[given]` (ties by row order).
fn prune_by_noise_rate(
    labels: &[i64],
    pred_probs: &ArrayView2<'_, f64>,
    prune: &Array2<i64>,
    min_examples: usize,
) -> Vec<bool> {
    let k = prune.nrows();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &y) in labels.iter().enumerate() {
        members[y as usize].push(i);
    }
    // One pass over each class's rows gathers the margins against every class to prune for
    // (one cache miss per row, not one per row and class), then one selection per class.
    let picked: Vec<Vec<usize>> = crate::sys::pool::run_default(labels.len(), || {
        (0..k)
            .into_par_iter()
            .filter(|&given| members[given].len() > min_examples)
            .map(|given| {
                let rows = &members[given];
                let truths: Vec<(usize, usize)> = (0..k)
                    .filter(|&truth| truth != given && prune[(truth, given)] > 0)
                    .map(|truth| (truth, (prune[(truth, given)] as usize).min(rows.len())))
                    .collect();
                let mut margins: Vec<Vec<(f64, usize)>> =
                    truths.iter().map(|_| Vec::with_capacity(rows.len())).collect();
                for &i in rows {
                    let row = pred_probs.row(i);
                    for (m, &(truth, _)) in margins.iter_mut().zip(&truths) {
                        m.push((row[truth] - row[given], i));
                    }
                }
                // Largest margin first, then row order; margins are finite (checked).
                let order =
                    |a: &(f64, usize), b: &(f64, usize)| b.0.partial_cmp(&a.0).expect("finite").then(a.1.cmp(&b.1));
                let mut flagged = Vec::new();
                for (m, &(_, count)) in margins.iter_mut().zip(&truths) {
                    if count < m.len() {
                        m.select_nth_unstable_by(count - 1, order);
                    }
                    flagged.extend(m[..count].iter().map(|e| e.1));
                }
                flagged
            })
            .collect()
    });
    let mut flags = vec![false; labels.len()];
    for i in picked.iter().flatten() {
        flags[*i] = true;
    }
    flags
}

/// Label issues from out-of-sample `pred_probs` `(n, K)` and `labels` in `0..K`, as cleanlab's
/// `Datalab` finds them (see the module's documentation).
pub fn find_label_issues(labels: &[i64], pred_probs: ArrayView2<'_, f64>, opts: &LabelOptions) -> Result<LabelIssues> {
    let k = check(labels, &pred_probs)?;
    let n = labels.len();
    let counts = label_counts(labels, k);
    let default = default_thresholds(labels, &pred_probs, k);
    if let Some(t) = &opts.thresholds {
        if t.len() != k {
            return Err(Error::InvalidInput(format!("thresholds has {} values for {k} classes", t.len())));
        }
        if let Some(v) = t.iter().find(|v| v.is_nan()) {
            return Err(Error::InvalidInput(format!("thresholds holds {v}")));
        }
    }
    let default_guesses = true_label_guesses(&pred_probs, &default);
    let default_joint = calibrate(&confident_counts(labels, &default_guesses, k), &counts);
    let confident_joint = match &opts.thresholds {
        None => default_joint.clone(),
        Some(t) => calibrate(&confident_counts(labels, &true_label_guesses(&pred_probs, t), k), &counts),
    };
    let (py, noise_matrix, inverse_noise_matrix) = estimate_latent(&confident_joint, &counts, n);
    let prune = keep_at_least(&confident_joint.t().to_owned(), opts.min_examples_per_class);
    let mut is_issue = prune_by_noise_rate(labels, &pred_probs, &prune, opts.min_examples_per_class);
    let per_example = per_row(n, |i| {
        let (row, y) = (pred_probs.row(i), labels[i] as usize);
        (model_agrees(row, y), row[y], argmax(row.iter().copied()) as i64)
    });
    let mut num_off_diagonal = 0;
    for (i, &(agrees, _, _)) in per_example.iter().enumerate() {
        if agrees {
            is_issue[i] = false;
        } else if default_guesses[i] >= 0 && default_guesses[i] != labels[i] {
            num_off_diagonal += 1;
        }
    }
    let score = per_example.iter().map(|e| e.1).collect();
    let predicted = per_example.iter().map(|e| e.2).collect();
    let joint_total = (default_joint.sum() as f64).max(TINY);
    let joint = default_joint.mapv(|v| v as f64 / joint_total);
    Ok(LabelIssues {
        is_issue,
        score,
        predicted,
        confident_thresholds: default,
        confident_joint,
        py,
        noise_matrix,
        inverse_noise_matrix,
        joint,
        num_off_diagonal,
    })
}

/// Out-of-sample probabilities from the labels of each example's `k` nearest other examples,
/// as cleanlab's `LabelIssueManager` derives them from features: a `KNeighborsClassifier` with
/// `k + 1` neighbours (the example itself among them) whose vote is then corrected,
/// `(p - onehot(label) / (k + 1)) * (k + 1) / k`, in that order of operations.
/// `indices` is `(n, >= k)`, the neighbours of each row nearest first, never the row itself.
pub fn knn_pred_probs(labels: &[i64], indices: ArrayView2<'_, i64>, k: usize, n_classes: usize) -> Result<Array2<f64>> {
    let n = labels.len();
    if indices.nrows() != n {
        return Err(Error::InvalidInput(format!("the neighbour graph has {} rows for {n} examples", indices.nrows())));
    }
    if k == 0 || k > indices.ncols() {
        return Err(Error::InvalidInput(format!(
            "k={k} neighbours asked of a graph with {} per example (k must be in 1..={})",
            indices.ncols(),
            indices.ncols()
        )));
    }
    super::check_labels(labels, n_classes)?;
    for (i, nb) in indices.outer_iter().enumerate() {
        if let Some(&j) = nb.iter().take(k).find(|&&j| j < 0 || j as u64 >= n as u64 || j as usize == i) {
            return Err(Error::InvalidInput(format!(
                "row {i} of the neighbour graph names {j}, not another of the {n} examples"
            )));
        }
    }
    let mut flat = vec![0.0f64; n * n_classes];
    let votes = (k + 1) as f64;
    let rows_per_task = super::CHUNK;
    crate::sys::pool::run_default(n, || {
        flat.par_chunks_mut(rows_per_task * n_classes.max(1)).enumerate().for_each(|(c, chunk)| {
            for (r, out) in chunk.chunks_mut(n_classes.max(1)).enumerate() {
                let i = c * rows_per_task + r;
                let y = labels[i] as usize;
                out[y] += 1.0;
                for &j in indices.row(i).iter().take(k) {
                    out[labels[j as usize] as usize] += 1.0;
                }
                for (class, v) in out.iter_mut().enumerate() {
                    let p = *v / votes;
                    let p = if class == y { p - 1.0 / votes } else { p };
                    *v = p * votes / k as f64;
                }
            }
        })
    });
    let probs = Array2::from_shape_vec((n, n_classes), flat).expect("n * n_classes values");
    Ok(probs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use proptest::prelude::*;

    #[test]
    fn round_preserving_sum_keeps_the_total() {
        assert_eq!(round_preserving_sum(&[0.5, 0.5, 1.0]), vec![0, 1, 1]);
        assert_eq!(round_preserving_sum(&[1.4, 1.4, 1.2]), vec![1, 2, 1]);
        assert_eq!(round_preserving_sum(&[2.6, 2.6, 0.8]), vec![2, 3, 1]);
    }

    #[test]
    fn a_clean_dataset_has_no_issues() {
        let p = array![[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9]];
        let out = find_label_issues(&[0, 0, 1, 1], p.view(), &LabelOptions::default()).unwrap();
        assert_eq!(out.is_issue, vec![false; 4]);
        assert_eq!(out.num_off_diagonal, 0);
        assert_eq!(out.score, vec![0.9, 0.8, 0.8, 0.9]);
        assert_eq!(out.confident_joint, array![[2, 0], [0, 2]]);
    }

    #[test]
    fn a_confidently_wrong_label_is_flagged() {
        // 12 examples of class 0, the last one looking like class 1.
        let mut rows = vec![[0.9, 0.1]; 11];
        rows.push([0.05, 0.95]);
        rows.extend(vec![[0.1, 0.9]; 12]);
        let labels: Vec<i64> = (0..24).map(|i| i64::from(i >= 12)).collect();
        let p = Array2::from_shape_vec((24, 2), rows.concat()).unwrap();
        let out = find_label_issues(&labels, p.view(), &LabelOptions::default()).unwrap();
        let flagged: Vec<usize> = (0..24).filter(|&i| out.is_issue[i]).collect();
        assert_eq!(flagged, vec![11]);
        assert_eq!(out.num_off_diagonal, 1);
        assert_eq!(out.predicted[11], 1);
        assert_eq!(out.confident_joint.sum(), 24);
    }

    #[test]
    fn bad_input_is_an_error() {
        let p = array![[0.9, 0.1], [0.2, 0.8]];
        let opts = LabelOptions::default();
        assert!(find_label_issues(&[0], p.view(), &opts).is_err());
        assert!(find_label_issues(&[0, 2], p.view(), &opts).is_err());
        assert!(find_label_issues(&[0, -1], p.view(), &opts).is_err());
        let nan = array![[f64::NAN, 0.1], [0.2, 0.8]];
        assert!(find_label_issues(&[0, 1], nan.view(), &opts).is_err());
        let one = array![[1.0], [1.0]];
        assert!(find_label_issues(&[0, 0], one.view(), &opts).is_err());
        let empty = Array2::<f64>::zeros((0, 2));
        assert!(find_label_issues(&[], empty.view(), &opts).is_err());
        let t = LabelOptions { thresholds: Some(vec![0.5]), ..LabelOptions::default() };
        assert!(find_label_issues(&[0, 1], p.view(), &t).is_err());
    }

    #[test]
    fn knn_probabilities_are_the_neighbours_vote() {
        let labels = [0, 0, 1, 1];
        let idx = array![[1, 2], [0, 3], [3, 0], [2, 1]];
        let p = knn_pred_probs(&labels, idx.view(), 2, 2).unwrap();
        for (row, want) in p.outer_iter().zip([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]) {
            for (a, b) in row.iter().zip(want) {
                assert!((a - b).abs() < 1e-12);
            }
        }
        let p = knn_pred_probs(&labels, idx.view(), 1, 2).unwrap();
        assert_eq!(p.row(0).to_vec(), vec![1.0, 0.0]);
        assert!(knn_pred_probs(&labels, idx.view(), 3, 2).is_err());
        let selfish = array![[0, 2], [0, 3], [3, 0], [2, 1]];
        assert!(knn_pred_probs(&labels, selfish.view(), 2, 2).is_err());
    }

    proptest! {
        #[test]
        fn flags_come_from_the_pruned_counts(rows in proptest::collection::vec((0.0f64..1.0, 0.0f64..1.0, 0.0f64..1.0, 0i64..3), 1..80)) {
            let n = rows.len();
            let labels: Vec<i64> = rows.iter().map(|r| r.3).collect();
            let flat: Vec<f64> = rows.iter().flat_map(|r| {
                let s = r.0 + r.1 + r.2 + 1e-9;
                [r.0 / s, r.1 / s, r.2 / s]
            }).collect();
            let p = Array2::from_shape_vec((n, 3), flat).unwrap();
            let out = find_label_issues(&labels, p.view(), &LabelOptions::default()).unwrap();
            prop_assert_eq!(out.confident_joint.sum(), n as i64);
            for (i, &y) in labels.iter().enumerate() {
                if out.is_issue[i] {
                    prop_assert!(!model_agrees(p.row(i), y as usize));
                }
            }
            let py_sum: f64 = out.py.iter().sum();
            prop_assert!((py_sum - 1.0).abs() < 1e-9);
            prop_assert!(out.num_off_diagonal <= n);
        }
    }
}

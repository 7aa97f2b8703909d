//! Underperforming groups as cleanlab 2.x's `UnderperformingGroupIssueManager` finds them:
//! DBSCAN (scikit-learn's, `metric="precomputed"`) on the sparse kNN distance graph, then each
//! cluster's mean self-confidence against the mean over all clustered examples.

use super::stats::numpy_mean;
use crate::error::{Error, Result};
use ndarray::ArrayView2;

/// DBSCAN's label for an example in no cluster.
pub const NOISE: i64 = -1;
/// cleanlab's `NO_UNDERPERFORMING_CLUSTER_ID`: no cluster is underperforming.
pub const NO_UNDERPERFORMING_CLUSTER: i64 = -2;

/// scikit-learn's `DBSCAN(eps, min_samples, metric="precomputed").fit_predict(graph)` on a
/// kNN distance graph: an example's neighbourhood is itself (scikit-learn sets the graph's
/// diagonal) and the graph's neighbours at distance `<= eps` (compared in float32, as numpy
/// compares the graph's float32 distances with a Python float); core examples have at least
/// `min_samples` in it. Clusters grow from the core examples in row order, each taking every
/// unlabelled example reachable through core examples, so a border example joins the first
/// cluster that reaches it: the same labels as scikit-learn's `dbscan_inner`.
pub fn dbscan(
    indices: ArrayView2<'_, i64>,
    distances: ArrayView2<'_, f32>,
    eps: f64,
    min_samples: usize,
) -> Result<Vec<i64>> {
    let n = indices.nrows();
    if distances.dim() != indices.dim() {
        return Err(Error::InvalidInput(format!(
            "neighbour distances {:?} and indices {:?} differ in shape",
            distances.dim(),
            indices.dim()
        )));
    }
    if eps.is_nan() || eps <= 0.0 {
        return Err(Error::InvalidInput(format!("eps must be positive, got {eps}")));
    }
    if min_samples == 0 {
        return Err(Error::InvalidInput("min_samples must be at least 1".into()));
    }
    let eps = eps as f32;
    // Neighbourhoods in CSR form, the example itself excluded (it is always in its own).
    let mut start = Vec::with_capacity(n + 1);
    let mut flat: Vec<usize> = Vec::new();
    start.push(0);
    for (i, (row, dist)) in indices.outer_iter().zip(distances.outer_iter()).enumerate() {
        for (&j, &d) in row.iter().zip(dist.iter()) {
            if j < 0 || j as u64 >= n as u64 {
                return Err(Error::InvalidInput(format!(
                    "row {i} of the neighbour graph names {j}, not one of the {n} examples"
                )));
            }
            if d.is_nan() || d < 0.0 {
                return Err(Error::InvalidInput(format!("row {i} of the neighbour graph has distance {d}")));
            }
            if d <= eps && j as usize != i {
                flat.push(j as usize);
            }
        }
        start.push(flat.len());
    }
    let core: Vec<bool> = (0..n).map(|i| 1 + start[i + 1] - start[i] >= min_samples).collect();
    let mut labels = vec![NOISE; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut next = 0i64;
    for seed in 0..n {
        if labels[seed] != NOISE || !core[seed] {
            continue;
        }
        labels[seed] = next;
        stack.push(seed);
        while let Some(i) = stack.pop() {
            if !core[i] {
                continue;
            }
            for &j in &flat[start[i]..start[i + 1]] {
                if labels[j] == NOISE {
                    labels[j] = next;
                    stack.push(j);
                }
            }
        }
        next += 1;
    }
    Ok(labels)
}

/// The underperforming cluster and every example's score.
#[derive(Clone, Debug, PartialEq)]
pub struct Groups {
    /// `underperforming_group_score`: the example's cluster's ratio to the mean when below
    /// it, else 1.
    pub score: Vec<f64>,
    /// `is_underperforming_group_issue`: the example is in the worst cluster.
    pub is_issue: Vec<bool>,
    /// The cluster flagged, or [`NO_UNDERPERFORMING_CLUSTER`].
    pub worst_cluster_id: i64,
    /// The summary score: the ratio cleanlab keeps as the worst (1 when no cluster is below
    /// the mean).
    pub worst_ratio: f64,
    /// Clusters counted (not noise, at least `min_cluster_samples` examples).
    pub n_clusters: usize,
}

/// cleanlab's `get_underperforming_clusters` and its scores. Clusters are the ids other than
/// -1 with at least `min_cluster_samples` examples, visited in increasing id order; a cluster
/// whose mean self-confidence `perf` is below the mean `m` over all clustered examples scores
/// `perf / m`, and becomes the worst when its `perf` (not its ratio, as cleanlab compares) is
/// below the worst ratio so far. It is flagged when that ratio is below `threshold`.
pub fn underperforming_groups(
    labels: &[i64],
    pred_probs: ArrayView2<'_, f64>,
    cluster_ids: &[i64],
    min_cluster_samples: usize,
    threshold: f64,
) -> Result<Groups> {
    let (n, k) = pred_probs.dim();
    if labels.len() != n || cluster_ids.len() != n {
        return Err(Error::InvalidInput(format!(
            "labels ({}), pred_probs ({n}) and cluster_ids ({}) differ in length",
            labels.len(),
            cluster_ids.len()
        )));
    }
    super::check_labels(labels, k)?;
    if let Some(i) = cluster_ids.iter().position(|&c| c < NOISE) {
        return Err(Error::InvalidInput(format!(
            "cluster_ids[{i}] is {}; cluster ids are non-negative, or -1 for no cluster",
            cluster_ids[i]
        )));
    }
    if threshold.is_nan() {
        return Err(Error::InvalidInput("threshold is NaN".into()));
    }
    let confidence: Vec<f64> = labels.iter().enumerate().map(|(i, &y)| pred_probs[(i, y as usize)]).collect();
    if let Some(i) = confidence.iter().position(|v| !v.is_finite()) {
        return Err(Error::InvalidInput(format!("pred_probs[{i}] of the given label is {}", confidence[i])));
    }
    let n_ids = cluster_ids.iter().copied().max().unwrap_or(NOISE) + 1;
    let mut size = vec![0usize; n_ids as usize];
    for &c in cluster_ids.iter().filter(|&&c| c != NOISE) {
        size[c as usize] += 1;
    }
    let kept: Vec<usize> = (0..size.len()).filter(|&c| size[c] > 0 && size[c] >= min_cluster_samples).collect();
    if kept.is_empty() {
        return Err(Error::Empty(
            "no meaningful clusters were generated for determining underperforming group \
             (none but noise has min_cluster_samples examples)"
                .into(),
        ));
    }
    let mut keep = vec![false; size.len()];
    for &c in &kept {
        keep[c] = true;
    }
    let in_kept = |c: i64| c != NOISE && keep[c as usize];
    let mut members: Vec<Vec<f64>> = vec![Vec::new(); size.len()];
    let mut clustered = Vec::new();
    for (&c, &v) in cluster_ids.iter().zip(&confidence) {
        if in_kept(c) {
            members[c as usize].push(v);
            clustered.push(v);
        }
    }
    let mean = numpy_mean(&clustered);
    let mut ratio = vec![1.0f64; size.len()];
    let mut worst_ratio = 1.0f64;
    let mut worst = kept[0] as i64 - 1;
    for &c in &kept {
        let perf = numpy_mean(&members[c]);
        if perf < mean {
            ratio[c] = perf / mean;
            if perf < worst_ratio {
                worst_ratio = ratio[c];
                worst = c as i64;
            }
        }
    }
    let worst_cluster_id = if worst_ratio < threshold { worst } else { NO_UNDERPERFORMING_CLUSTER };
    let score = cluster_ids.iter().map(|&c| if in_kept(c) { ratio[c as usize] } else { 1.0 }).collect();
    let is_issue = cluster_ids.iter().map(|&c| c == worst_cluster_id).collect();
    Ok(Groups { score, is_issue, worst_cluster_id, worst_ratio, n_clusters: kept.len() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};
    use proptest::prelude::*;

    /// scikit-learn's algorithm as written there: a dense neighbourhood list, a stack.
    fn dbscan_reference(idx: &Array2<i64>, dist: &Array2<f32>, eps: f32, min_samples: usize) -> Vec<i64> {
        let n = idx.nrows();
        let hoods: Vec<Vec<usize>> = (0..n)
            .map(|i| {
                let mut h = vec![i];
                h.extend((0..idx.ncols()).filter(|&c| dist[(i, c)] <= eps).map(|c| idx[(i, c)] as usize));
                h
            })
            .collect();
        let core: Vec<bool> = hoods.iter().map(|h| h.len() >= min_samples).collect();
        let mut labels = vec![-1i64; n];
        let mut label = 0;
        for start in 0..n {
            if labels[start] != -1 || !core[start] {
                continue;
            }
            let mut i = start;
            let mut stack = Vec::new();
            loop {
                if labels[i] == -1 {
                    labels[i] = label;
                    if core[i] {
                        for &v in &hoods[i] {
                            if labels[v] == -1 {
                                stack.push(v);
                            }
                        }
                    }
                }
                match stack.pop() {
                    Some(v) => i = v,
                    None => break,
                }
            }
            label += 1;
        }
        labels
    }

    #[test]
    fn two_blobs_and_an_outlier() {
        // 0-2 close together, 3-5 close together, 6 far from all.
        let idx = array![[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4], [5, 4]];
        let dist = array![[0.1f32, 0.2], [0.1, 0.1], [0.1, 0.2], [0.1, 0.2], [0.1, 0.1], [0.1, 0.2], [3.0, 3.0]];
        let labels = dbscan(idx.view(), dist.view(), 0.5, 3).unwrap();
        assert_eq!(labels, vec![0, 0, 0, 1, 1, 1, -1]);
    }

    #[test]
    fn the_worst_cluster_below_threshold_is_flagged() {
        let p = array![[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.05, 0.95], [0.5, 0.5]];
        let labels = [0, 0, 0, 0, 0];
        let g = underperforming_groups(&labels, p.view(), &[0, 0, 1, 1, -1], 2, 0.5).unwrap();
        // clustered mean 0.4875 (noise left out); cluster 1 has 0.075
        assert_eq!(g.worst_cluster_id, 1);
        assert_eq!(g.is_issue, vec![false, false, true, true, false]);
        assert!((g.score[2] - 0.075 / 0.4875).abs() < 1e-12);
        assert_eq!(g.score[0], 1.0);
        assert_eq!(g.score[4], 1.0);
        let g = underperforming_groups(&labels, p.view(), &[0, 0, 1, 1, -1], 2, 0.1).unwrap();
        assert_eq!(g.worst_cluster_id, NO_UNDERPERFORMING_CLUSTER);
        assert_eq!(g.is_issue, vec![false; 5]);
    }

    #[test]
    fn bad_input_is_an_error() {
        let p = array![[0.9, 0.1], [0.9, 0.1]];
        assert!(underperforming_groups(&[0, 0], p.view(), &[-1, -1], 1, 0.1).is_err());
        assert!(underperforming_groups(&[0, 0], p.view(), &[0, -3], 1, 0.1).is_err());
        assert!(underperforming_groups(&[0, 2], p.view(), &[0, 0], 1, 0.1).is_err());
        assert!(underperforming_groups(&[0], p.view(), &[0, 0], 1, 0.1).is_err());
        assert!(underperforming_groups(&[0, 0], p.view(), &[0, 0], 3, 0.1).is_err());
        let idx = array![[1], [0]];
        let dist = array![[0.1f32], [0.1]];
        assert!(dbscan(idx.view(), dist.view(), 0.0, 2).is_err());
        assert!(dbscan(idx.view(), dist.view(), 0.5, 0).is_err());
        let far = array![[2], [0]];
        assert!(dbscan(far.view(), dist.view(), 0.5, 2).is_err());
    }

    proptest! {
        #[test]
        fn dbscan_matches_scikit_learns_algorithm(
            n in 2usize..40,
            k in 1usize..5,
            seed in proptest::collection::vec((0usize..1000, 0.0f32..1.0), 200),
            min_samples in 1usize..6,
        ) {
            let k = k.min(n - 1);
            let mut idx = Array2::<i64>::zeros((n, k));
            let mut dist = Array2::<f32>::zeros((n, k));
            for i in 0..n {
                for c in 0..k {
                    let (r, d) = seed[(i * k + c) % seed.len()];
                    let mut j = (i + 1 + (r + c) % (n - 1)) % n;
                    if j == i { j = (j + 1) % n; }
                    idx[(i, c)] = j as i64;
                    dist[(i, c)] = d;
                }
            }
            let got = dbscan(idx.view(), dist.view(), 0.5, min_samples).unwrap();
            prop_assert_eq!(got, dbscan_reference(&idx, &dist, 0.5, min_samples));
        }
    }
}

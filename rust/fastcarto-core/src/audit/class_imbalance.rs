//! The `class_imbalance` issue type (cleanlab's `ClassImbalanceIssueManager`).
//!
//! With `K` classes, `n` examples and `p(c) = count(c) / n`, the rarest class is
//! `r = argmin_c p(c)` (ties to the smallest class index). Every example of class `r` scores
//! `p(r)`, every other example 1. The dataset is imbalanced when `p(r) < threshold * (1 / K)`
//! (cleanlab's default `threshold` is 0.1); then the examples of class `r` are the issues.
//! The summary score is `p(r)`. Floating-point operations are cleanlab's, in its order, so the
//! decision at the boundary is the same.

use crate::error::{Error, Result};

/// The class-imbalance finding of a label vector.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassImbalance {
    /// Per example: `p(r)` for the rarest class `r`, 1 for the others.
    pub scores: Vec<f64>,
    /// Per example: of the rarest class, and the dataset is imbalanced.
    pub is_issue: Vec<bool>,
    /// The rarest class `r`.
    pub rarest: u32,
    /// `p(r)`: its fraction of the examples (the summary score).
    pub rarest_fraction: f64,
    /// `p(r) < threshold / K`.
    pub imbalanced: bool,
}

/// Finds the rarest of `n_classes` classes among `labels` (codes `0..n_classes`).
pub fn class_imbalance(labels: &[i64], n_classes: usize, threshold: f64) -> Result<ClassImbalance> {
    if labels.is_empty() {
        return Err(Error::Empty("no labels to count".into()));
    }
    if n_classes == 0 {
        return Err(Error::invalid("class_imbalance needs at least one class"));
    }
    if !threshold.is_finite() {
        return Err(Error::invalid(format!("class_imbalance threshold must be a finite number, got {threshold}")));
    }
    let mut counts = vec![0u64; n_classes];
    for (i, &y) in labels.iter().enumerate() {
        match usize::try_from(y).ok().filter(|&c| c < n_classes) {
            Some(c) => counts[c] += 1,
            None => {
                return Err(Error::LabelOutOfRange {
                    example: (i as u64).into(),
                    label: y,
                    n_classes: n_classes as u32,
                    max: n_classes as u32 - 1,
                });
            }
        }
    }
    let n = labels.len() as f64;
    // argmin: the first of the smallest counts, as numpy's argmin over the fractions.
    let rarest = (0..n_classes).min_by_key(|&c| (counts[c], c)).unwrap_or(0);
    let rarest_fraction = counts[rarest] as f64 / n;
    let imbalanced = rarest_fraction < threshold * (1.0 / n_classes as f64);
    let r = rarest as i64;
    Ok(ClassImbalance {
        scores: labels.iter().map(|&y| if y == r { rarest_fraction } else { 1.0 }).collect(),
        is_issue: labels.iter().map(|&y| imbalanced && y == r).collect(),
        rarest: rarest as u32,
        rarest_fraction,
        imbalanced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_the_definition(labels in proptest::collection::vec(0i64..6, 1..300), threshold in 0.0f64..2.0) {
            let k = 6;
            let got = class_imbalance(&labels, k, threshold).unwrap();
            let n = labels.len() as f64;
            let p: Vec<f64> = (0..k as i64).map(|c| labels.iter().filter(|&&y| y == c).count() as f64 / n).collect();
            let min = p.iter().cloned().fold(f64::INFINITY, f64::min);
            let r = p.iter().position(|&x| x == min).unwrap();
            prop_assert_eq!(got.rarest as usize, r);
            prop_assert_eq!(got.rarest_fraction, p[r]);
            prop_assert_eq!(got.imbalanced, p[r] < threshold * (1.0 / k as f64));
            for (i, &y) in labels.iter().enumerate() {
                prop_assert_eq!(got.scores[i], if y as usize == r { p[r] } else { 1.0 });
                prop_assert_eq!(got.is_issue[i], got.imbalanced && y as usize == r);
            }
        }
    }

    #[test]
    fn absent_class_is_rarest_and_flags_nobody() {
        let got = class_imbalance(&[0, 0, 2, 2, 2], 3, 0.1).unwrap();
        assert_eq!((got.rarest, got.rarest_fraction, got.imbalanced), (1, 0.0, true));
        assert!(got.is_issue.iter().all(|&f| !f));
    }

    #[test]
    fn single_class_is_balanced() {
        let got = class_imbalance(&[0; 10], 1, 0.1).unwrap();
        assert!(!got.imbalanced);
        assert_eq!(got.scores, vec![1.0; 10]);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(class_imbalance(&[0, 3], 3, 0.1), Err(Error::LabelOutOfRange { label: 3, .. })));
        assert!(matches!(class_imbalance(&[0, -1], 3, 0.1), Err(Error::LabelOutOfRange { label: -1, .. })));
        assert!(matches!(class_imbalance(&[], 3, 0.1), Err(Error::Empty(_))));
        assert!(class_imbalance(&[0], 1, f64::NAN).is_err());
    }
}

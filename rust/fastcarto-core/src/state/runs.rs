//! The states of consecutive examples as structure of arrays: what the kernel updates epoch by
//! epoch, and what the table's columns are computed from.
//!
//! One field per array, so the kernel's per-epoch update is vector code, and each column of the
//! table is a loop over a few contiguous arrays (which LLVM vectorizes) instead of a pass over
//! 88-byte [`ExampleState`]s. A one-shot dense `compute` never builds the per-example states at
//! all: the kernel folds a task's examples here and the columns are written from here.

use crate::metrics::{ExampleState, NONE, Sums};
use std::ops::Range;

/// The states of consecutive examples, one array per field of [`ExampleState`] (and of its
/// [`Sums`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct RunColumns {
    pub(crate) mean: Vec<f64>,
    pub(crate) m2: Vec<f64>,
    pub(crate) sum_margin: Vec<f64>,
    pub(crate) sum_el2n: Vec<f64>,
    pub(crate) sum_loss: Vec<f64>,
    pub(crate) sum_entropy: Vec<f64>,
    pub(crate) n: Vec<u32>,
    pub(crate) n_correct: Vec<u32>,
    pub(crate) n_confident: Vec<u32>,
    pub(crate) forgetting: Vec<u32>,
    pub(crate) first_epoch: Vec<u32>,
    pub(crate) first_learned: Vec<u32>,
    pub(crate) stable_from: Vec<u32>,
    pub(crate) last_epoch: Vec<u32>,
    pub(crate) final_pred: Vec<u32>,
    pub(crate) label: Vec<u32>,
}

impl RunColumns {
    /// Every array but the labels', with the value an empty state ([`ExampleState::EMPTY`])
    /// holds there: the one list of fields that sizing and resetting share.
    #[allow(clippy::type_complexity)]
    fn arrays_mut(&mut self) -> ([(&mut Vec<f64>, f64); 6], [(&mut Vec<u32>, u32); 9]) {
        let e = ExampleState::EMPTY;
        let Sums { mean, m2, margin, el2n, loss, entropy } = e.sums;
        (
            [
                (&mut self.mean, mean),
                (&mut self.m2, m2),
                (&mut self.sum_margin, margin),
                (&mut self.sum_el2n, el2n),
                (&mut self.sum_loss, loss),
                (&mut self.sum_entropy, entropy),
            ],
            [
                (&mut self.n, e.n),
                (&mut self.n_correct, e.n_correct),
                (&mut self.n_confident, e.n_confident),
                (&mut self.forgetting, e.forgetting),
                (&mut self.first_epoch, e.first_epoch),
                (&mut self.first_learned, e.first_learned),
                (&mut self.stable_from, e.stable_from),
                (&mut self.last_epoch, e.last_epoch),
                (&mut self.final_pred, e.final_pred),
            ],
        )
    }

    /// Holds `len` examples; their states are unspecified until written or reset.
    pub(crate) fn resize(&mut self, len: usize) {
        let (f64s, u32s) = self.arrays_mut();
        f64s.into_iter().for_each(|(v, x)| v.resize(len, x));
        u32s.into_iter().for_each(|(v, x)| v.resize(len, x));
        self.label.resize(len, NONE);
    }

    /// `len` empty states (label none).
    #[cfg(test)]
    pub(crate) fn reset(&mut self, len: usize) {
        self.resize(len);
        self.reset_range(0, &vec![NONE; len]);
    }

    /// Examples `at..at + labels.len()` become empty states with those labels.
    pub(crate) fn reset_range(&mut self, at: usize, labels: &[u32]) {
        let r = at..at + labels.len();
        let (f64s, u32s) = self.arrays_mut();
        f64s.into_iter().for_each(|(v, x)| v[r.clone()].fill(x));
        u32s.into_iter().for_each(|(v, x)| v[r.clone()].fill(x));
        self.label[r].copy_from_slice(labels);
    }

    /// Overwrites example `i` with `s`.
    #[inline(always)]
    pub(crate) fn set(&mut self, i: usize, s: &ExampleState) {
        let Sums { mean, m2, margin, el2n, loss, entropy } = s.sums;
        self.mean[i] = mean;
        self.m2[i] = m2;
        self.sum_margin[i] = margin;
        self.sum_el2n[i] = el2n;
        self.sum_loss[i] = loss;
        self.sum_entropy[i] = entropy;
        self.n[i] = s.n;
        self.n_correct[i] = s.n_correct;
        self.n_confident[i] = s.n_confident;
        self.forgetting[i] = s.forgetting;
        self.first_epoch[i] = s.first_epoch;
        self.first_learned[i] = s.first_learned;
        self.stable_from[i] = s.stable_from;
        self.last_epoch[i] = s.last_epoch;
        self.final_pred[i] = s.final_pred;
        self.label[i] = s.label;
    }

    /// Holds exactly `states`, in order.
    pub(crate) fn set_all(&mut self, states: impl ExactSizeIterator<Item = ExampleState>) {
        self.resize(states.len());
        for (i, s) in states.enumerate() {
            self.set(i, &s);
        }
    }

    /// Example `i`'s state.
    #[inline(always)]
    pub(crate) fn example(&self, i: usize) -> ExampleState {
        self.tile(0..self.n.len()).get(i)
    }

    /// Examples `range`, read-only.
    #[inline(always)]
    pub(crate) fn tile(&self, range: Range<usize>) -> Tile<'_> {
        Tile {
            mean: &self.mean[range.clone()],
            m2: &self.m2[range.clone()],
            sum_margin: &self.sum_margin[range.clone()],
            sum_el2n: &self.sum_el2n[range.clone()],
            sum_loss: &self.sum_loss[range.clone()],
            sum_entropy: &self.sum_entropy[range.clone()],
            n: &self.n[range.clone()],
            n_correct: &self.n_correct[range.clone()],
            n_confident: &self.n_confident[range.clone()],
            forgetting: &self.forgetting[range.clone()],
            first_epoch: &self.first_epoch[range.clone()],
            first_learned: &self.first_learned[range.clone()],
            stable_from: &self.stable_from[range.clone()],
            last_epoch: &self.last_epoch[range.clone()],
            final_pred: &self.final_pred[range.clone()],
            label: &self.label[range],
        }
    }
}

/// Consecutive examples of a [`RunColumns`], read-only; every array has the same length.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tile<'a> {
    mean: &'a [f64],
    m2: &'a [f64],
    sum_margin: &'a [f64],
    sum_el2n: &'a [f64],
    sum_loss: &'a [f64],
    sum_entropy: &'a [f64],
    n: &'a [u32],
    n_correct: &'a [u32],
    n_confident: &'a [u32],
    forgetting: &'a [u32],
    first_epoch: &'a [u32],
    first_learned: &'a [u32],
    stable_from: &'a [u32],
    last_epoch: &'a [u32],
    final_pred: &'a [u32],
    label: &'a [u32],
}

impl Tile<'_> {
    pub(crate) fn len(&self) -> usize {
        self.n.len()
    }

    /// Calls `f(i, state of example i)` for every example in order. Each array is cut to the
    /// same length first, so the indexing needs no bounds checks and a loop whose `f` reads a
    /// few fields loads only those and vectorizes.
    #[inline(always)]
    pub(crate) fn for_each(&self, mut f: impl FnMut(usize, ExampleState)) {
        let len = self.len();
        let t = Tile {
            mean: &self.mean[..len],
            m2: &self.m2[..len],
            sum_margin: &self.sum_margin[..len],
            sum_el2n: &self.sum_el2n[..len],
            sum_loss: &self.sum_loss[..len],
            sum_entropy: &self.sum_entropy[..len],
            n: &self.n[..len],
            n_correct: &self.n_correct[..len],
            n_confident: &self.n_confident[..len],
            forgetting: &self.forgetting[..len],
            first_epoch: &self.first_epoch[..len],
            first_learned: &self.first_learned[..len],
            stable_from: &self.stable_from[..len],
            last_epoch: &self.last_epoch[..len],
            final_pred: &self.final_pred[..len],
            label: &self.label[..len],
        };
        for i in 0..len {
            f(i, t.get(i));
        }
    }

    /// Example `i`'s state.
    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> ExampleState {
        ExampleState {
            sums: Sums {
                mean: self.mean[i],
                m2: self.m2[i],
                margin: self.sum_margin[i],
                el2n: self.sum_el2n[i],
                loss: self.sum_loss[i],
                entropy: self.sum_entropy[i],
            },
            n: self.n[i],
            n_correct: self.n_correct[i],
            n_confident: self.n_confident[i],
            forgetting: self.forgetting[i],
            first_epoch: self.first_epoch[i],
            last_epoch: self.last_epoch[i],
            first_learned: self.first_learned[i],
            stable_from: self.stable_from[i],
            final_pred: self.final_pred[i],
            label: self.label[i],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_reset_to_empty() {
        let mut s = ExampleState::EMPTY;
        s.sums = Sums::from_array([0.5, 0.25, -1.0, 2.0, 3.0, 4.0]);
        (s.n, s.n_correct, s.n_confident, s.forgetting) = (5, 4, 3, 1);
        (s.first_epoch, s.last_epoch, s.first_learned, s.stable_from, s.final_pred, s.label) = (0, 9, 2, 6, 1, 1);
        let mut run = RunColumns::default();
        run.set_all([ExampleState::EMPTY, s, s].into_iter());
        assert_eq!(run.example(1), s);
        let mut seen = Vec::new();
        run.tile(1..3).for_each(|i, state| seen.push((i, state)));
        assert_eq!(seen, vec![(0, s), (1, s)]);
        run.reset_range(1, &[7]);
        assert_eq!(run.example(1), ExampleState { label: 7, ..ExampleState::EMPTY });
        assert_eq!(run.example(2), s);
        run.reset(2);
        assert_eq!(run.example(1), ExampleState::EMPTY);
    }
}

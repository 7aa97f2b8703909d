//! What one epoch says about one example ([`Observation`]) and everything fastcarto remembers
//! about one example ([`ExampleState`]): fixed size, updated one epoch at a time, and mergeable.
//!
//! Every metric is a function of an [`ExampleState`]. Two states of the same example merge
//! exactly when one covers strictly later epochs than the other (Chan et al.'s pairwise update
//! for the mean and the sum of squared deviations; order-aware bookkeeping for forgetting), and a
//! state that saw nothing is the identity. Threads, shards, files and machines all reuse
//! [`ExampleState::merge`].

use crate::error::{Error, Result};

/// Marks an epoch or class that does not exist (never learned, never observed, ...).
pub const NONE: u32 = u32::MAX;

/// What one epoch's output says about one example.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Probability of the gold label.
    pub gold_prob: f64,
    /// Gold score minus the largest other score (logits, or probabilities for `kind="probs"`).
    pub margin: f64,
    /// L2 norm of `p - onehot(gold)`.
    pub el2n: f64,
    /// Cross-entropy `-ln p(gold)`.
    pub loss: f64,
    /// Predictive entropy `-sum p ln p`.
    pub entropy: f64,
    /// Predicted class (first maximum wins ties).
    pub pred: u32,
}

/// The running sums of one example's observations: every float a metric is computed from.
///
/// A field added here must be handled wherever states are built, merged, stored and read:
/// struct literals and exhaustive destructuring (`let Sums { .. } = ..` without `..`) make each of
/// those places fail to compile until it does (see ARCHITECTURE.md, "Adding a metric").
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Sums {
    /// Running mean of p(gold) (Welford / Chan).
    pub mean: f64,
    /// Sum of squared deviations of p(gold) from the mean.
    pub m2: f64,
    /// Sum of the margins (AUM is their mean).
    pub margin: f64,
    /// Sum of the EL2N scores.
    pub el2n: f64,
    /// Sum of the cross-entropy losses.
    pub loss: f64,
    /// Sum of the predictive entropies.
    pub entropy: f64,
}

impl Sums {
    /// The sums of no observation.
    pub const ZERO: Sums = Sums { mean: 0.0, m2: 0.0, margin: 0.0, el2n: 0.0, loss: 0.0, entropy: 0.0 };

    /// The number of sums.
    pub const LEN: usize = 6;

    /// The sums in declaration order, for code that treats them alike (serialization,
    /// comparisons).
    #[inline(always)]
    pub fn to_array(self) -> [f64; Sums::LEN] {
        let Sums { mean, m2, margin, el2n, loss, entropy } = self;
        [mean, m2, margin, el2n, loss, entropy]
    }

    /// The inverse of [`to_array`](Self::to_array).
    #[inline(always)]
    pub fn from_array([mean, m2, margin, el2n, loss, entropy]: [f64; Sums::LEN]) -> Sums {
        Sums { mean, m2, margin, el2n, loss, entropy }
    }

    /// The sums of a single observation.
    #[inline(always)]
    pub fn single(obs: &Observation) -> Sums {
        Sums { mean: obs.gold_prob, m2: 0.0, margin: obs.margin, el2n: obs.el2n, loss: obs.loss, entropy: obs.entropy }
    }

    /// These sums of `n` observations after one more, later one: Welford's update and the plain
    /// sums. The wide state ([`ExampleState::push_later`]) and the packed in-place update
    /// (`state::packed::Packed`) both call this, so they give the same bits.
    #[inline(always)]
    pub(crate) fn push_later(self, n: u32, obs: &Observation) -> Sums {
        let Sums { mean, m2, margin, el2n, loss, entropy } = self;
        let (na, nf) = (n as f64, (n + 1) as f64);
        let delta = obs.gold_prob - mean;
        let inv = 1.0 / nf;
        Sums {
            mean: mean + delta * inv,
            m2: m2 + delta * delta * (na * inv),
            margin: margin + obs.margin,
            el2n: el2n + obs.el2n,
            loss: loss + obs.loss,
            entropy: entropy + obs.entropy,
        }
    }

    /// The sums of `early`'s `na` observations followed by `late`'s `nb` (Chan et al.'s pairwise
    /// update for the mean and m2).
    #[inline(always)]
    fn merge_ordered(early: &Sums, late: &Sums, na: u32, nb: u32) -> Sums {
        let (na, nb, nf) = (na as f64, nb as f64, (na + nb) as f64);
        let delta = late.mean - early.mean;
        // One division, shared: with `nb == 1` these are exactly `push_later`'s and the dense
        // kernel's expressions, so every path agrees bit for bit.
        let inv = 1.0 / nf;
        Sums {
            mean: early.mean + delta * (nb * inv),
            m2: early.m2 + late.m2 + delta * delta * (na * nb * inv),
            margin: early.margin + late.margin,
            el2n: early.el2n + late.el2n,
            loss: early.loss + late.loss,
            entropy: early.entropy + late.entropy,
        }
    }
}

/// Everything fastcarto remembers about one example: 88 bytes, whatever the number of epochs.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct ExampleState {
    /// The running sums of the observations.
    pub sums: Sums,
    /// Epochs observed.
    pub n: u32,
    /// Epochs where the prediction was the gold label.
    pub n_correct: u32,
    /// Epochs where p(gold) > 0.5 (Data-IQ's notion of correct).
    pub n_confident: u32,
    /// Correct-to-wrong transitions between consecutive observed epochs.
    pub forgetting: u32,
    pub first_epoch: u32,
    pub last_epoch: u32,
    /// First epoch predicted correctly, or [`NONE`].
    pub first_learned: u32,
    /// First epoch from which every later observed epoch is correct, or [`NONE`].
    pub stable_from: u32,
    /// Prediction at the last observed epoch, or [`NONE`].
    pub final_pred: u32,
    /// Gold label, or [`NONE`] before the first observation.
    pub label: u32,
}

impl Default for ExampleState {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl ExampleState {
    /// The state of an example nothing is known about; the identity of [`merge`](Self::merge).
    pub const EMPTY: ExampleState = ExampleState {
        sums: Sums::ZERO,
        n: 0,
        n_correct: 0,
        n_confident: 0,
        forgetting: 0,
        first_epoch: NONE,
        last_epoch: NONE,
        first_learned: NONE,
        stable_from: NONE,
        final_pred: NONE,
        label: NONE,
    };

    /// The state after a single observation.
    #[inline(always)]
    pub fn single(epoch: u32, label: u32, obs: &Observation) -> Self {
        let correct = obs.pred == label;
        let learned = if correct { epoch } else { NONE };
        ExampleState {
            sums: Sums::single(obs),
            n: 1,
            n_correct: correct as u32,
            n_confident: (obs.gold_prob > 0.5) as u32,
            forgetting: 0,
            first_epoch: epoch,
            last_epoch: epoch,
            first_learned: learned,
            stable_from: learned,
            final_pred: obs.pred,
            label,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Correct at its first observed epoch.
    fn starts_correct(&self) -> bool {
        self.first_learned == self.first_epoch
    }

    /// Correct at its last observed epoch.
    fn ends_correct(&self) -> bool {
        self.stable_from != NONE
    }

    /// Adds one observation that must be later than every epoch seen so far: `merge` with a
    /// single-observation state (the engine's bulk path, `kernel::RunColumns`, applies the same
    /// arithmetic to whole runs of examples at once).
    pub fn observe(&mut self, example: u64, epoch: u32, label: u32, obs: &Observation) -> Result<()> {
        *self = Self::merge_ordered(example, self, &Self::single(epoch, label, obs), false)?;
        Ok(())
    }

    /// Adds one observation at `epoch` to a state that has observed something, all of it
    /// earlier, with the same label: the same arithmetic as [`merge`](Self::merge) with
    /// [`single`](Self::single), rounding included, without the checks or the copy — the
    /// long-table reader's per-row path. Callers check the three conditions first.
    #[inline(always)]
    pub fn push_later(&mut self, epoch: u32, obs: &Observation) {
        debug_assert!(self.n > 0 && self.last_epoch < epoch);
        let correct = obs.pred == self.label;
        let was_correct = self.ends_correct();
        self.sums = self.sums.push_later(self.n, obs);
        self.n += 1;
        self.n_correct += correct as u32;
        self.n_confident += (obs.gold_prob > 0.5) as u32;
        self.forgetting += (was_correct && !correct) as u32;
        self.last_epoch = epoch;
        (self.first_learned, self.stable_from) =
            later_learned(correct, was_correct, self.first_learned, self.stable_from, epoch, NONE);
        self.final_pred = obs.pred;
    }

    /// Combines two states of the same example. Exact for counts; floats agree with a single
    /// pass to rounding. Fails when the epochs overlap (a duplicate) or interleave (forgetting
    /// would depend on an order neither state knows), or when the labels differ.
    pub fn merge(example: u64, a: &Self, b: &Self, allow_label_change: bool) -> Result<Self> {
        if a.n == 0 && b.n == 0 {
            // Neither observed anything; keep whichever label is known (all epochs omitted).
            return Ok(if a.label != NONE { *a } else { *b });
        }
        if a.n == 0 {
            return Ok(*b);
        }
        if b.n == 0 {
            return Ok(*a);
        }
        if a.last_epoch < b.first_epoch {
            Self::merge_ordered(example, a, b, allow_label_change)
        } else if b.last_epoch < a.first_epoch {
            Self::merge_ordered(example, b, a, allow_label_change)
        } else if let Some(epoch) = shared_endpoint(a, b) {
            Err(Error::DuplicateObservation { epoch, example: example.into() })
        } else {
            Err(Error::InterleavedEpochs {
                example: example.into(),
                first_a: a.first_epoch,
                last_a: a.last_epoch,
                first_b: b.first_epoch,
                last_b: b.last_epoch,
            })
        }
    }

    /// `early` covers strictly earlier epochs than `late` (or one of them is empty).
    #[inline(always)]
    fn merge_ordered(example: u64, early: &Self, late: &Self, allow_label_change: bool) -> Result<Self> {
        if early.n == 0 {
            return Ok(*late);
        }
        if late.n == 0 {
            return Ok(*early);
        }
        if late.first_epoch <= early.last_epoch {
            return Err(if late.first_epoch == early.last_epoch {
                Error::DuplicateObservation { epoch: late.first_epoch, example: example.into() }
            } else {
                Error::EpochOutOfOrder { example: example.into(), epoch: late.first_epoch, last: early.last_epoch }
            });
        }
        if early.label != late.label && !allow_label_change {
            return Err(Error::LabelChanged { example: example.into(), old: early.label, new: late.label });
        }
        let n = early.n + late.n;
        let forgotten_at_seam = (early.ends_correct() && !late.starts_correct()) as u32;
        let stable_from = if late.stable_from == late.first_epoch && early.ends_correct() {
            early.stable_from
        } else {
            late.stable_from
        };
        Ok(ExampleState {
            sums: Sums::merge_ordered(&early.sums, &late.sums, early.n, late.n),
            n,
            n_correct: early.n_correct + late.n_correct,
            n_confident: early.n_confident + late.n_confident,
            forgetting: early.forgetting + late.forgetting + forgotten_at_seam,
            first_epoch: early.first_epoch,
            last_epoch: late.last_epoch,
            first_learned: if early.first_learned != NONE { early.first_learned } else { late.first_learned },
            stable_from,
            final_pred: late.final_pred,
            label: late.label,
        })
    }
}

/// An epoch both states certainly observed: an endpoint of one span that is an endpoint of the
/// other, or the only epoch of a single-epoch state that is an endpoint of the other.
fn shared_endpoint(a: &ExampleState, b: &ExampleState) -> Option<u32> {
    [a.first_epoch, a.last_epoch].into_iter().find(|&e| e == b.first_epoch || e == b.last_epoch)
}

/// `first_learned` and `stable_from` after a later epoch `epoch`, predicted `correct`ly or not
/// (`was_correct`: the last epoch before it was); `none` marks a missing epoch (the wide and the
/// packed states mark it differently).
#[inline(always)]
pub(crate) fn later_learned<E: Copy + PartialEq>(
    correct: bool,
    was_correct: bool,
    first_learned: E,
    stable_from: E,
    epoch: E,
    none: E,
) -> (E, E) {
    let first_learned = if correct && first_learned == none { epoch } else { first_learned };
    let stable_from = match (correct, was_correct) {
        (false, _) => none,
        (true, true) => stable_from,
        (true, false) => epoch,
    };
    (first_learned, stable_from)
}

//! Per-example streaming state: fixed size, updated one epoch at a time, and mergeable.
//!
//! Every metric is a function of an [`ExampleState`]. Two states of the same example merge
//! exactly when one covers strictly later epochs than the other (Chan et al.'s pairwise update
//! for the mean and the sum of squared deviations; order-aware bookkeeping for forgetting), and a
//! state that saw nothing is the identity. Threads, shards, files and machines all reuse
//! [`ExampleState::merge`].

#[cfg(test)]
use crate::error::Example;
use crate::error::{Error, Result};
use crate::options::{Kind, Task};
use crate::slots::{Slot, Slots, with_slots};
use rayon::prelude::*;

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

/// Everything fastcarto remembers about one example: 88 bytes, whatever the number of epochs.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct ExampleState {
    /// Running mean of p(gold) (Welford / Chan).
    pub mean: f64,
    /// Sum of squared deviations of p(gold) from the mean.
    pub m2: f64,
    pub sum_margin: f64,
    pub sum_el2n: f64,
    pub sum_loss: f64,
    pub sum_entropy: f64,
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
        mean: 0.0,
        m2: 0.0,
        sum_margin: 0.0,
        sum_el2n: 0.0,
        sum_loss: 0.0,
        sum_entropy: 0.0,
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
            mean: obs.gold_prob,
            m2: 0.0,
            sum_margin: obs.margin,
            sum_el2n: obs.el2n,
            sum_loss: obs.loss,
            sum_entropy: obs.entropy,
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
    /// single-observation state (the engine's bulk path, `kernel::RunState`, applies the same
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
        let sums = [self.mean, self.m2, self.sum_margin, self.sum_el2n, self.sum_loss, self.sum_entropy];
        [self.mean, self.m2, self.sum_margin, self.sum_el2n, self.sum_loss, self.sum_entropy] =
            later_sums(self.n, sums, obs);
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
        let (na, nb, nf) = (early.n as f64, late.n as f64, n as f64);
        let delta = late.mean - early.mean;
        // One division, shared: with `nb == 1` these are exactly `push_later`'s and the dense
        // kernel's expressions, so every path agrees bit for bit.
        let inv = 1.0 / nf;
        let mean = early.mean + delta * (nb * inv);
        let m2 = early.m2 + late.m2 + delta * delta * (na * nb * inv);
        let forgotten_at_seam = (early.ends_correct() && !late.starts_correct()) as u32;
        let stable_from = if late.stable_from == late.first_epoch && early.ends_correct() {
            early.stable_from
        } else {
            late.stable_from
        };
        Ok(ExampleState {
            mean,
            m2,
            sum_margin: early.sum_margin + late.sum_margin,
            sum_el2n: early.sum_el2n + late.sum_el2n,
            sum_loss: early.sum_loss + late.sum_loss,
            sum_entropy: early.sum_entropy + late.sum_entropy,
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

fn oom(n_slots: usize) -> Error {
    Error::OutOfMemory {
        what: format!("{n_slots} more states"),
        bytes: n_slots as u128 * std::mem::size_of::<ExampleState>() as u128,
    }
}

/// An epoch both states certainly observed: an endpoint of one span that is an endpoint of the
/// other, or the only epoch of a single-epoch state that is an endpoint of the other.
fn shared_endpoint(a: &ExampleState, b: &ExampleState) -> Option<u32> {
    [a.first_epoch, a.last_epoch].into_iter().find(|&e| e == b.first_epoch || e == b.last_epoch)
}

/// The state of every example (or every (example, class) slot for multi-label tasks), packed
/// (64 bytes each) while its epochs and classes fit, wide (88 bytes) otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub(crate) task: Task,
    pub(crate) kind: Kind,
    /// Accept a label that changes between epochs, keeping the latest (the `aum` package does).
    pub(crate) allow_label_change: bool,
    pub(crate) slots: Slots,
}

impl State {
    /// A state for `n_examples` examples that have seen nothing yet.
    pub fn new(n_examples: usize, task: Task, kind: Kind) -> Result<Self> {
        let c = task.output_columns();
        if c == 0 {
            return Err(Error::invalid("the number of classes must be at least 1"));
        }
        let n_slots = n_examples
            .checked_mul(task.slots_per_example() as usize)
            .ok_or_else(|| Error::invalid("too many examples"))?;
        // Filled in parallel: on a large state this first touch is page-fault bound.
        let slots =
            crate::parallel::run_default(n_slots, || Slots::empty(n_slots, c)).map_err(|_| Error::OutOfMemory {
                what: format!("the state of {n_examples} examples"),
                bytes: n_slots as u128 * std::mem::size_of::<ExampleState>() as u128,
            })?;
        Ok(State { task, kind, allow_label_change: false, slots })
    }

    #[cfg(test)]
    pub(crate) fn with_slots(mut self, slots: Vec<ExampleState>) -> Self {
        self.slots = Slots::Wide(slots.into());
        self
    }

    pub(crate) fn with_stored(mut self, slots: Slots) -> Self {
        self.slots = slots;
        self
    }

    pub fn with_label_changes(mut self, allow: bool) -> Self {
        self.allow_label_change = allow;
        self
    }

    pub fn set_label_changes(&mut self, allow: bool) {
        self.allow_label_change = allow;
    }

    pub fn task(&self) -> Task {
        self.task
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn allows_label_change(&self) -> bool {
        self.allow_label_change
    }
    /// Number of examples (not slots).
    pub fn n_examples(&self) -> usize {
        self.slots.len() / self.task.slots_per_example() as usize
    }
    /// Every slot's state (unpacked, when stored packed).
    pub fn slots(&self) -> std::borrow::Cow<'_, [ExampleState]> {
        self.slots.states()
    }
    /// How the states are stored.
    pub fn stored(&self) -> &Slots {
        &self.slots
    }
    /// Latest epoch observed for any example, if any.
    pub fn last_epoch(&self) -> Option<u32> {
        with_slots!(&self.slots, v => v.par_iter().map(Slot::get).filter(|s| s.n > 0).map(|s| s.last_epoch).max())
    }

    fn check_compatible(&self, other: &State) -> Result<()> {
        if self.task != other.task {
            return Err(Error::Incompatible(format!("tasks differ ({} vs {})", self.task, other.task)));
        }
        if self.kind != other.kind {
            return Err(Error::Incompatible(format!(
                "kinds differ ({} vs {})",
                self.kind.as_str(),
                other.kind.as_str()
            )));
        }
        Ok(())
    }

    /// Merges a state of the same examples (same length) into this one. Nothing changes on error.
    pub fn merge(&mut self, other: &State) -> Result<()> {
        self.check_compatible(other)?;
        if self.slots.len() != other.slots.len() {
            return Err(Error::Incompatible(format!(
                "they cover {} and {} examples; use an index to merge a subset",
                self.n_examples(),
                other.n_examples()
            )));
        }
        let per = self.task.slots_per_example() as u64;
        let allow = self.allow_label_change || other.allow_label_change;
        if !other.slots.is_packed() {
            self.slots.widen()?; // the merge may hold what only the wide form can
        }
        fn merged<A: Slot, B: Slot>(mine: &[A], theirs: &[B], per: u64, allow: bool) -> Result<Vec<A>> {
            crate::parallel::run_default(mine.len(), || {
                mine.par_iter()
                    .zip(theirs.par_iter())
                    .enumerate()
                    .map(|(i, (a, b))| {
                        ExampleState::merge(i as u64 / per, &a.get(), &b.get(), allow).map(|s| A::put(&s))
                    })
                    .collect()
            })
        }
        // Packed with packed stays packed: two states of epochs a packed state holds merge
        // into one that it holds too.
        self.slots = match (&self.slots, &other.slots) {
            (Slots::Packed(a), Slots::Packed(b)) => Slots::Packed(merged(a, b, per, allow)?.into()),
            (Slots::Wide(a), theirs) => Slots::Wide(with_slots!(theirs, b => merged(a, b, per, allow))?.into()),
            (Slots::Packed(_), Slots::Wide(_)) => unreachable!("widened above"),
        };
        Ok(())
    }

    /// Merges `other`, whose example `i` is this state's example `index[i]`. Nothing changes on
    /// error, including when `index` repeats an example.
    pub fn merge_at(&mut self, other: &State, index: &[u64]) -> Result<()> {
        self.check_compatible(other)?;
        let n = self.n_examples() as u64;
        if index.len() != other.n_examples() {
            return Err(Error::invalid(format!(
                "index has {} entries but the update has {} examples",
                index.len(),
                other.n_examples()
            )));
        }
        if let Some(&ix) = index.iter().find(|&&ix| ix >= n) {
            return Err(Error::invalid(format!("index {ix} is out of range for {n} examples")));
        }
        if let Some(ix) = crate::validate::repeated_index(index, n) {
            // Example `ix` would receive the update's epoch twice: a duplicate (epoch, example).
            // An update that observed nothing (every row omitted) has no epoch to name.
            return Err(match other.last_epoch() {
                Some(epoch) => Error::DuplicateObservation { epoch, example: ix.into() },
                None => Error::invalid(format!("index {ix} appears more than once in one update")),
            });
        }
        let per = self.task.slots_per_example() as usize;
        let allow = self.allow_label_change || other.allow_label_change;
        if !other.slots.is_packed() {
            self.slots.widen()?;
        }
        fn merge_into<A: Slot, B: Slot>(
            mine: &mut [A],
            theirs: &[B],
            index: &[u64],
            per: usize,
            allow: bool,
        ) -> Result<()> {
            let mut merged = Vec::with_capacity(theirs.len());
            for (i, &ix) in index.iter().enumerate() {
                for c in 0..per {
                    let dst = ix as usize * per + c;
                    merged.push(A::put(&ExampleState::merge(ix, &mine[dst].get(), &theirs[i * per + c].get(), allow)?));
                }
            }
            for (i, &ix) in index.iter().enumerate() {
                let dst = ix as usize * per;
                mine[dst..dst + per].copy_from_slice(&merged[i * per..(i + 1) * per]);
            }
            Ok(())
        }
        match (&mut self.slots, &other.slots) {
            (Slots::Packed(a), Slots::Packed(b)) => merge_into(a, b, index, per, allow),
            (Slots::Wide(a), theirs) => with_slots!(theirs, b => merge_into(a, b, index, per, allow)),
            (Slots::Packed(_), Slots::Wide(_)) => unreachable!("widened above"),
        }
    }

    /// Appends the examples of `other` after this state's (shards of different examples).
    pub fn concat(&mut self, other: &State) -> Result<()> {
        self.check_compatible(other)?;
        self.allow_label_change |= other.allow_label_change;
        match (&mut self.slots, &other.slots) {
            (Slots::Packed(a), Slots::Packed(b)) => a.extend_from_slice(b).map_err(|_| oom(b.len()))?,
            (mine, theirs) => {
                let wide = mine.widen()?;
                let added = theirs.states();
                wide.extend_from_slice(&added).map_err(|_| oom(added.len()))?;
            }
        }
        Ok(())
    }
}

/// The float part of [`ExampleState::push_later`] on `[mean, m2, sum_margin, sum_el2n,
/// sum_loss, sum_entropy]` after `n` observations: Welford's update and the plain sums. Shared
/// with the packed in-place update (`slots::Packed`), which must give the same bits.
#[inline(always)]
pub(crate) fn later_sums(n: u32, [mean, m2, margin, el2n, loss, entropy]: [f64; 6], obs: &Observation) -> [f64; 6] {
    let (na, nf) = (n as f64, (n + 1) as f64);
    let delta = obs.gold_prob - mean;
    let inv = 1.0 / nf;
    [
        mean + delta * inv,
        m2 + delta * delta * (na * inv),
        margin + obs.margin,
        el2n + obs.el2n,
        loss + obs.loss,
        entropy + obs.entropy,
    ]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(g: f64, pred: u32) -> Observation {
        Observation { gold_prob: g, margin: g - 0.5, el2n: 1.0 - g, loss: -g.ln(), entropy: 0.1, pred }
    }

    #[test]
    fn observe_counts_forgetting_and_stability() {
        // correct pattern 1 0 1 1 for label 0
        let mut s = ExampleState::EMPTY;
        for (e, (g, p)) in [(0.9, 0), (0.2, 1), (0.8, 0), (0.7, 0)].into_iter().enumerate() {
            s.observe(0, e as u32, 0, &obs(g, p)).unwrap();
        }
        assert_eq!(s.n, 4);
        assert_eq!(s.n_correct, 3);
        assert_eq!(s.forgetting, 1);
        assert_eq!(s.first_learned, 0);
        assert_eq!(s.stable_from, 2);
        assert_eq!(s.final_pred, 0);
        assert!((s.mean - 0.65).abs() < 1e-15);
    }

    /// Small updates of a large state find repeated and out-of-range examples without a bitmap
    /// of the whole state; large ones with it. Both give the same states.
    #[test]
    fn merge_at_checks_its_index_whatever_its_size() {
        let task = Task::MultiClass { n_classes: 3 };
        let n = 10_000;
        for len in [3usize, 200] {
            // 3 * 64 < n: sorted copy; 200 * 64 >= n: bitmap.
            let index: Vec<u64> = (0..len as u64).map(|i| (i * 7919) % n as u64).collect();
            let mut update = State::new(len, task, Kind::Logits).unwrap();
            for (i, slot) in update.slots.widen().unwrap().iter_mut().enumerate() {
                *slot = ExampleState::single(0, (i % 3) as u32, &obs(0.25 + i as f64 / 1000.0, 1));
            }
            let mut state = State::new(n, task, Kind::Logits).unwrap();
            state.merge_at(&update, &index).unwrap();
            for (i, &ix) in index.iter().enumerate() {
                assert_eq!(state.slots.get(ix as usize).mean.to_bits(), update.slots.get(i).mean.to_bits());
            }
            assert_eq!(state.slots().iter().filter(|s| s.n > 0).count(), len);
            let fresh = || State::new(n, task, Kind::Logits).unwrap();
            let mut repeated = index.clone();
            repeated[len - 1] = repeated[1];
            let err = fresh().merge_at(&update, &repeated).unwrap_err();
            let dup = Error::DuplicateObservation { epoch: 0, example: Example::Index(index[1]) };
            assert_eq!(err.to_string(), dup.to_string());
            let mut outside = index.clone();
            outside[0] = n as u64;
            let err = fresh().merge_at(&update, &outside).unwrap_err().to_string();
            assert!(err.contains("index 10000 is out of range for 10000 examples"), "{err}");
        }
    }

    proptest::proptest! {
        /// `push_later` is `merge` with a single observation, bit for bit.
        #[test]
        fn push_later_is_merge_with_single(
            history in proptest::collection::vec((0.0f64..=1.0, 0u32..3, -5.0f64..5.0), 1..12),
            next in (0.0f64..=1.0, 0u32..3, -5.0f64..5.0),
            label in 0u32..3,
        ) {
            let o = |(g, pred, m): (f64, u32, f64)| Observation {
                gold_prob: g, margin: m, el2n: 1.0 - g, loss: -(g.max(1e-300)).ln(), entropy: g * m, pred,
            };
            let mut s = ExampleState::EMPTY;
            for (e, h) in history.iter().enumerate() {
                s.observe(0, 2 * e as u32, label, &o(*h)).unwrap();
            }
            let epoch = 2 * history.len() as u32 + 1;
            let want = ExampleState::merge(0, &s, &ExampleState::single(epoch, label, &o(next)), false).unwrap();
            let mut got = s;
            got.push_later(epoch, &o(next));
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(got.mean.to_bits(), want.mean.to_bits());
            proptest::prop_assert_eq!(got.m2.to_bits(), want.m2.to_bits());
        }
    }

    /// Packed states merge, index-merge and concatenate to the same states as wide ones, and
    /// stay packed unless the other side is wide.
    #[test]
    fn packed_states_merge_like_wide_ones() {
        use crate::slots::Packed;
        let task = Task::MultiClass { n_classes: 3 };
        let states = |epoch: u32, n: usize| -> Vec<ExampleState> {
            (0..n)
                .map(|i| ExampleState::single(epoch, (i % 3) as u32, &obs(0.1 + i as f64 / 50.0, (i % 2) as u32)))
                .collect()
        };
        let wide = |v: Vec<ExampleState>| State::new(0, task, Kind::Logits).unwrap().with_slots(v);
        let packed = |v: Vec<ExampleState>| {
            let p: Vec<Packed> = v.iter().map(Packed::put).collect();
            State::new(0, task, Kind::Logits).unwrap().with_stored(Slots::Packed(p.into()))
        };
        let (early, late) = (states(1, 20), states(4000, 20));
        let mut want = wide(early.clone());
        want.merge(&wide(late.clone())).unwrap();
        for (mut got, other, stays_packed) in [
            (packed(early.clone()), packed(late.clone()), true),
            (packed(early.clone()), wide(late.clone()), false),
            (wide(early.clone()), packed(late.clone()), false),
        ] {
            got.merge(&other).unwrap();
            assert_eq!(got.stored().is_packed(), stays_packed);
            assert_eq!(got, want);
        }
        let index: Vec<u64> = (0..5).map(|i| i * 3).collect();
        let some: Vec<ExampleState> = index.iter().map(|&ix| late[ix as usize]).collect();
        let mut want_at = wide(early.clone());
        want_at.merge_at(&wide(some.clone()), &index).unwrap();
        let mut got_at = packed(early.clone());
        got_at.merge_at(&packed(some), &index).unwrap();
        assert!(got_at.stored().is_packed());
        assert_eq!(got_at, want_at);
        let mut joined = packed(early.clone());
        joined.concat(&packed(late.clone())).unwrap();
        assert!(joined.stored().is_packed());
        joined.concat(&wide(late.clone())).unwrap();
        assert!(!joined.stored().is_packed());
        assert_eq!(&*joined.slots(), &[early, late.clone(), late].concat()[..]);
    }

    #[test]
    fn duplicates_and_out_of_order_are_errors() {
        let mut s = ExampleState::EMPTY;
        s.observe(3, 5, 0, &obs(0.5, 0)).unwrap();
        assert!(matches!(
            s.observe(3, 5, 0, &obs(0.5, 0)),
            Err(Error::DuplicateObservation { epoch: 5, example: Example::Index(3) })
        ));
        assert!(matches!(s.observe(3, 4, 0, &obs(0.5, 0)), Err(Error::EpochOutOfOrder { .. })));
        assert!(matches!(s.observe(3, 6, 1, &obs(0.5, 0)), Err(Error::LabelChanged { old: 0, new: 1, .. })));
    }
}

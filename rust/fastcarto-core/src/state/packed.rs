//! How the states of many examples are stored: as [`ExampleState`]s (88 bytes each), or packed
//! into one 64-byte cache line each when every epoch number is below [`PACKED_EPOCHS`] and
//! every class below [`PACKED_CLASSES`] (nearly every training run).
//!
//! The packed form keeps the `f64` [`Sums`] as they are and narrows the ten counters, epoch
//! numbers and classes; it holds exactly the same values, so packing is lossless and every
//! metric comes out bit for bit the same. It exists for memory (a long read of 100M examples
//! holds 6.4 GB of state instead of 8.8 GB) and for speed (a row of a shuffled long table
//! updates one cache line of state instead of two or three).

use crate::error::{Error, Result};
use crate::metrics::{ExampleState, NONE, Observation, Sums, later_learned};
use crate::sys::bigvec::BigVec;
use rayon::prelude::*;

/// Epoch numbers a packed state holds: `0..PACKED_EPOCHS` (12 bits; all ones marks none).
pub const PACKED_EPOCHS: u32 = (1 << EPOCH_BITS) - 1;
/// Classes a packed state holds: labels and predictions in `0..PACKED_CLASSES` (16 bits).
pub const PACKED_CLASSES: u32 = (1 << CLASS_BITS) - 1;

const EPOCH_BITS: u32 = 12;
const CLASS_BITS: u32 = 16;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;
const CLASS_MASK: u64 = (1 << CLASS_BITS) - 1;

/// An [`ExampleState`] in one cache line. `counts` holds `n`, `n_correct`, `n_confident` and
/// `forgetting` (12 bits each: none exceeds the number of distinct epochs) and the label (16
/// bits); `epochs` holds the first and last epochs, `first_learned` and `stable_from` (12 bits,
/// all ones for [`NONE`]) and the final prediction (16 bits).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
pub struct Packed {
    sums: Sums,
    counts: u64,
    epochs: u64,
}

const _: () = assert!(std::mem::size_of::<Packed>() == 64);

/// A way to store an [`ExampleState`]. Loops over many states are written once, generic over
/// this, and run on either form.
pub trait Slot: Copy + Send + Sync + 'static {
    /// The stored form of [`ExampleState::EMPTY`].
    const EMPTY: Self;
    fn get(&self) -> ExampleState;
    /// The stored form of `s`, which must fit (see [`Slots::fits`]).
    fn put(s: &ExampleState) -> Self;
    /// [`ExampleState::push_later`] in place, when it applies: the state has seen an earlier
    /// epoch than `epoch` and has label `label`; returns false (and changes nothing) otherwise.
    /// `epoch` and `label` (and `obs.pred`) must fit the stored form.
    #[inline(always)]
    fn push_later_if(&mut self, epoch: u32, label: u32, obs: &Observation) -> bool {
        let mut s = self.get();
        if s.n > 0 && s.last_epoch < epoch && s.label == label {
            s.push_later(epoch, obs);
            *self = Self::put(&s);
            return true;
        }
        false
    }
}

impl Slot for ExampleState {
    const EMPTY: Self = ExampleState::EMPTY;
    #[inline(always)]
    fn get(&self) -> ExampleState {
        *self
    }
    #[inline(always)]
    fn put(s: &ExampleState) -> Self {
        *s
    }
}

#[inline(always)]
fn widen(bits: u64, mask: u64) -> u32 {
    if bits == mask { NONE } else { bits as u32 }
}

impl Slot for Packed {
    const EMPTY: Self = Packed::pack(&ExampleState::EMPTY);
    #[inline(always)]
    fn get(&self) -> ExampleState {
        let (c, e) = (self.counts, self.epochs);
        let field = |w: u64, k: u32| (w >> (k * EPOCH_BITS)) & EPOCH_MASK;
        ExampleState {
            sums: self.sums,
            n: field(c, 0) as u32,
            n_correct: field(c, 1) as u32,
            n_confident: field(c, 2) as u32,
            forgetting: field(c, 3) as u32,
            label: widen(c >> 48, CLASS_MASK),
            first_epoch: widen(field(e, 0), EPOCH_MASK),
            last_epoch: widen(field(e, 1), EPOCH_MASK),
            first_learned: widen(field(e, 2), EPOCH_MASK),
            stable_from: widen(field(e, 3), EPOCH_MASK),
            final_pred: widen(e >> 48, CLASS_MASK),
        }
    }
    #[inline(always)]
    fn put(s: &ExampleState) -> Self {
        Packed::pack(s)
    }
    #[inline(always)]
    fn push_later_if(&mut self, epoch: u32, label: u32, obs: &Observation) -> bool {
        self.push_later_packed(epoch, label, obs)
    }
}

impl Packed {
    /// [`Slot::push_later_if`] on the packed words themselves: the common update of a long read
    /// (a later epoch of an example already seen) without unpacking the other fields (the same
    /// arithmetic as [`ExampleState::push_later`], in the same order, so the same bits).
    #[inline(always)]
    fn push_later_packed(&mut self, epoch: u32, label: u32, obs: &Observation) -> bool {
        let (c, e) = (self.counts, self.epochs);
        let n = c & EPOCH_MASK;
        let field = |w: u64, k: u32| (w >> (k * EPOCH_BITS)) & EPOCH_MASK;
        // `n > 0` means the last epoch is not the "none" mark; labels are below the mark.
        if n == 0 || field(e, 1) >= u64::from(epoch) || c >> 48 != u64::from(label) {
            return false;
        }
        let correct = obs.pred == label;
        let was_correct = field(e, 3) != EPOCH_MASK;
        self.sums = self.sums.push_later(n as u32, obs);
        // No count overflows its field: each is at most the number of distinct epochs.
        self.counts = c
            + 1
            + (u64::from(correct) << EPOCH_BITS)
            + (u64::from(obs.gold_prob > 0.5) << (2 * EPOCH_BITS))
            + (u64::from(was_correct && !correct) << (3 * EPOCH_BITS));
        let epoch = u64::from(epoch);
        let (first_learned, stable_from) =
            later_learned(correct, was_correct, field(e, 2), field(e, 3), epoch, EPOCH_MASK);
        self.epochs = field(e, 0)
            | epoch << EPOCH_BITS
            | first_learned << (2 * EPOCH_BITS)
            | stable_from << (3 * EPOCH_BITS)
            | u64::from(obs.pred) << 48;
        true
    }

    const fn pack(s: &ExampleState) -> Self {
        // `const` for EMPTY: no iterators or closures here.
        const fn f(v: u32, mask: u64, k: u32) -> u64 {
            (if v == NONE { mask } else { v as u64 & mask }) << (k * EPOCH_BITS)
        }
        Packed {
            sums: s.sums,
            counts: f(s.n, EPOCH_MASK, 0)
                | f(s.n_correct, EPOCH_MASK, 1)
                | f(s.n_confident, EPOCH_MASK, 2)
                | f(s.forgetting, EPOCH_MASK, 3)
                | f(s.label, CLASS_MASK, 4),
            epochs: f(s.first_epoch, EPOCH_MASK, 0)
                | f(s.last_epoch, EPOCH_MASK, 1)
                | f(s.first_learned, EPOCH_MASK, 2)
                | f(s.stable_from, EPOCH_MASK, 3)
                | f(s.final_pred, CLASS_MASK, 4),
        }
    }
}

/// Whether `s` survives packing unchanged.
pub fn packs(s: &ExampleState) -> bool {
    let epoch = |v: u32| v == NONE || v < PACKED_EPOCHS;
    let class = |v: u32| v == NONE || v < PACKED_CLASSES;
    // Counts never exceed the number of distinct epochs, so they fit when the epochs do.
    epoch(s.first_epoch)
        && epoch(s.last_epoch)
        && epoch(s.first_learned)
        && epoch(s.stable_from)
        && class(s.label)
        && class(s.final_pred)
        && s.n <= PACKED_EPOCHS
        && s.n_correct <= s.n
        && s.n_confident <= s.n
        && s.forgetting <= s.n
}

/// The states of many examples (or slots), in either form; equal when they hold the same
/// states, whatever the form.
#[derive(Debug, Clone)]
pub enum Slots {
    Wide(BigVec<ExampleState>),
    Packed(BigVec<Packed>),
}

impl PartialEq for Slots {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Slots::Wide(a), Slots::Wide(b)) => a == b,
            (Slots::Packed(a), Slots::Packed(b)) => a == b,
            _ => self.states() == other.states(),
        }
    }
}

impl Default for Slots {
    fn default() -> Self {
        Slots::Wide(BigVec::new())
    }
}

/// Runs `$body` with `$v` bound to the vector of whichever form `$slots` holds.
macro_rules! with_slots {
    ($slots:expr, $v:ident => $body:expr) => {
        match $slots {
            $crate::state::packed::Slots::Wide($v) => $body,
            $crate::state::packed::Slots::Packed($v) => $body,
        }
    };
}
pub(crate) use with_slots;

impl Slots {
    /// Whether states of epochs up to `max_epoch` and `n_classes` classes fit the packed form.
    pub fn fits(max_epoch: u32, n_classes: u32) -> bool {
        max_epoch < PACKED_EPOCHS && n_classes <= PACKED_CLASSES
    }

    /// Makes these states able to hold epochs up to `max_epoch` and `n_classes` classes:
    /// widens them (once) when the packed form cannot. Every path that brings a new epoch or
    /// class count calls this before storing states.
    pub fn hold(&mut self, max_epoch: u32, n_classes: u32) -> Result<()> {
        if self.is_packed() && !Slots::fits(max_epoch, n_classes) {
            self.widen()?;
        }
        Ok(())
    }

    /// `n` empty states, packed when `n_classes` fit.
    pub fn empty(n: usize, n_classes: u32) -> std::result::Result<Self, crate::sys::bigvec::AllocError> {
        Ok(if Slots::fits(0, n_classes) {
            Slots::Packed(BigVec::filled(Packed::EMPTY, n)?)
        } else {
            Slots::Wide(BigVec::filled(ExampleState::EMPTY, n)?)
        })
    }

    /// These states, packed when every one of them fits.
    pub fn from_states(states: Vec<ExampleState>) -> Self {
        if states.par_iter().all(packs) {
            let packed: Vec<Packed> = states.par_iter().map(Packed::put).collect();
            Slots::Packed(packed.into())
        } else {
            Slots::Wide(states.into())
        }
    }

    pub fn len(&self) -> usize {
        with_slots!(self, v => v.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_packed(&self) -> bool {
        matches!(self, Slots::Packed(_))
    }
    pub fn get(&self, i: usize) -> ExampleState {
        with_slots!(self, v => v[i].get())
    }

    /// Every state as an [`ExampleState`]: borrowed when stored so, unpacked otherwise.
    pub fn states(&self) -> std::borrow::Cow<'_, [ExampleState]> {
        match self {
            Slots::Wide(v) => std::borrow::Cow::Borrowed(&v[..]),
            Slots::Packed(v) => std::borrow::Cow::Owned(v.par_iter().map(Slot::get).collect()),
        }
    }

    /// Switches to the wide form (for epochs or classes the packed one cannot hold); returns the
    /// wide vector.
    pub fn widen(&mut self) -> Result<&mut BigVec<ExampleState>> {
        if let Slots::Packed(v) = self {
            let wide = BigVec::from_fn(v.len(), |i| v[i].get()).map_err(|_| Error::OutOfMemory {
                what: format!("the wide state of {} examples", v.len()),
                bytes: v.len() as u128 * std::mem::size_of::<ExampleState>() as u128,
            })?;
            *self = Slots::Wide(wide);
        }
        match self {
            Slots::Wide(v) => Ok(v),
            Slots::Packed(_) => unreachable!("widened above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Observation;

    fn arbitrary(seed: u64) -> ExampleState {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move |m: u32| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % u64::from(m)) as u32
        };
        let mut s = ExampleState::EMPTY;
        let label = next(PACKED_CLASSES);
        for e in 0..next(40) {
            let epoch = e * 100 + next(100);
            let pred = if next(2) == 0 { label } else { next(PACKED_CLASSES) };
            let g = f64::from(next(1000)) / 1000.0;
            let obs = Observation { gold_prob: g, margin: g - 0.3, el2n: 1.0 - g, loss: 0.7, entropy: 0.2, pred };
            s.observe(0, epoch, label, &obs).unwrap();
        }
        s
    }

    #[test]
    fn packing_is_lossless_where_it_fits() {
        for seed in 0..2000 {
            let s = arbitrary(seed);
            assert!(packs(&s), "{s:?}");
            assert_eq!(Packed::put(&s).get(), s);
        }
        assert_eq!(Packed::EMPTY.get(), ExampleState::EMPTY);
        let edge = ExampleState {
            first_epoch: PACKED_EPOCHS - 1,
            last_epoch: PACKED_EPOCHS - 1,
            label: PACKED_CLASSES - 1,
            final_pred: 0,
            n: 1,
            ..ExampleState::EMPTY
        };
        assert!(packs(&edge));
        assert_eq!(Packed::put(&edge).get(), edge);
        for too_big in [
            ExampleState { last_epoch: PACKED_EPOCHS, ..edge },
            ExampleState { label: PACKED_CLASSES, ..edge },
            ExampleState { final_pred: 70_000, ..edge },
        ] {
            assert!(!packs(&too_big));
        }
    }

    proptest::proptest! {
        /// The packed in-place update leaves the bits that unpacking, `push_later` and packing
        /// would, and refuses (unchanged) what `push_later` must not take: a first observation,
        /// an epoch not later than the last, another label.
        #[test]
        fn packed_push_later_is_the_wide_update(
            seed in 0u64..5000,
            step in 0u32..300,
            pred_is_label in proptest::bool::ANY,
            pred in 0u32..PACKED_CLASSES,
            other_label in proptest::option::of(0u32..PACKED_CLASSES),
            g in proptest::prop_oneof![proptest::strategy::Just(0.5), proptest::strategy::Just(0.0), proptest::strategy::Just(1.0), 0.0f64..=1.0],
            values in proptest::array::uniform3(-1e3f64..1e3),
        ) {
            let s = arbitrary(seed);
            let label = other_label.unwrap_or(if s.label == NONE { 0 } else { s.label });
            let last = if s.n == 0 { 0 } else { s.last_epoch };
            let epoch = (last + step).min(PACKED_EPOCHS - 1);
            let pred = if pred_is_label { label } else { pred };
            let obs = Observation { gold_prob: g, margin: values[0], el2n: values[1].abs(), loss: values[2].abs(), entropy: g / 3.0, pred };
            let applies = s.n > 0 && s.last_epoch < epoch && s.label == label;
            let mut want = s;
            if applies {
                want.push_later(epoch, &obs);
            }
            let mut packed = Packed::put(&s);
            proptest::prop_assert_eq!(packed.push_later_if(epoch, label, &obs), applies);
            let bits = |p: &Packed| (p.sums.to_array().map(f64::to_bits), p.counts, p.epochs);
            proptest::prop_assert_eq!(bits(&packed), bits(&Packed::put(&want)));
            let mut wide = s;
            proptest::prop_assert_eq!(wide.push_later_if(epoch, label, &obs), applies);
            proptest::prop_assert_eq!(wide, want);
        }
    }

    #[test]
    fn slots_widen_with_the_same_states() {
        let states: Vec<ExampleState> = (0..300).map(arbitrary).collect();
        let packed: Vec<Packed> = states.iter().map(Packed::put).collect();
        let mut slots = Slots::Packed(packed.into());
        assert_eq!(&*slots.states(), &states[..]);
        assert_eq!(slots.get(17), states[17]);
        assert_eq!(slots, Slots::Wide(states.clone().into()));
        let late = ExampleState { last_epoch: 5000, first_epoch: 5000, n: 1, ..ExampleState::EMPTY };
        slots.widen().unwrap().extend_from_slice(&[late]).unwrap();
        assert!(!slots.is_packed());
        assert_eq!(&slots.states()[..300], &states[..]);
        assert_eq!(slots.get(300).last_epoch, 5000);
    }
}

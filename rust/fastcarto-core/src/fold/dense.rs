//! Dense inputs: `[epochs, examples, classes]` arrays (numpy arrays, memory maps, `.npy` files).

use crate::error::{Error, Result};
use crate::kernel::math::Real;
use crate::kernel::{RunAt, RunColumns, Scratch, fold_epoch};
use crate::metrics::ExampleState;
use crate::metrics::{Kind, NanPolicy, Task};
use crate::state::State;
use crate::state::packed::{Slot, with_slots};
use multiversion::multiversion;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Examples per parallel task.
pub const BLOCK: usize = 1024;

/// Examples whose epochs are folded together within a task: their run state (about 11 KiB)
/// stays in L1 while each epoch's rows of them stream past. Folding the whole block epoch by
/// epoch kept its 84 KiB run state in L2, where the state update takes about three times as
/// long.
const SUB: usize = 128;

/// One epoch of model outputs for every slot of a state, row-major `[slots, slot_columns]`.
#[derive(Debug, Clone, Copy)]
pub struct EpochView<'a, T> {
    /// The epoch's number (its position in the training run), used for ordering and reporting.
    pub epoch: u32,
    pub values: &'a [T],
}

/// Checks integer labels against the task and converts them to per-slot `u32` labels.
///
/// Multi-class: one label per example in `0..n_classes` (`0..=1` for one-column binary output).
/// Multi-label: `n_classes` 0/1 targets per example, example-major.
pub fn validate_labels<T: IntValue>(labels: &[T], task: Task) -> Result<Vec<u32>> {
    let values = task.label_values();
    let per = task.slots_per_example() as u64;
    // In parallel over fixed chunks, each checked and converted in one branch-free (vectorized)
    // pass; the error names the first invalid label, whatever the thread count. (A per-label
    // `position_first` cost more than the whole kernel on long tables.)
    // The output is not zeroed first (a serial `memset`, 5% of a one-epoch dense `compute`).
    const CHUNK: usize = 1 << 14;
    let mut out = Vec::with_capacity(labels.len());
    let bad: Vec<bool> = out.spare_capacity_mut()[..labels.len()]
        .par_chunks_mut(CHUNK)
        .zip(labels.par_chunks(CHUNK))
        .map(|(out, labels)| narrow_labels(labels, values, out))
        .collect();
    // SAFETY: the chunks cover the first `labels.len()` values, and each wrote all of its own.
    unsafe { out.set_len(labels.len()) };
    if let Some(chunk) = bad.iter().position(|&b| b) {
        let i = chunk * CHUNK
            + labels[chunk * CHUNK..].iter().position(|&y| y.widen() as u64 >= values as u64).expect("flagged");
        return Err(Error::LabelOutOfRange {
            example: (i as u64 / per).into(),
            label: labels[i].widen(),
            n_classes: values,
            max: values - 1,
        });
    }
    Ok(out)
}

/// Writes `labels` as `u32` to `out`; returns whether any is outside `0..values`. Compiled for
/// the vector instructions this CPU has (the baseline target has no 64-bit compares, and this
/// loop ran one label at a time).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn narrow_labels<T: IntValue>(labels: &[T], values: u32, out: &mut [MaybeUninit<u32>]) -> bool {
    let mut bad = false;
    for (o, &y) in out.iter_mut().zip(labels) {
        // Negative labels wrap to huge unsigned values: one comparison checks both ends.
        let y = y.widen();
        bad |= y as u64 >= values as u64;
        o.write(y as u32);
    }
    bad
}

/// An integer type that labels (and epochs) may come in: the columns of a file keep their width,
/// where widening them to `i64` first cost a copy of 8 bytes per row.
pub trait IntValue: Copy + Send + Sync {
    /// The value as `i64` (unsigned 64-bit values above `i64::MAX` saturate; the readers turn
    /// those into an error before this sees them).
    fn widen(self) -> i64;
}

macro_rules! label_value {
    ($($t:ty),*) => {$(
        impl IntValue for $t {
            #[inline(always)]
            fn widen(self) -> i64 {
                self as i64
            }
        }
    )*};
}
label_value!(i8, i16, i32, i64, u8, u16, u32);

impl IntValue for u64 {
    #[inline(always)]
    fn widen(self) -> i64 {
        self.min(i64::MAX as u64) as i64
    }
}

/// Folds whole epochs into `state`, in parallel over blocks of examples. Epochs must be given
/// in increasing order and be later than anything the state already holds. On error the state
/// is partly updated; callers that must stay consistent fold into a fresh state and merge.
pub fn accumulate<T: Real>(
    state: &mut State,
    epochs: &[EpochView<'_, T>],
    labels: &[u32],
    nan_policy: NanPolicy,
) -> Result<()> {
    let cols = state.task().slot_columns() as usize;
    let kind = state.kind();
    let n_slots = state.stored().len();
    if labels.len() != n_slots {
        return Err(Error::invalid(format!("{} labels for {} examples", labels.len(), n_slots)));
    }
    for w in epochs.windows(2) {
        if w[1].epoch <= w[0].epoch {
            return Err(Error::invalid(format!(
                "epochs must be strictly increasing, got {} then {}",
                w[0].epoch, w[1].epoch
            )));
        }
    }
    for ev in epochs {
        if ev.values.len() != n_slots * cols {
            return Err(Error::invalid(format!(
                "epoch {} has {} values, expected {} examples x {} columns",
                ev.epoch,
                ev.values.len(),
                n_slots,
                cols
            )));
        }
    }
    let per = state.task().slots_per_example() as u64;
    let allow = state.allows_label_change();
    if let Some(last) = epochs.last() {
        state.slots.hold(last.epoch, 0)?;
    }
    with_slots!(&mut state.slots, v => v.par_chunks_mut(BLOCK).enumerate().try_for_each_init(
        || (Scratch::default(), RunColumns::default()),
        |(scratch, run), (b, slots)| -> Result<()> {
            let lo = b * BLOCK;
            run.resize(slots.len());
            // Each run of examples is merged while its states are in L1; on error the state is
            // left partly updated (see above).
            fold_block(kind, nan_policy, epochs, cols, labels, (lo, slots.len()), per, scratch, run, 0, |i, n, run| {
                for (j, slot) in slots[i..i + n].iter_mut().enumerate() {
                    let merged = ExampleState::merge((lo + i + j) as u64, &slot.get(), &run.example(i + j), allow);
                    *slot = Slot::put(&merged.map_err(|e| e.slot_to_example(per))?);
                }
                Ok(())
            })
        },
    ))
}

/// Folds every epoch of examples `lo..lo + len` into `run[at..at + len]` (empty states first):
/// one block's work, taken `SUB` examples at a time so that their states stay in L1 while the
/// epochs stream past. `done(i, n, run)` is called after each such run of examples `lo + i..lo +
/// i + n` (`run[at + i..]`) while no error has been met; on error the run is left partly folded.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fold_block<T: Real>(
    kind: Kind,
    nan_policy: NanPolicy,
    epochs: &[EpochView<'_, T>],
    cols: usize,
    labels: &[u32],
    (lo, len): (usize, usize),
    per: u64,
    scratch: &mut Scratch<T>,
    run: &mut RunColumns,
    at: usize,
    mut done: impl FnMut(usize, usize, &RunColumns) -> Result<()>,
) -> Result<()> {
    // The block's first bad value in (epoch, example) order is the one reported: the runs go
    // epoch by epoch but `SUB` examples at a time, so a later run may still hold an earlier
    // epoch's (it need only look at the epochs before the one found so far).
    let mut failed: Option<(usize, Error)> = None;
    let end = lo + len;
    for sub in (0..len).step_by(SUB) {
        let (lo, at) = (lo + sub, at + sub);
        let hi = lo + SUB.min(len - sub);
        // The rows read after each epoch's: the next epoch's, and after the last epoch the next
        // run's first. The hardware prefetcher does not foresee these jumps (from one epoch's
        // rows to the next's, 40 MB apart for 1M x 10 classes), so they are asked for one epoch
        // ahead, into the second-level cache.
        let ahead = |j: usize| -> &[T] {
            match epochs.get(j + 1) {
                Some(next) => &next.values[lo * cols..hi * cols],
                None => &epochs[0].values[hi * cols..(hi + SUB).min(end) * cols],
            }
        };
        let labels = &labels[lo..hi];
        run.reset_range(at, labels);
        let upto = failed.as_ref().map_or(epochs.len(), |(j, _)| *j);
        let bad = epochs[..upto].iter().enumerate().find_map(|(j, ev)| {
            fold_epoch(
                kind,
                nan_policy,
                ev.epoch,
                &ev.values[lo * cols..hi * cols],
                cols,
                labels,
                &mut RunAt { run: &mut *run, at },
                lo as u64,
                scratch,
                ahead(j),
            )
            .err()
            .map(|e| (j, e.slot_to_example(per)))
        });
        if bad.is_some() {
            failed = bad;
        }
        if failed.is_none() {
            done(sub, hi - lo, run)?;
        }
    }
    failed.map_or(Ok(()), |(_, e)| Err(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Example;

    fn first_error(labels: &[i64], task: Task) -> Option<(Example, i64)> {
        match validate_labels(labels, task) {
            Ok(_) => None,
            Err(Error::LabelOutOfRange { example, label, .. }) => Some((example, label)),
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }

    #[test]
    fn labels_convert_and_the_first_invalid_one_is_named() {
        let task = Task::MultiClass { n_classes: 3 };
        // Several parallel chunks; invalid labels in a late chunk and an earlier one.
        let mut labels: Vec<i64> = (0..100_000).map(|i| i % 3).collect();
        assert_eq!(validate_labels(&labels, task).unwrap(), labels.iter().map(|&y| y as u32).collect::<Vec<_>>());
        labels[90_000] = 3;
        labels[40_000] = -1;
        assert_eq!(first_error(&labels, task), Some((Example::Index(40_000), -1)));
        labels[40_000] = 0;
        assert_eq!(first_error(&labels, task), Some((Example::Index(90_000), 3)));
        for extreme in [i64::MIN, i64::MAX, u32::MAX as i64, 1 << 32] {
            labels[90_000] = extreme;
            assert_eq!(first_error(&labels, task), Some((Example::Index(90_000), extreme)));
        }
        assert_eq!(validate_labels::<i64>(&[], task).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn binary_and_multi_label_ranges() {
        assert_eq!(first_error(&[0, 1, 1, 0], Task::MultiClass { n_classes: 1 }), None);
        assert_eq!(first_error(&[0, 2], Task::MultiClass { n_classes: 1 }), Some((Example::Index(1), 2)));
        // Multi-label: targets are 0/1, example-major; the error names the example.
        let task = Task::MultiLabel { n_classes: 4 };
        assert_eq!(first_error(&[0, 1, 1, 0, 1, 0, 2, 1], task), Some((Example::Index(1), 2)));
    }
}

//! The checks a batch of rows must pass before anything is kept, shared by every path into the
//! engine: the kernel (which flags rows while it folds them and describes them here), the state's
//! keyed updates, and callers that must refuse a batch up front, such as the Python `Recorder`.
//! One rule each, so that a row one path accepts is never refused by another: the label range
//! ([`validate_labels`]), finiteness, the probability tolerance ([`prob_sum_tolerance`], the sum
//! taken in the input's precision, in column order, as the kernel takes it), and each
//! (epoch, example) once.
//!
//! Errors name rows as [`Example::Index`] positions in the batch; callers rename them to what
//! their user knows ([`Error::name_example`]).

use crate::error::{Error, Example, Result};
use crate::fold::validate_labels;
use crate::kernel::math::Real;
use crate::kernel::prob_sum_tolerance;
use crate::metrics::{Kind, Task};
use std::collections::HashSet;

/// Checks one epoch's rows of outputs (`values`, row-major with `task.output_columns()` columns)
/// and their labels as the engine would fold them with `nan_policy="raise"`: labels in range,
/// every value finite, and for [`Kind::Probs`] every row a distribution. The first invalid row
/// (labels first) is the error.
pub fn check_rows<T: Real>(values: &[T], labels: &[i64], task: Task, kind: Kind, epoch: u32) -> Result<()> {
    let cols = task.output_columns() as usize;
    if cols == 0 || values.len() != labels.len() * cols {
        return Err(Error::invalid(format!(
            "{} output values for {} rows of {cols} columns",
            values.len(),
            labels.len()
        )));
    }
    validate_labels(labels, task)?;
    for (row, values) in values.chunks_exact(cols).enumerate() {
        if let Some(err) = row_error(values, kind, epoch, row as u64) {
            return Err(err);
        }
    }
    Ok(())
}

/// What is wrong with one row of outputs, if anything: a non-finite value first, then (for
/// probabilities) a value outside [0, 1] or a sum off 1 by more than [`prob_sum_tolerance`].
pub fn row_error<T: Real>(row: &[T], kind: Kind, epoch: u32, example: u64) -> Option<Error> {
    if let Some(v) = row.iter().find(|v| !v.is_finite()) {
        return Some(Error::NonFinite { epoch, example: example.into(), value: v.to_f64() });
    }
    (kind == Kind::Probs && !is_distribution(row)).then(|| invalid_probabilities(row, epoch, example))
}

/// Whether a row of finite values is a probability distribution: each value in [0, 1] and, with
/// two columns or more, a sum within [`prob_sum_tolerance`] of 1. One column is the positive
/// class's probability, read as `[1 - p, p]`.
fn is_distribution<T: Real>(row: &[T]) -> bool {
    if !row.iter().all(|&v| v >= T::ZERO && v <= T::ONE) {
        return false;
    }
    if row.len() < 2 {
        return true;
    }
    let sum = row.iter().fold(T::ZERO, |s, &v| s + v);
    let off = (sum - T::ONE).to_f64().abs();
    off <= T::from_f64(prob_sum_tolerance::<T>(row.len())).to_f64()
}

/// The error for a row that is not a probability distribution, saying why.
pub(crate) fn invalid_probabilities<T: Real>(row: &[T], epoch: u32, example: u64) -> Error {
    Error::InvalidProbabilities { epoch, example: example.into(), reason: describe_invalid_probs(row) }
}

fn describe_invalid_probs<T: Real>(row: &[T]) -> String {
    if let Some((k, v)) = row.iter().enumerate().find(|(_, v)| !(**v >= T::ZERO && **v <= T::ONE)) {
        return format!("value {} in column {k} is outside [0, 1]", v.to_f64());
    }
    if row.len() == 1 {
        return "the positive-class probability is outside [0, 1]".to_string();
    }
    let s: f64 = row.iter().map(|v| v.to_f64()).sum();
    format!(
        "the row sums to {s} (tolerance {:.1e}); pass probabilities that sum to 1",
        prob_sum_tolerance::<T>(row.len())
    )
}

/// The first value of `index` seen before (each below `bound`), or None: a bitmap over
/// `0..bound` when `index` covers much of it, a sorted copy when it is small against it (where
/// zeroing a bitmap of every example would cost more than the update).
pub fn repeated_index(index: &[u64], bound: u64) -> Option<u64> {
    if (index.len() as u64).saturating_mul(64) >= bound {
        let mut seen = vec![0u64; (bound as usize).div_ceil(64)];
        index.iter().copied().find(|&ix| {
            let (w, bit) = ((ix / 64) as usize, 1u64 << (ix % 64));
            let before = seen[w];
            seen[w] |= bit;
            before & bit != 0
        })
    } else {
        let mut sorted = index.to_vec();
        sorted.sort_unstable();
        sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
    }
}

/// A batch's example ids: integers, or strings.
#[derive(Debug, Clone, Copy)]
pub enum Ids<'a> {
    Int(&'a [i64]),
    Str(&'a [&'a str]),
}

impl Ids<'_> {
    pub fn len(&self) -> usize {
        match self {
            Ids::Int(ids) => ids.len(),
            Ids::Str(ids) => ids.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `row`'s id as a message names it: integers bare, strings quoted.
    pub fn name(&self, row: usize) -> String {
        match self {
            Ids::Int(ids) => ids[row].to_string(),
            Ids::Str(ids) => format!("{:?}", ids[row]),
        }
    }
}

/// The ids an epoch has seen so far, for a writer that receives an epoch in several batches and
/// must refuse an (epoch, id) pair twice. With `n_examples`, ids are positions `0..n_examples`
/// and are tracked with one bit per example; otherwise in a set.
#[derive(Debug, Default)]
pub struct EpochIds {
    n_examples: Option<u64>,
    /// Whether ids are remembered across batches (within one batch they are always checked).
    across_batches: bool,
    epoch: Option<u32>,
    bits: Vec<u64>,
    ints: HashSet<i64>,
    strings: HashSet<Box<str>>,
}

impl EpochIds {
    pub fn new(n_examples: Option<u64>, across_batches: bool) -> Self {
        EpochIds { n_examples, across_batches, ..Default::default() }
    }

    /// Checks a batch of `epoch` (nothing changes): integer ids within `0..n_examples` when that
    /// is set, no id twice in the batch, and none already [`insert`](Self::insert)ed for this
    /// epoch. Errors name the id and its row in the batch.
    pub fn check(&self, epoch: u32, ids: Ids<'_>) -> Result<()> {
        let duplicate = |row: usize, detail: String| Error::DuplicateObservation {
            epoch,
            example: Example::Id(format!("{} ({detail})", ids.name(row))),
        };
        if let (Some(n), Ids::Int(values)) = (self.n_examples, ids)
            && let Some(row) = values.iter().position(|&id| id < 0 || id as u64 >= n)
        {
            return Err(Error::invalid(format!(
                "id {} in row {row} is out of range: ids are example positions 0 to {} ({n} examples)",
                values[row],
                n.saturating_sub(1)
            )));
        }
        if let Some((first, again)) = first_repeat(ids, self.n_examples) {
            return Err(duplicate(again, format!("rows {first} and {again} of this batch")));
        }
        if !self.across_batches || self.epoch != Some(epoch) {
            return Ok(());
        }
        let seen = match ids {
            Ids::Int(values) => match self.n_examples {
                Some(_) => values.iter().position(|&id| self.bits[id as usize / 64] >> (id % 64) & 1 != 0),
                None => values.iter().position(|id| self.ints.contains(id)),
            },
            Ids::Str(values) => values.iter().position(|id| self.strings.contains(*id)),
        };
        match seen {
            Some(row) => Err(duplicate(row, format!("row {row} of this batch, recorded before in this epoch"))),
            None => Ok(()),
        }
    }

    /// Remembers a checked batch's ids; a new epoch forgets the previous one's.
    pub fn insert(&mut self, epoch: u32, ids: Ids<'_>) {
        if !self.across_batches {
            return;
        }
        if self.epoch != Some(epoch) {
            self.epoch = Some(epoch);
            self.ints.clear();
            self.strings.clear();
            self.bits.clear();
            if let Some(n) = self.n_examples {
                self.bits.resize((n as usize).div_ceil(64), 0);
            }
        }
        match ids {
            Ids::Int(values) if self.n_examples.is_some() => {
                for &id in values {
                    self.bits[id as usize / 64] |= 1 << (id % 64);
                }
            }
            Ids::Int(values) => self.ints.extend(values),
            Ids::Str(values) => self.strings.extend(values.iter().map(|&s| Box::from(s))),
        }
    }
}

/// The rows of the first id met twice in a batch (in row order of its second occurrence).
fn first_repeat(ids: Ids<'_>, n_examples: Option<u64>) -> Option<(usize, usize)> {
    let again = match ids {
        Ids::Int(values) => match n_examples {
            // Checked to lie in 0..n above.
            Some(n) => {
                let index: Vec<u64> = values.iter().map(|&id| id as u64).collect();
                let id = repeated_index(&index, n)? as i64;
                values.iter().enumerate().filter(|&(_, &v)| v == id).nth(1)?.0
            }
            None => {
                let mut seen = HashSet::with_capacity(values.len());
                values.iter().position(|id| !seen.insert(id))?
            }
        },
        Ids::Str(values) => {
            let mut seen = HashSet::with_capacity(values.len());
            values.iter().position(|id| !seen.insert(id))?
        }
    };
    let first = match ids {
        Ids::Int(values) => values.iter().position(|&v| v == values[again]),
        Ids::Str(values) => values.iter().position(|&v| v == values[again]),
    };
    Some((first.unwrap_or(again), again))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK: Task = Task::MultiClass { n_classes: 2 };

    #[test]
    fn rows_are_checked_as_the_kernel_checks_them() {
        assert!(check_rows(&[0.25f32, 0.75, 0.5, 0.5], &[0, 1], TASK, Kind::Probs, 3).is_ok());
        let err = check_rows(&[0.25f32, 0.75, 1.0, 0.5], &[0, 1], TASK, Kind::Probs, 3).unwrap_err();
        assert!(matches!(err, Error::InvalidProbabilities { epoch: 3, example: Example::Index(1), .. }), "{err}");
        let err = check_rows(&[0.0f64, f64::NAN], &[0], TASK, Kind::Logits, 2).unwrap_err();
        assert!(matches!(err, Error::NonFinite { epoch: 2, example: Example::Index(0), .. }), "{err}");
        let err = check_rows(&[0.0f64, 0.0, 1.0, 2.0], &[0, 2], TASK, Kind::Logits, 0).unwrap_err();
        assert!(matches!(err, Error::LabelOutOfRange { example: Example::Index(1), label: 2, .. }), "{err}");
        let one = Task::MultiClass { n_classes: 1 };
        assert!(check_rows(&[0.2f32, 1.0], &[0, 1], one, Kind::Probs, 0).is_ok());
        assert!(check_rows(&[1.5f32], &[1], one, Kind::Probs, 0).is_err());
        assert!(check_rows(&[0.5f32], &[0, 1], TASK, Kind::Probs, 0).is_err(), "shape");
    }

    #[test]
    fn the_tolerance_is_the_kernels() {
        let tol = prob_sum_tolerance::<f32>(2) as f32;
        assert!(check_rows(&[0.5f32, 0.5 + tol * 0.9], &[0], TASK, Kind::Probs, 0).is_ok());
        assert!(check_rows(&[0.5f32, 0.5 - tol * 1.1], &[0], TASK, Kind::Probs, 0).is_err());
    }

    #[test]
    fn repeated_index_by_bitmap_and_by_sorting() {
        for bound in [8, 1_000_000] {
            assert_eq!(repeated_index(&[3, 5, 3], bound), Some(3));
            assert_eq!(repeated_index(&[3, 5, 7], bound), None);
        }
    }

    #[test]
    fn epoch_ids_refuse_a_pair_twice() {
        for n in [Some(10), None] {
            let mut seen = EpochIds::new(n, true);
            seen.check(0, Ids::Int(&[3, 4])).unwrap();
            seen.insert(0, Ids::Int(&[3, 4]));
            let err = seen.check(0, Ids::Int(&[9, 4])).unwrap_err();
            assert!(
                matches!(&err, Error::DuplicateObservation { epoch: 0, example: Example::Id(id) } if id.starts_with("4 (row 1")),
                "{err}"
            );
            let err = seen.check(1, Ids::Int(&[1, 2, 1])).unwrap_err();
            assert!(err.to_string().contains("id 1 (rows 0 and 2 of this batch)"), "{err}");
            seen.check(1, Ids::Int(&[3, 4])).unwrap();
            seen.insert(1, Ids::Int(&[3, 4]));
            assert!(seen.check(1, Ids::Int(&[3])).is_err());
        }
        let err = EpochIds::new(Some(10), true).check(0, Ids::Int(&[0, 10])).unwrap_err();
        assert!(err.to_string().contains("id 10 in row 1 is out of range"), "{err}");
        let mut seen = EpochIds::new(None, true);
        seen.insert(2, Ids::Str(&["x", "y"]));
        assert!(seen.check(2, Ids::Str(&["z", "y"])).unwrap_err().to_string().contains("\"y\" (row 1"));
        assert!(seen.check(2, Ids::Str(&["q", "q"])).is_err());
        let mut off = EpochIds::new(None, false);
        off.insert(0, Ids::Str(&["x"]));
        off.check(0, Ids::Str(&["x"])).unwrap();
    }
}

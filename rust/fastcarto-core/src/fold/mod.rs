//! Folding outputs into per-example states. Dense inputs (`[epochs, examples, columns]`
//! arrays: [`dense`]) hold every example at every epoch, in order; keyed inputs (rows of a long
//! table, examples known by id: [`keyed`]) arrive in any order and are routed to their
//! example's slot first. Both hand runs of rows to the kernel (`crate::kernel`).

pub(crate) mod dense;
pub(crate) mod keyed;
pub mod validate;

pub use dense::{EpochView, IntValue, accumulate, validate_labels};
pub use keyed::KeyedState;

use crate::error::{Error, Result};
use crate::kernel::{self, math::Real};
use crate::metrics::{Kind, NanPolicy, Task};
use crate::state::{State, runs::RunColumns};
use crate::sys::pool as parallel;
use crate::table::{self, FinalizeOptions};
use ndarray::{ArrayView2, ArrayView3, Axis};

/// Computes the state of every example from a dense `[epochs, examples, columns]` array.
///
/// `epochs` lists the positions along the first axis to use, in increasing order (they are also
/// the epoch numbers reported back). `labels` holds one label per example, or `n_classes` 0/1
/// targets per example (example-major) for [`Task::MultiLabel`]. Runs on `threads` workers.
pub fn compute_dense<T: Real>(
    array: ArrayView3<'_, T>,
    epochs: &[usize],
    labels: &[i64],
    task: Task,
    kind: Kind,
    nan_policy: NanPolicy,
    threads: Option<usize>,
) -> Result<State> {
    let numbered = number_epochs(epochs)?;
    let mut state = State::new(array.dim().1, task, kind)?;
    fold_array(&mut state, array, &numbered, labels, nan_policy, threads)?;
    Ok(state)
}

/// Folds the selected `(position, epoch number)` slices of `array` into `state`.
fn fold_array<T: Real>(
    state: &mut State,
    array: ArrayView3<'_, T>,
    epochs: &[(usize, u32)],
    labels: &[i64],
    nan_policy: NanPolicy,
    threads: Option<usize>,
) -> Result<()> {
    let rows = state.n_examples() * epochs.len();
    // Validation too runs on the caller's thread count (it is parallel over the labels).
    parallel::run(threads, rows, || {
        let (views, labels) = dense_views(array, epochs, labels, state.task(), state.n_examples())?;
        accumulate(state, &views, &labels, nan_policy)
    })?
}

/// Checks a dense input against the task and labels: the selected epochs' `[examples, columns]`
/// blocks, and the labels as `u32`.
fn dense_views<'a, T: Real>(
    array: ArrayView3<'a, T>,
    epochs: &[(usize, u32)],
    labels: &[i64],
    task: Task,
    expected_examples: usize,
) -> Result<(Vec<EpochView<'a, T>>, Vec<u32>)> {
    let (n_epochs, n_examples, cols) = array.dim();
    if task.output_columns() == 0 {
        return Err(Error::invalid("the number of classes must be at least 1"));
    }
    if cols as u32 != task.output_columns() {
        return Err(Error::invalid(format!(
            "the outputs have {cols} columns per example but the task has {} classes",
            task.output_columns()
        )));
    }
    if n_examples == 0 {
        return Err(Error::Empty(format!("no examples (outputs of shape [{n_epochs}, 0, {cols}])")));
    }
    if n_examples != expected_examples {
        return Err(Error::invalid(format!("{n_examples} rows of outputs for {expected_examples} examples")));
    }
    if epochs.is_empty() {
        return Err(Error::Empty("no epochs selected".into()));
    }
    let per = task.slots_per_example() as usize;
    if labels.len() != n_examples * per {
        return Err(Error::invalid(format!(
            "labels have {} entries, expected {} ({} examples{})",
            labels.len(),
            n_examples * per,
            n_examples,
            if per > 1 { format!(" x {per} classes") } else { String::new() }
        )));
    }
    let labels = validate_labels(labels, task)?;
    let mut views = Vec::with_capacity(epochs.len());
    for &(e, epoch) in epochs {
        if e >= n_epochs {
            return Err(Error::invalid(format!("epoch {e} is out of range for {n_epochs} epochs")));
        }
        let values = array
            .index_axis_move(Axis(0), e)
            .to_slice()
            .ok_or_else(|| Error::invalid("each epoch must be a C-contiguous [examples, classes] block"))?;
        views.push(EpochView { epoch, values });
    }
    Ok((views, labels))
}

/// [`compute_dense`] followed by [`finalize`], in one pass that never holds the per-example
/// state: each parallel task folds every epoch of its block of examples and writes their rows
/// of the table. Same numbers, bit for bit, as the two steps; for one-shot inputs, where the
/// state is not wanted afterwards.
#[allow(clippy::too_many_arguments)]
pub fn compute_dense_table<T: Real>(
    array: ArrayView3<'_, T>,
    epochs: &[usize],
    labels: &[i64],
    task: Task,
    kind: Kind,
    nan_policy: NanPolicy,
    threads: Option<usize>,
    opts: FinalizeOptions,
) -> Result<arrow_array::RecordBatch> {
    let numbered = number_epochs(epochs)?;
    let n_examples = array.dim().1;
    // Columns per slot: one per (example, class) slot for multi-label tasks.
    let cols = task.slot_columns() as usize;
    let per = task.slots_per_example() as u64;
    parallel::run(threads, n_examples * numbered.len(), || {
        let (views, labels) = dense_views(array, &numbered, labels, task, n_examples)?;
        let fill = |range: std::ops::Range<usize>, run: &mut RunColumns| -> Result<()> {
            let mut scratch = kernel::Scratch::default();
            run.resize(range.len());
            let block = (range.start, range.len());
            dense::fold_block(kind, nan_policy, &views, cols, &labels, block, per, &mut scratch, run, 0, |_, _, _| {
                Ok(())
            })
        };
        let source = table::Source::Computed { n_slots: labels.len(), fill: &fill };
        table::build_table(source, task, kind, None, opts)
    })?
}

fn number_epochs(epochs: &[usize]) -> Result<Vec<(usize, u32)>> {
    epochs.iter().map(|&e| u32::try_from(e).map(|n| (e, n)).map_err(|_| Error::invalid("too many epochs"))).collect()
}

impl State {
    /// Adds one epoch's outputs (`[rows, classes]`) to the state, as a training loop would after
    /// each batch or epoch. Without `index` the rows are all examples in order; with it, row `i`
    /// is example `index[i]`. Epochs may arrive in any order as long as each example sees each
    /// epoch once and never an epoch between two it already has (merging orders them exactly).
    /// All-or-nothing: on any error the state is unchanged.
    #[allow(clippy::too_many_arguments)]
    pub fn update<T: Real>(
        &mut self,
        outputs: ArrayView2<'_, T>,
        labels: &[i64],
        epoch: u32,
        index: Option<&[u64]>,
        nan_policy: NanPolicy,
        threads: Option<usize>,
    ) -> Result<()> {
        let rows = outputs.nrows();
        if index.is_none() && rows != self.n_examples() {
            return Err(Error::invalid(format!(
                "{rows} rows of outputs for {} examples; to update some examples, give each row's example index",
                self.n_examples()
            )));
        }
        let mut fresh = State::new(rows, self.task(), self.kind())?.with_label_changes(self.allows_label_change());
        fold_array(&mut fresh, outputs.insert_axis(Axis(0)), &[(0, epoch)], labels, nan_policy, threads).map_err(
            |e| match index {
                // Errors name rows of this update; report the example the caller knows.
                Some(index) => e.map_example(|row| index.get(row as usize).copied().unwrap_or(row)),
                None => e,
            },
        )?;
        match index {
            None => self.merge(&fresh),
            Some(index) => self.merge_at(&fresh, index),
        }
    }
}

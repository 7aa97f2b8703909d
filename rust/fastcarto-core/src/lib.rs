//! # fastcarto-core
//!
//! Training-dynamics metrics — dataset cartography (Swayamdipta et al., 2020), forgetting events
//! (Toneva et al., 2019), area under the margin (Pleiss et al., 2020), EL2N, loss and entropy —
//! computed in one streaming pass over epochs, with a fixed-size, exactly mergeable state per
//! example. No Python here: the bindings live in `fastcarto-py`.
//!
//! ```
//! use fastcarto_core::{compute_dense, FinalizeOptions, Kind, NanPolicy, Task};
//! // 2 epochs x 3 examples x 2 classes of logits
//! let logits = ndarray::Array3::<f32>::from_shape_vec((2, 3, 2), vec![
//!     2.0, 0.0,  0.0, 1.0,  1.0, 1.5,
//!     3.0, 0.0,  1.0, 0.0,  0.5, 2.0,
//! ]).unwrap();
//! let state = compute_dense(
//!     logits.view(), &[0, 1], &[0, 1, 0], Task::MultiClass { n_classes: 2 },
//!     Kind::Logits, NanPolicy::Raise, None,
//! ).unwrap();
//! let table = fastcarto_core::finalize(&state, None, FinalizeOptions::default()).unwrap();
//! assert_eq!(table.num_rows(), 3);
//! ```

pub mod dense;
pub mod error;
pub(crate) mod kernel;
pub mod math;
pub mod npy;
pub mod options;
pub mod parallel;
pub mod result;
pub mod serialize;
pub mod state;

pub use dense::{EpochView, accumulate, validate_labels};
pub use error::{Error, Result};
pub use kernel::prob_sum_tolerance;
pub use options::{Compat, Kind, NanPolicy, Task};
pub use result::{FinalizeOptions, finalize};
pub use state::{ExampleState, Observation, State};

use math::Real;
use ndarray::{ArrayView3, Axis};

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
    let (n_epochs, n_examples, cols) = array.dim();
    if cols as u32 != task.output_columns() {
        return Err(Error::invalid(format!(
            "the array has {cols} columns per example but the task has {} classes",
            task.output_columns()
        )));
    }
    if n_examples == 0 || cols == 0 {
        return Err(Error::Empty(format!("no examples to map (array shape [{n_epochs}, {n_examples}, {cols}])")));
    }
    if epochs.is_empty() {
        return Err(Error::Empty("no epochs selected".into()));
    }
    if labels.len() != n_examples * task.slots_per_example() as usize {
        return Err(Error::invalid(format!(
            "labels describe {} examples but the array has {n_examples}",
            labels.len() / task.slots_per_example() as usize
        )));
    }
    let labels = validate_labels(labels, task)?;
    let mut views = Vec::with_capacity(epochs.len());
    for &e in epochs {
        if e >= n_epochs {
            return Err(Error::invalid(format!("epoch {e} is out of range for {n_epochs} epochs")));
        }
        let epoch = u32::try_from(e).map_err(|_| Error::invalid("too many epochs"))?;
        let values = array
            .index_axis_move(Axis(0), e)
            .to_slice()
            .ok_or_else(|| Error::invalid("each epoch must be a C-contiguous [examples, classes] block"))?;
        views.push(EpochView { epoch, values });
    }
    let mut state = State::new(n_examples, task, kind)?;
    let rows = n_examples * epochs.len();
    parallel::run(threads, rows, || accumulate(&mut state, &views, &labels, nan_policy))??;
    Ok(state)
}

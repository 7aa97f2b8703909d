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

pub mod audit;
pub mod datamodels;
pub mod error;
pub(crate) mod fold;
pub(crate) mod kernel;
pub mod knn;
pub mod metrics;
pub mod read;
pub mod state;
pub mod sys;
pub(crate) mod table;

pub use error::{Error, Example, Result};
pub use fold::validate;
pub use fold::{EpochView, IntValue, KeyedState, accumulate, compute_dense, compute_dense_table, validate_labels};
pub use kernel::math::Real;
pub use kernel::prob_sum_tolerance;
pub use metrics::{Compat, ExampleState, Kind, NONE, NanPolicy, Observation, Sums, Task};
pub use state::by_id::merge_by_id;
pub use state::{State, serialize};
pub use table::{CARTOGRAPHY_NEVER_LEARNED, FinalizeOptions, finalize, take_table};

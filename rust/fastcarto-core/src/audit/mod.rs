//! The dataset audit's numeric work, one file per issue type of cleanlab's `Datalab`. Each works
//! on arrays (a neighbour graph's `(distances, indices)`, `pred_probs`, labels) and returns
//! per-example scores and flags; the Python modules in `fastcarto/_audit/` only shape them.

pub mod near_duplicate;
pub mod neighbours;
pub mod non_iid;
pub mod outlier;
pub(crate) mod stats;

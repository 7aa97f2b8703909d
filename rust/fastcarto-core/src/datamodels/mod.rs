//! Datamodels (Ilyas et al., 2022, "Datamodels: Predicting Predictions from Training Data"):
//! one sparse linear model per target, from the mask of the training examples a model was
//! trained on to that model's output on the target.
//!
//! `stats` folds masks and outputs into sufficient statistics (one pass, additive across
//! shards); `solve` fits every target's lasso from them, in parallel over targets.

mod path;
mod solve;
mod stats;

#[cfg(test)]
mod tests;

pub use solve::{Fit, FitOptions, fit, fit_fixed};
pub use stats::{Masks, Stats};

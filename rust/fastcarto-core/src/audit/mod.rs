//! The dataset audit's per-issue-type kernels (cleanlab's Datalab issue types): one file per
//! issue type, each a pure function of arrays. The Python package (`fastcarto._audit`) shapes
//! their results into cleanlab's columns and summaries.

pub mod class_imbalance;
pub mod null;

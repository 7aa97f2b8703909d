//! The one error type of the engine. Every message says what was wrong, where, and what to do.

use std::path::PathBuf;

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while computing training-dynamics metrics.
///
/// The Python binding maps each variant to one exception class; keep the variants few and the
/// messages specific.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value is NaN or infinite and `nan_policy` is `raise`.
    #[error(
        "non-finite value ({value}) at epoch {epoch}, example {example}; \
         pass nan_policy=\"omit\" to skip such observations"
    )]
    NonFinite { epoch: u32, example: u64, value: f64 },

    /// `kind="probs"` but a row is not a probability distribution.
    #[error(
        "invalid probabilities at epoch {epoch}, example {example}: {reason}; if these are logits, pass kind=\"logits\""
    )]
    InvalidProbabilities { epoch: u32, example: u64, reason: String },

    /// A label is negative or not smaller than the number of classes.
    #[error("label {label} of example {example} is out of range for {n_classes} classes (valid: 0..={max})")]
    LabelOutOfRange { example: u64, label: i64, n_classes: u32, max: u32 },

    /// The same example carries two different labels.
    #[error(
        "example {example} has label {new} but was recorded with label {old} before; labels must not change between epochs"
    )]
    LabelChanged { example: u64, old: u32, new: u32 },

    /// The same (epoch, example) was observed twice.
    #[error("example {example} already has an observation for epoch {epoch} (duplicate row)")]
    DuplicateObservation { epoch: u32, example: u64 },

    /// Two partial states for one example interleave in time, so forgetting cannot be ordered.
    #[error(
        "example {example}: epochs {first_a}..={last_a} and {first_b}..={last_b} interleave; \
         states can only be merged when one covers strictly later epochs than the other"
    )]
    InterleavedEpochs { example: u64, first_a: u32, last_a: u32, first_b: u32, last_b: u32 },

    /// An observation arrives for an epoch earlier than one already recorded.
    #[error(
        "example {example} receives epoch {epoch} after epoch {last}; feed epochs in increasing order or merge separate states"
    )]
    EpochOutOfOrder { example: u64, epoch: u32, last: u32 },

    /// Memory for the per-example state could not be allocated.
    #[error("not enough memory for {what} ({bytes} bytes)")]
    OutOfMemory { what: String, bytes: u128 },

    /// Shapes, dtypes or option values that do not fit together.
    #[error("{0}")]
    InvalidInput(String),

    /// Empty input where data is required.
    #[error("{0}")]
    Empty(String),

    /// Two states that describe different problems (classes, kind, size) cannot be merged.
    #[error("cannot merge states: {0}")]
    Incompatible(String),

    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// A file was read but its contents are not what fastcarto expects.
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },

    /// An Arrow error while (de)serializing state or results.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

impl Error {
    /// Rewrites the example index an error names.
    pub fn map_example(self, f: impl Fn(u64) -> u64) -> Self {
        match self {
            Error::NonFinite { epoch, example, value } => Error::NonFinite { epoch, example: f(example), value },
            Error::InvalidProbabilities { epoch, example, reason } => {
                Error::InvalidProbabilities { epoch, example: f(example), reason }
            }
            Error::LabelOutOfRange { example, label, n_classes, max } => {
                Error::LabelOutOfRange { example: f(example), label, n_classes, max }
            }
            Error::LabelChanged { example, old, new } => Error::LabelChanged { example: f(example), old, new },
            Error::DuplicateObservation { epoch, example } => {
                Error::DuplicateObservation { epoch, example: f(example) }
            }
            Error::EpochOutOfOrder { example, epoch, last } => {
                Error::EpochOutOfOrder { example: f(example), epoch, last }
            }
            Error::InterleavedEpochs { example, first_a, last_a, first_b, last_b } => {
                Error::InterleavedEpochs { example: f(example), first_a, last_a, first_b, last_b }
            }
            other => other,
        }
    }

    /// Rewrites a slot index into an example index (multi-label states hold several slots per
    /// example), so messages name the example the user knows.
    pub fn slot_to_example(self, slots_per_example: u64) -> Self {
        if slots_per_example == 1 {
            return self;
        }
        let self_ = match self {
            Error::InvalidProbabilities { epoch, example, reason } => Error::InvalidProbabilities {
                epoch,
                example,
                reason: format!("{reason} (class {})", example % slots_per_example),
            },
            other => other,
        };
        self_.map_example(|slot| slot / slots_per_example)
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }
}

//! The one error type of the engine. Every message says what was wrong, where, and what to do,
//! in words that hold for every front end: the option to change is named by the bindings
//! (`fastcarto-py/src/errors.rs`), which know how their users spell it.

use std::path::PathBuf;

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Names an example in messages: by position when the input is dense, by the user's id when
/// the rows come from a keyed table (so the message points at something the user can look up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Example {
    Index(u64),
    Id(String),
}

impl std::fmt::Display for Example {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Example::Index(i) => write!(f, "example {i}"),
            Example::Id(id) => write!(f, "example with id {id}"),
        }
    }
}

impl Example {
    /// The position, when the example is named by one.
    pub fn index(&self) -> Option<u64> {
        match self {
            Example::Index(i) => Some(*i),
            Example::Id(_) => None,
        }
    }
}

impl From<u64> for Example {
    fn from(i: u64) -> Self {
        Example::Index(i)
    }
}

impl PartialEq<u64> for Example {
    fn eq(&self, other: &u64) -> bool {
        matches!(self, Example::Index(i) if i == other)
    }
}

/// Everything that can go wrong while computing training-dynamics metrics.
///
/// The Python binding maps each variant to one exception class; keep the variants few and the
/// messages specific.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value is NaN or infinite and `nan_policy` is `raise`.
    #[error("non-finite value ({value}) at epoch {epoch}, {example}")]
    NonFinite { epoch: u32, example: Example, value: f64 },

    /// `kind="probs"` but a row is not a probability distribution.
    #[error("invalid probabilities at epoch {epoch}, {example}: {reason}")]
    InvalidProbabilities { epoch: u32, example: Example, reason: String },

    /// A label is negative or not smaller than the number of classes.
    #[error("label {label} of {example} is out of range for {n_classes} classes (valid labels: 0 to {max})")]
    LabelOutOfRange { example: Example, label: i64, n_classes: u32, max: u32 },

    /// The same example carries two different labels.
    #[error(
        "{example} has label {new} but was recorded with label {old} before; labels must not change between epochs"
    )]
    LabelChanged { example: Example, old: u32, new: u32 },

    /// The same (epoch, example) was observed twice.
    #[error("{example} already has an observation for epoch {epoch} (duplicate row)")]
    DuplicateObservation { epoch: u32, example: Example },

    /// Two partial states for one example interleave in time, so forgetting cannot be ordered.
    #[error(
        "{example}: epochs {first_a} to {last_a} and {first_b} to {last_b} interleave; \
         states can only be merged when one covers strictly later epochs than the other"
    )]
    InterleavedEpochs { example: Example, first_a: u32, last_a: u32, first_b: u32, last_b: u32 },

    /// An observation arrives for an epoch earlier than one already recorded.
    #[error(
        "{example} receives epoch {epoch} after epoch {last}; feed epochs in increasing order or merge separate states"
    )]
    EpochOutOfOrder { example: Example, epoch: u32, last: u32 },

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
    #[error("{path}: {}", io_reason(.source))]
    Io { path: PathBuf, source: std::io::Error },

    /// A file was read but its contents are not what fastcarto expects.
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },

    /// An error inside a file (or stream), with where it happened: path, batch, line.
    #[error("{location}: {source}")]
    Located { location: String, source: Box<Error> },

    /// An Arrow error while (de)serializing state or results.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// What went wrong with a file, in the system's words ("No such file or directory") without the
/// " (os error 2)" that Rust appends: the message is read by users, not by a debugger.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) => text[..at].to_string(),
        _ => text,
    }
}

impl Error {
    /// Rewrites the example index an error names.
    pub fn map_example(self, f: impl Fn(u64) -> u64) -> Self {
        self.name_example(|i| Example::Index(f(i)))
    }

    /// Replaces the example index an error names (a row or slot) by what the user knows it as.
    pub fn name_example(self, f: impl Fn(u64) -> Example) -> Self {
        let name = |e: Example| match e {
            Example::Index(i) => f(i),
            named => named,
        };
        match self {
            Error::NonFinite { epoch, example, value } => Error::NonFinite { epoch, example: name(example), value },
            Error::InvalidProbabilities { epoch, example, reason } => {
                Error::InvalidProbabilities { epoch, example: name(example), reason }
            }
            Error::LabelOutOfRange { example, label, n_classes, max } => {
                Error::LabelOutOfRange { example: name(example), label, n_classes, max }
            }
            Error::LabelChanged { example, old, new } => Error::LabelChanged { example: name(example), old, new },
            Error::DuplicateObservation { epoch, example } => {
                Error::DuplicateObservation { epoch, example: name(example) }
            }
            Error::EpochOutOfOrder { example, epoch, last } => {
                Error::EpochOutOfOrder { example: name(example), epoch, last }
            }
            Error::InterleavedEpochs { example, first_a, last_a, first_b, last_b } => {
                Error::InterleavedEpochs { example: name(example), first_a, last_a, first_b, last_b }
            }
            Error::Located { location, source } => {
                Error::Located { location, source: Box::new(source.name_example(f)) }
            }
            other => other,
        }
    }

    /// Says where an error happened (file, batch, line), keeping its kind.
    pub fn located(self, location: impl Into<String>) -> Self {
        match self {
            // Opening and parsing errors already name their file.
            e @ (Error::Io { .. } | Error::Format { .. } | Error::OutOfMemory { .. }) => e,
            e => Error::Located { location: location.into(), source: Box::new(e) },
        }
    }

    /// The error without its location, which decides the exception class.
    pub fn root(&self) -> &Error {
        match self {
            Error::Located { source, .. } => source.root(),
            e => e,
        }
    }

    /// Rewrites a slot index into an example index (multi-label states hold several slots per
    /// example), so messages name the example the user knows.
    pub fn slot_to_example(self, slots_per_example: u64) -> Self {
        if slots_per_example == 1 {
            return self;
        }
        let self_ = match self {
            Error::InvalidProbabilities { epoch, example: Example::Index(slot), reason } => {
                Error::InvalidProbabilities {
                    epoch,
                    example: Example::Index(slot),
                    reason: format!("{reason} (class {})", slot % slots_per_example),
                }
            }
            other => other,
        };
        self_.map_example(|slot| slot / slots_per_example)
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_messages_leave_out_the_os_error_code() {
        let source = std::io::Error::from_raw_os_error(2);
        let msg = Error::Io { path: "x.npy".into(), source }.to_string();
        assert!(msg.starts_with("x.npy: ") && !msg.contains("os error"), "{msg}");
        let custom = std::io::Error::other("cut short");
        assert_eq!(Error::Io { path: "y".into(), source: custom }.to_string(), "y: cut short");
    }
}

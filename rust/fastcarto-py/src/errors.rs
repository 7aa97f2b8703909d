//! The one place where engine errors become Python exceptions.
//!
//! Hierarchy (all importable from `fastcarto`): `FastcartoError(ValueError)` and below it
//! `NonFiniteError`, `InvalidProbabilitiesError`, `LabelError`, `EpochOrderError` (duplicate
//! or out-of-order epochs; `InterleavedEpochsError` below it), `IncompatibleStateError`,
//! `FileFormatError`, `EmptyInputError`.
//!
//! Core messages are neutral; where an option fixes the error, the message ends with it as
//! Python spells it (`pass nan_policy="omit" ...`), and the exception carries `argument`,
//! `value` and `template` (the message with `{arg}` where the option goes), so that the CLI
//! writes its own spelling (`--nan-policy omit`) without rewriting the text.
//! Unreadable paths raise the builtin `OSError` subclasses (`FileNotFoundError`, ...), and a
//! state too large to allocate raises `MemoryError`.

use fastcarto_core::Error;
use pyo3::exceptions::{
    PyFileNotFoundError, PyIsADirectoryError, PyMemoryError, PyOSError, PyPermissionError, PyValueError,
};
use pyo3::prelude::*;

pyo3::create_exception!(fastcarto, FastcartoError, PyValueError, "Base class of fastcarto's errors.");
pyo3::create_exception!(fastcarto, NonFiniteError, FastcartoError, "An output is NaN or infinite.");
pyo3::create_exception!(
    fastcarto,
    InvalidProbabilitiesError,
    FastcartoError,
    "kind=\"probs\" but a row is not a probability distribution."
);
pyo3::create_exception!(fastcarto, LabelError, FastcartoError, "A label is out of range or changes between epochs.");
pyo3::create_exception!(
    fastcarto,
    EpochOrderError,
    FastcartoError,
    "An (epoch, example) pair is duplicated, or epochs arrive in an order that cannot be merged."
);
pyo3::create_exception!(
    fastcarto,
    InterleavedEpochsError,
    EpochOrderError,
    "Two parts of one example's epochs interleave (a stream read once must come in epoch order)."
);
pyo3::create_exception!(fastcarto, IncompatibleStateError, FastcartoError, "Two states describe different problems.");
pyo3::create_exception!(fastcarto, FileFormatError, FastcartoError, "A file is not in a format fastcarto can read.");
pyo3::create_exception!(fastcarto, EmptyInputError, FastcartoError, "There is nothing to compute on.");

/// Converts an engine error into the matching Python exception, with the option that fixes it.
pub fn to_py(err: Error) -> PyErr {
    to_py_with(err, Hints::All)
}

/// Which options an error's message may suggest: the ones the failing call has.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hints {
    All,
    /// The call has no `nan_policy` (the Recorder refuses non-finite outputs).
    NoNanPolicy,
}

/// The option that fixes an error: the message ends `{before}{name}="{value}"{after}`.
struct Hint {
    before: &'static str,
    name: &'static str,
    value: &'static str,
    after: &'static str,
}

/// The option whose hint ends the message of `err`: core messages are neutral, the binding names
/// the option as Python spells it.
fn hint(err: &Error, hints: Hints) -> Option<Hint> {
    match err.root() {
        Error::NonFinite { .. } if hints == Hints::All => {
            Some(Hint { before: "pass ", name: "nan_policy", value: "omit", after: " to skip such observations" })
        }
        Error::InvalidProbabilities { .. } => {
            Some(Hint { before: "if these are logits, pass ", name: "kind", value: "logits", after: "" })
        }
        _ => None,
    }
}

/// [`to_py`] for a call that takes only some of the options a hint may name.
pub fn to_py_with(err: Error, hints: Hints) -> PyErr {
    let neutral = err.to_string();
    let Some(Hint { before, name, value, after }) = hint(&err, hints) else {
        return exception(&err, neutral);
    };
    let py_err = exception(&err, format!("{neutral}; {before}{name}=\"{value}\"{after}"));
    // `{arg}` is where a front end writes the option its own way (the CLI: `--nan-policy omit`).
    let escaped = neutral.replace('{', "{{").replace('}', "}}");
    let template = format!("{escaped}; {before}{{arg}}{after}");
    Python::attach(|py| {
        let exc = py_err.value(py);
        // Setting attributes on a fresh exception object does not fail.
        let _ = exc.setattr("template", template);
        let _ = exc.setattr("argument", name);
        let _ = exc.setattr("value", value);
    });
    py_err
}

/// The exception class of `err`, carrying `msg`.
fn exception(err: &Error, msg: String) -> PyErr {
    match err.root() {
        Error::NonFinite { .. } => NonFiniteError::new_err(msg),
        Error::InvalidProbabilities { .. } => InvalidProbabilitiesError::new_err(msg),
        Error::LabelOutOfRange { .. } | Error::LabelChanged { .. } => LabelError::new_err(msg),
        Error::InterleavedEpochs { .. } => InterleavedEpochsError::new_err(msg),
        Error::DuplicateObservation { .. } | Error::EpochOutOfOrder { .. } => EpochOrderError::new_err(msg),
        Error::Incompatible(_) => IncompatibleStateError::new_err(msg),
        Error::Empty(_) => EmptyInputError::new_err(msg),
        Error::Format { .. } => FileFormatError::new_err(msg),
        Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
            std::io::ErrorKind::IsADirectory => PyIsADirectoryError::new_err(msg),
            _ => PyOSError::new_err(msg),
        },
        Error::OutOfMemory { .. } => PyMemoryError::new_err(msg),
        Error::InvalidInput(_) | Error::Arrow(_) | Error::Located { .. } => FastcartoError::new_err(msg),
    }
}

/// Registers the exception classes on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("FastcartoError", py.get_type::<FastcartoError>())?;
    m.add("NonFiniteError", py.get_type::<NonFiniteError>())?;
    m.add("InvalidProbabilitiesError", py.get_type::<InvalidProbabilitiesError>())?;
    m.add("LabelError", py.get_type::<LabelError>())?;
    m.add("EpochOrderError", py.get_type::<EpochOrderError>())?;
    m.add("InterleavedEpochsError", py.get_type::<InterleavedEpochsError>())?;
    m.add("IncompatibleStateError", py.get_type::<IncompatibleStateError>())?;
    m.add("FileFormatError", py.get_type::<FileFormatError>())?;
    m.add("EmptyInputError", py.get_type::<EmptyInputError>())?;
    Ok(())
}

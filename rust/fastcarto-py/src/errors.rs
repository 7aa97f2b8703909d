//! The one place where engine errors become Python exceptions.
//!
//! Hierarchy (all importable from `fastcarto`): `FastcartoError(ValueError)` and below it
//! `NonFiniteError`, `InvalidProbabilitiesError`, `LabelError`, `EpochOrderError` (duplicate
//! or out-of-order epochs), `IncompatibleStateError`, `FileFormatError`, `EmptyInputError`.
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
pyo3::create_exception!(fastcarto, IncompatibleStateError, FastcartoError, "Two states describe different problems.");
pyo3::create_exception!(fastcarto, FileFormatError, FastcartoError, "A file is not in a format fastcarto can read.");
pyo3::create_exception!(fastcarto, EmptyInputError, FastcartoError, "There is nothing to compute on.");

/// Converts an engine error into the matching Python exception.
pub fn to_py(err: Error) -> PyErr {
    let msg = err.to_string();
    match err.root() {
        Error::NonFinite { .. } => NonFiniteError::new_err(msg),
        Error::InvalidProbabilities { .. } => InvalidProbabilitiesError::new_err(msg),
        Error::LabelOutOfRange { .. } | Error::LabelChanged { .. } => LabelError::new_err(msg),
        Error::DuplicateObservation { .. } | Error::InterleavedEpochs { .. } | Error::EpochOutOfOrder { .. } => {
            EpochOrderError::new_err(msg)
        }
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
    m.add("IncompatibleStateError", py.get_type::<IncompatibleStateError>())?;
    m.add("FileFormatError", py.get_type::<FileFormatError>())?;
    m.add("EmptyInputError", py.get_type::<EmptyInputError>())?;
    Ok(())
}

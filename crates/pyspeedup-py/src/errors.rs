//! The exceptions the package raises, and the mapping from the crates' errors to them.
//!
//! Every Rust error becomes an exception people already catch: `KeyError`, `IndexError`,
//! `ValueError`, and `OSError` subclasses for everything about files.

#![allow(unreachable_pub)] // `create_exception!` declares `pub` types; the module is private.

use pyo3::exceptions::{PyFileNotFoundError, PyIndexError, PyOSError, PyRecursionError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    pyspeedup.memory,
    StoreError,
    PyOSError,
    "A DiskDict or DiskList store could not be used (base class of Locked, Corrupt, TypeMismatch)."
);
pyo3::create_exception!(
    pyspeedup.memory,
    Locked,
    StoreError,
    "The store is open elsewhere, in this process or another: close that handle first."
);
pyo3::create_exception!(
    pyspeedup.memory,
    Corrupt,
    StoreError,
    "The store's files are damaged or are not a store: nothing was read from them."
);
pyo3::create_exception!(
    pyspeedup.memory,
    TypeMismatch,
    StoreError,
    "The store holds another kind of collection (a DiskList opened as a DiskDict, or a store of another program)."
);
pyo3::create_exception!(
    pyspeedup.memory,
    RolledBack,
    pyo3::exceptions::PyUserWarning,
    "Warning: the store's newest header was damaged, and it opened as of an earlier flush (what later flushes wrote is not in it)."
);
pyo3::create_exception!(
    pyspeedup.concurrent,
    CycleError,
    PyRecursionError,
    "A cached function's value for some arguments depends on itself: computing it could never finish."
);

/// A `Corrupt` exception with `what` was found.
pub(crate) fn corrupt(what: &str) -> PyErr {
    Corrupt::new_err(format!("the store holds {what}: it is damaged or was written by another program"))
}

/// The exception for an error of speedup-paged.
pub(crate) fn store(err: speedup_paged::Error) -> PyErr {
    use speedup_paged::Error as E;
    let message = err.to_string();
    match err {
        E::Locked { .. } => Locked::new_err(message),
        E::Corrupt { .. } | E::NotAStore { .. } | E::UnsupportedFormat { .. } => Corrupt::new_err(message),
        E::TypeMismatch { .. } => TypeMismatch::new_err(message),
        E::IndexOutOfRange { .. } => PyIndexError::new_err(message),
        E::InvalidName { .. } | E::Serialize { .. } => PyValueError::new_err(message),
        E::LocationMissing { .. } => PyFileNotFoundError::new_err(message),
        // ENOSPC, so `except OSError as e: e.errno == errno.ENOSPC` works.
        E::DiskFull { .. } => PyOSError::new_err((28, message)),
        E::Io { ref source, .. } => match source.raw_os_error() {
            Some(errno) => PyOSError::new_err((errno, message)),
            None => PyOSError::new_err(message),
        },
        _ => StoreError::new_err(message),
    }
}

/// Warns with [`RolledBack`] when a store opened from its older header slot.
pub(crate) fn warn_fallback(
    py: Python<'_>,
    path: &str,
    fallback: Option<&speedup_paged::HeaderFallback>,
) -> PyResult<()> {
    let Some(fb) = fallback else { return Ok(()) };
    let message = format!(
        "{path}: the newest header (at byte {}) was damaged, so the store opened as of flush {}: \
         what later flushes wrote is not in it (a crash during a flush does this by design; \
         otherwise the file was damaged)",
        fb.damaged_slot_offset, fb.opened_generation
    );
    let message = std::ffi::CString::new(message).unwrap_or_default();
    PyErr::warn(py, &py.get_type::<RolledBack>(), &message, 1)
}

/// The exception for using a store after `close()`.
pub(crate) fn closed() -> PyErr {
    PyValueError::new_err("operation on a closed store")
}

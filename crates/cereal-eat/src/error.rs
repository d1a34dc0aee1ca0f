//! The crate's one error type.

use std::path::PathBuf;

/// `Result<T, cereal_eat::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A shape does not fit the data or the request.
    #[error("bad shape: {reason}")]
    Shape {
        /// What does not fit.
        reason: String,
    },
    /// An I/O call on a shared store failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The store file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a shared store written by this crate.
    #[error("{path} is not a cereal-eat shared store (bad magic or header); pick another path")]
    NotShared {
        /// The file.
        path: PathBuf,
    },
    /// The store holds another element type or shape than the one asked for.
    #[error("{path} holds {found}, but was opened as {expected}")]
    TypeMismatch {
        /// The store file.
        path: PathBuf,
        /// What the caller asked for.
        expected: String,
        /// What the header says.
        found: String,
    },
}

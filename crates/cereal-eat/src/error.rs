//! The crate's one error type.

use std::path::PathBuf;

/// `Result<T, cereal_eat::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A shape does not fit the data or the request, or is too large for any buffer.
    #[error("bad shape: {reason}")]
    Shape {
        /// What does not fit.
        reason: String,
    },
    /// An I/O call on a shared store failed.
    // The cause is `source()`, not part of the message: reporters (anyhow, eyre) print the
    // chain, and would print it twice.
    #[error("I/O error on {path}")]
    Io {
        /// The store file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a shared store written by this crate.
    #[error("{path} is not a cereal-eat shared store ({reason}); pick another path")]
    NotShared {
        /// The file.
        path: PathBuf,
        /// What in the file gave it away.
        reason: String,
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
    /// The store's header is fine but the file is not the size its shape needs: it was
    /// truncated, extended or overwritten by something other than this crate.
    #[error(
        "{path}: its header says shape {shape:?}, which needs {expected} bytes (a 128-byte header \
         and 8 bytes per element), but the file has {found} bytes; it was changed outside \
         cereal-eat, so remove it and create the store again"
    )]
    SizeMismatch {
        /// The store file.
        path: PathBuf,
        /// The shape the header records.
        shape: Vec<usize>,
        /// The size that shape needs, in bytes.
        expected: u64,
        /// The size the file (and so its mapping) has, in bytes.
        found: u64,
    },
    /// [`SharedArray::create`](crate::SharedArray::create) found a file at the path already:
    /// it never truncates or replaces a file, which another process may have mapped.
    #[error(
        "{path} already exists; open it (SharedArray::open or open_or_create), or remove it \
         first if no process uses it any more"
    )]
    AlreadyExists {
        /// The path that is taken.
        path: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// The cause is the source, not part of the message: a reporter walking the chain
    /// (anyhow, eyre) prints it once.
    #[test]
    fn io_prints_its_cause_once_in_a_chain() {
        let error = Error::Io { path: "/x/store".into(), source: std::io::Error::other("disk on fire") };
        assert_eq!(error.to_string(), "I/O error on /x/store");
        assert_eq!(error.source().map(ToString::to_string).as_deref(), Some("disk on fire"));
    }
}

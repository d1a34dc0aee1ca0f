//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// `Result<T, speedup_paged::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with a store.
///
/// A missing key or an index past the end of a list is *not* an error for the `get`
/// family (they return `Ok(None)`, like `HashMap::get` and `Vec::get`): an `Err`
/// always means something went wrong and says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    // The cause is not repeated here: `source()` returns it, and error reporters (anyhow,
    // eyre) print the chain.
    #[error("I/O error on {path}")]
    Io {
        /// The file or folder the call was about.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// The disk (or the quota) is full. When writing: nothing written since the last
    /// successful `flush` has been made durable, and the in-memory state is intact: free
    /// space and retry. When creating: no store was made.
    #[error("no space left on the device holding {path} {during}")]
    DiskFull {
        /// The store file that could not grow.
        path: PathBuf,
        /// What was being done, which decides what to do about it.
        during: Activity,
    },

    /// Another handle, in this process or another one, has the store open.
    #[error(
        "{path} is locked by another open handle (this process or another one): close that handle first, or open a store with another basename"
    )]
    Locked {
        /// The locked store file.
        path: PathBuf,
    },

    /// The store file failed a checksum or a structural check.
    #[error(
        "{path} is corrupt ({reason}); entries in it cannot be trusted: restore the file from a backup, or delete it to start empty"
    )]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What check failed, and where.
        reason: String,
    },

    /// The file exists but was not written by speedup-paged.
    #[error(
        "{path} is not a speedup-paged store (its header is missing or has another magic number); pick another basename or location"
    )]
    NotAStore {
        /// The foreign file.
        path: PathBuf,
    },

    /// The file was written in a format this build does not read.
    #[error("{path} uses store format {found}, but this build of speedup-paged reads format {supported}")]
    UnsupportedFormat {
        /// The store file.
        path: PathBuf,
        /// The format version found in the header.
        found: u32,
        /// The format version this build reads and writes.
        supported: u32,
    },

    /// The store places keys with a hash algorithm this build does not know (a newer release
    /// wrote it).
    #[error(
        "{path} places keys with hash algorithm {found}, but this build of speedup-paged knows algorithm {supported}: open it with the release that wrote it"
    )]
    UnsupportedHash {
        /// The store file.
        path: PathBuf,
        /// The algorithm id found in the header.
        found: u32,
        /// The algorithm id this build uses.
        supported: u32,
    },

    /// The store holds other key/value types than the ones it was opened with.
    #[error(
        "{path} holds {found}, but was opened as {expected}: open it with the types it was written with, or use another basename"
    )]
    TypeMismatch {
        /// The store file.
        path: PathBuf,
        /// The types this call asked for.
        expected: String,
        /// The types recorded in the store's header.
        found: String,
    },

    /// A list index past the end (for `set`, `remove`, and `insert` past `len`).
    #[error("index {index} is out of range for a list of length {len}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The list's length at the time.
        len: u64,
    },

    /// The basename cannot name a store file.
    #[error("invalid store basename {name:?}: {reason}")]
    InvalidName {
        /// The rejected basename.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The location folder does not exist and `Options::create_location(false)` was set.
    #[error("the folder {path} does not exist: create it, or leave Options::create_location on")]
    LocationMissing {
        /// The missing folder.
        path: PathBuf,
    },

    /// No home folder to put the default `~/.PySpeedup` location in.
    #[error("no home folder is known (HOME is not set): set HOME or pass Options::location")]
    NoHome,

    /// A key or value could not be serialized (for example, it is larger than 4 GiB).
    #[error("cannot store a key or value: {reason}")]
    Serialize {
        /// The serializer's message.
        reason: String,
    },
}

/// What a store was doing when the disk filled up ([`Error::DiskFull`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Activity {
    /// Creating a new store file in `open`.
    Creating,
    /// Writing pages (a `flush`, or a write that makes room first).
    Writing,
}

impl std::fmt::Display for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Activity::Creating => {
                "while creating the store: nothing was created; free some space and open it again"
            }
            Activity::Writing => {
                "while writing pages: the call changed nothing in memory and entries flushed before are safe; free some space and retry it (or call flush() again)"
            }
        })
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns, turning "no space left" into
    /// [`Error::DiskFull`] (while writing) so callers can match on it.
    pub(crate) fn io(path: &std::path::Path, source: io::Error) -> Self {
        Self::io_during(path, source, Activity::Writing)
    }

    /// As [`Error::io`], for an error met while doing `during`.
    pub(crate) fn io_during(path: &std::path::Path, source: io::Error, during: Activity) -> Self {
        // ENOSPC, and EFBIG: a file-size limit (RLIMIT_FSIZE, a quota) is a full disk too.
        let full = matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::FileTooLarge)
            || matches!(source.raw_os_error(), Some(28 | 27));
        if full {
            return Error::DiskFull { path: path.to_path_buf(), during };
        }
        Error::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn corrupt(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Error::Corrupt { path: path.to_path_buf(), reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_space_left_becomes_disk_full() {
        let path = std::path::Path::new("/x/s.spdict");
        assert!(matches!(Error::io(path, io::Error::from_raw_os_error(28)), Error::DiskFull { .. }));
        let other = Error::io(path, io::Error::from_raw_os_error(5));
        assert!(matches!(other, Error::Io { .. }));
        assert!(other.to_string().contains("/x/s.spdict"), "messages name the file: {other}");
        let full = Error::io(path, io::Error::from_raw_os_error(28));
        assert!(full.to_string().contains("flush() again"), "and say what to do: {full}");
        let creating = Error::io_during(path, io::Error::from_raw_os_error(28), Activity::Creating);
        let message = creating.to_string();
        assert!(message.contains("creating") && !message.contains("flush"), "fits an open: {message}");
    }
}

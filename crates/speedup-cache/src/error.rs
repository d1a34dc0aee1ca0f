//! Why a value could not be had.

use std::fmt;

/// `Result` of a fallible cache's call: the value, or why there is none ([`Error`], with the
/// function's own error type `E`).
pub type Result<T, E = std::convert::Infallible> = std::result::Result<T, Error<E>>;

/// Any error, boxed: what a [`Backing`](crate::Backing) tier's `flush` returns. The tier's
/// own error type stays inside (downcast to reach it), with its `source()` chain; a plain
/// message converts with `.into()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why [`Cache::flush`](crate::Cache::flush) (or `AsyncCache::flush`, feature `tokio`) did
/// not make the backing tier durable.
/// The values stay in memory; a later `flush` tries again.
#[derive(Debug, thiserror::Error)]
#[error("the cache's backing tier could not flush: {source}")]
pub struct FlushError {
    /// The tier's own error: for a `DiskDict` tier (feature `persist`), a
    /// `speedup_paged::Error` (`source.downcast_ref::<speedup_paged::Error>()`).
    #[from]
    pub source: BoxError,
}

/// Why [`Cache::try_get`](crate::Cache::try_get) returned no value.
///
/// None of these is cached: the next request for the key computes it again. One failure
/// reaches every caller waiting for the key, so the function's own error is shared behind an
/// `Arc` (your error type need not be `Clone`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error<E = std::convert::Infallible> {
    /// The function returned this error for the key (fallible caches only).
    #[error("computing {key} failed: {error}")]
    Failed {
        /// The key, as `Debug` prints it.
        key: String,
        /// The function's error.
        error: std::sync::Arc<E>,
    },
    /// The function panicked while computing the key.
    #[error("computing {key} panicked: {message}")]
    Panicked {
        /// The key, as `Debug` prints it.
        key: String,
        /// The panic message.
        message: String,
    },
    /// The key depends on itself, directly or through other keys (on one thread or across
    /// threads): computing it could never finish.
    #[error("cycle: {key} depends on itself (through {path})")]
    Cycle {
        /// The key whose computation would wait for itself.
        key: String,
        /// The chain of keys that closes the cycle, e.g. `1 -> 2 -> 1`.
        path: String,
    },
    /// The shared tier (Redis, feature `redis`) could not be reached or refused a command,
    /// and the cache is configured to fail closed (`FailMode::Closed`).
    /// Nothing was computed for the key.
    #[error("the shared Redis tier is unavailable for {key}: {message}")]
    Unavailable {
        /// The key, as `Debug` prints it.
        key: String,
        /// What failed, with the server address.
        message: String,
    },
    /// The shared tier (Redis, feature `redis`) holds something for the key that is not a
    /// value this cache wrote: a corrupt or truncated value, one written for other types, or
    /// a key of another Redis type. It is neither returned nor overwritten; delete the
    /// named Redis key to let the cache compute it again.
    #[error("the shared Redis tier holds an invalid value for {key}: {message}")]
    Corrupt {
        /// The key, as `Debug` prints it.
        key: String,
        /// What is wrong with the stored bytes, and the Redis key that holds them.
        message: String,
    },
}

impl<E> Error<E> {
    /// The function's own error for the key it computes, for a fallible cache's function to
    /// return (`parse(s).map_err(Error::failed)?`): the cache fills in the key, so nobody
    /// formats it by hand.
    pub fn failed(error: E) -> Self {
        Error::Failed { key: String::new(), error: std::sync::Arc::new(error) }
    }

    /// Names `key` in a [`Error::failed`] error that does not name its key yet.
    pub(crate) fn for_key<K: fmt::Debug>(self, key: &K) -> Self {
        match self {
            Error::Failed { key: named, error } if named.is_empty() => {
                Error::Failed { key: describe(key), error }
            }
            other => other,
        }
    }
}

// By hand: a derive would ask `E: Clone`, which sharing the error behind an `Arc` avoids.
impl<E> Clone for Error<E> {
    fn clone(&self) -> Self {
        match self {
            Error::Failed { key, error } => {
                Error::Failed { key: key.clone(), error: std::sync::Arc::clone(error) }
            }
            Error::Panicked { key, message } => {
                Error::Panicked { key: key.clone(), message: message.clone() }
            }
            Error::Cycle { key, path } => Error::Cycle { key: key.clone(), path: path.clone() },
            Error::Unavailable { key, message } => {
                Error::Unavailable { key: key.clone(), message: message.clone() }
            }
            Error::Corrupt { key, message } => Error::Corrupt { key: key.clone(), message: message.clone() },
        }
    }
}

/// Drops values a cache evicted or replaced, once no lock is held. A panicking `Drop` is
/// logged, not passed on: it would fail an unrelated call (the one whose new value pushed
/// them out), whose value is cached all the same.
pub(crate) fn drop_evicted<T>(what: T) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(what))) {
        tracing::warn!(
            panic = %panic_message(&*payload),
            "speedup-cache: the Drop of an evicted value panicked (ignored)"
        );
    }
}

/// Turns a panic payload into its message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// `Debug` of a key, shortened so that a huge key does not flood an error message.
pub(crate) fn describe<K: fmt::Debug>(key: &K) -> String {
    let mut s = format!("{key:?}");
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

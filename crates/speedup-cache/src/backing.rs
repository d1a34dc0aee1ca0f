//! A second tier behind the in-memory cache: looked up before computing, written after.

use crate::error::BoxError;

/// Storage that a [`Cache`](crate::Cache) consults on a miss and writes computed values to,
/// so that a long computation can be resumed after a restart.
///
/// Failures are logged (through `tracing`) and otherwise ignored: the cache keeps working
/// from memory. With feature `persist`, `speedup_paged::DiskDict` (inside an `RwLock`)
/// implements it.
pub trait Backing<K, V>: Send + Sync {
    /// The stored value for `key`, if any.
    fn load(&self, key: &K) -> Option<V>;
    /// Stores a computed value.
    fn store(&self, key: &K, value: &V);
    /// Makes stored values durable.
    ///
    /// # Errors
    ///
    /// The tier's own error, boxed (a message converts with `.into()`); the caller of
    /// [`Cache::flush`](crate::Cache::flush) gets it as the source of a [`FlushError`](crate::FlushError).
    fn flush(&self) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A shared tier: the cache and its owner both hold it (to inspect it, flush it or give it
/// to a second cache).
impl<K, V, B: Backing<K, V> + ?Sized> Backing<K, V> for std::sync::Arc<B> {
    fn load(&self, key: &K) -> Option<V> {
        (**self).load(key)
    }
    fn store(&self, key: &K, value: &V) {
        (**self).store(key, value);
    }
    fn flush(&self) -> Result<(), BoxError> {
        (**self).flush()
    }
}

#[cfg(feature = "persist")]
mod disk {
    use std::hash::Hash;
    use std::sync::RwLock;

    use speedup_paged::{DiskDict, Storable};

    use super::{Backing, BoxError};

    /// Reads share the lock (DiskDict reads are `&self` and lock-free); writes take it.
    impl<K, V> Backing<K, V> for RwLock<DiskDict<K, V>>
    where
        K: Storable + Hash + Eq + Clone + Send + Sync,
        V: Storable + Clone + Send + Sync,
    {
        fn load(&self, key: &K) -> Option<V> {
            let dict = self.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            dict.get(key).unwrap_or_else(|error| {
                tracing::warn!(%error, path = %dict.path().display(), "speedup-cache: reading the disk tier failed; computing instead");
                None
            })
        }

        fn store(&self, key: &K, value: &V) {
            let mut dict = self.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(error) = dict.insert(key.clone(), value.clone()) {
                tracing::warn!(%error, path = %dict.path().display(), "speedup-cache: writing the disk tier failed; the value stays in memory only");
            }
        }

        /// The error is a `speedup_paged::Error` (downcast [`FlushError::source`](crate::FlushError)
        /// to match on it, e.g. `DiskFull`).
        fn flush(&self) -> Result<(), BoxError> {
            Ok(self.write().unwrap_or_else(std::sync::PoisonError::into_inner).flush()?)
        }
    }
}

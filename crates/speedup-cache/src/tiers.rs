//! The tiers behind a cache's memory, for both caches: the one owner of their order and of
//! what goes back where.
//!
//! On a miss, the backing store (a `DiskDict`) is asked first, then the shared tier
//! (Redis), which either has the value or hands this worker the right to compute it (a
//! lease). A value found in the backing store is used as it is; a value from the shared
//! tier is also kept in the backing store; a computed value is published through the lease
//! and kept in the backing store. `Cache` calls this on its own thread; `AsyncCache` on the
//! blocking pool when the shared tier may wait ([`Tiers::may_block`]).

use std::fmt;
use std::sync::Arc;

use crate::Backing;
use crate::error::{Error, FlushError, describe};
use crate::tier::{Acquired, Lease, SharedTier, TierError};

/// A cache's backing store and shared tier, either or both absent.
pub(crate) struct Tiers<K, V> {
    backing: Option<Box<dyn Backing<K, V>>>,
    shared: Option<Arc<dyn SharedTier<K, V>>>,
}

/// What the tiers answered for a missing key.
pub(crate) enum Lookup<V> {
    /// A stored value (already copied to the backing store if it came from the shared tier).
    Found(V),
    /// Nobody has it: compute it, then hand the value to [`Tiers::keep`] with this claim.
    Compute(Claim<V>),
}

/// The right to compute a key the tiers lack: the shared tier's lease, if there is one.
/// Dropping it without [`Tiers::keep`] (the computation failed or panicked) releases the
/// lease at once, so another worker may take over without waiting for its TTL.
pub(crate) struct Claim<V> {
    lease: Option<Box<dyn Lease<V>>>,
}

impl<K, V> Default for Tiers<K, V> {
    fn default() -> Self {
        Tiers { backing: None, shared: None }
    }
}

impl<K, V> fmt::Debug for Tiers<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tiers")
            .field("persistent", &self.backing.is_some())
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl<K: fmt::Debug, V> Tiers<K, V> {
    pub(crate) fn set_backing(&mut self, backing: Box<dyn Backing<K, V>>) {
        self.backing = Some(backing);
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set_shared(&mut self, shared: Arc<dyn SharedTier<K, V>>) {
        self.shared = Some(shared);
    }

    /// Whether a miss has anything to ask (otherwise it goes straight to the function).
    pub(crate) fn is_empty(&self) -> bool {
        self.backing.is_none() && self.shared.is_none()
    }

    /// Whether [`Tiers::lookup`] may wait for another worker (the shared tier waits while
    /// another worker holds the key's lease): an async caller runs it off the runtime.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn may_block(&self) -> bool {
        self.shared.is_some()
    }

    /// The key's stored value, or the claim to compute it.
    pub(crate) fn lookup(&self, key: &K) -> Result<Lookup<V>, TierError> {
        if let Some(backing) = &self.backing {
            let _span = tracing::debug_span!("speedup_cache::backing_load", key = ?key).entered();
            if let Some(value) = backing.load(key) {
                return Ok(Lookup::Found(value));
            }
        }
        let Some(shared) = &self.shared else { return Ok(Lookup::Compute(Claim { lease: None })) };
        let acquired = tracing::debug_span!("speedup_cache::redis_acquire", key = ?key)
            .in_scope(|| shared.acquire(key))?;
        Ok(match acquired {
            Acquired::Value(value) => {
                self.store_in_backing(key, &value);
                Lookup::Found(value)
            }
            Acquired::Lease(lease) => Lookup::Compute(Claim { lease: Some(lease) }),
            Acquired::Unshared => Lookup::Compute(Claim { lease: None }),
        })
    }

    /// Hands a computed value to the tiers that lacked it: published through the claim's
    /// lease (one bounded round trip), then kept in the backing store.
    pub(crate) fn keep(&self, key: &K, value: &V, claim: Claim<V>) {
        if let Some(lease) = claim.lease {
            let _span = tracing::debug_span!("speedup_cache::redis_publish", key = ?key).entered();
            lease.publish(value);
        }
        self.store_in_backing(key, value);
    }

    fn store_in_backing(&self, key: &K, value: &V) {
        if let Some(backing) = &self.backing {
            let _span = tracing::debug_span!("speedup_cache::backing_store", key = ?key).entered();
            backing.store(key, value);
        }
    }

    /// Makes the backing store's writes durable (a no-op without one).
    pub(crate) fn flush(&self) -> Result<(), FlushError> {
        self.backing.as_ref().map_or(Ok(()), |b| b.flush().map_err(FlushError::from))
    }

    /// What the Redis tier did so far, or `None` without one.
    #[cfg(feature = "redis")]
    pub(crate) fn redis_stats(&self) -> Option<crate::RedisStats> {
        self.shared.as_ref().map(|s| s.stats())
    }

    /// The Redis key for `key`, or `None` without a Redis tier.
    #[cfg(feature = "redis")]
    pub(crate) fn redis_key(&self, key: &K) -> Option<Vec<u8>> {
        self.shared.as_ref().map(|s| s.key_name(key))
    }
}

impl TierError {
    /// The caller's error for a tier that gave neither a value nor a lease for `key`.
    pub(crate) fn for_key<E>(self, key: &impl fmt::Debug) -> Error<E> {
        match self {
            TierError::Unavailable(message) => Error::Unavailable { key: describe(key), message },
            TierError::Corrupt(message) => Error::Corrupt { key: describe(key), message },
        }
    }
}

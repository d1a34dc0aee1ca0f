//! The shared tier between the local cache and the function: consulted after a local miss,
//! it either has the value, or hands this worker the right to compute it (a lease), after
//! waiting while another worker holds that right.
//!
//! The trait erases the tier's own bounds (rkyv, a Redis client), so the cache core stays
//! free of them; the only implementation lives in `shared` (feature `redis`).

/// What the shared tier answers for a key.
// Only the Redis tier constructs these; without it, the cache core still compiles its seam.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Acquired<V> {
    /// Another worker computed it (now or earlier).
    Value(V),
    /// This worker computes it; publish the value through the lease, or drop the lease to
    /// let another worker take over at once.
    Lease(Box<dyn Lease<V>>),
    /// The tier is unavailable and the cache fails open: compute locally, share nothing.
    Unshared,
}

/// Why the shared tier gave neither a value nor a lease.
#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum TierError {
    /// Unreachable or refusing commands, while failing closed.
    Unavailable(String),
    /// The stored value failed validation.
    Corrupt(String),
}

/// The right to compute one key, held while computing. Dropping it without publishing
/// releases it (the computation failed): another worker may take over immediately.
pub(crate) trait Lease<V>: Send {
    /// Stores the value in the tier, tells the waiting workers, and releases the lease.
    fn publish(self: Box<Self>, value: &V);
}

/// A tier shared by many caches, typically in many processes.
pub(crate) trait SharedTier<K, V>: Send + Sync {
    /// The stored value, or a lease to compute it, waiting while another worker holds one.
    fn acquire(&self, key: &K) -> Result<Acquired<V>, TierError>;

    /// Counters since the cache was built.
    #[cfg(feature = "redis")]
    fn stats(&self) -> crate::RedisStats;

    /// The tier's name for `key` (for inspection and repair).
    #[cfg(feature = "redis")]
    fn key_name(&self, key: &K) -> Vec<u8>;
}

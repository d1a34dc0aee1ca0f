//! What the Redis tier did: the counters behind [`RedisStats`], and the moving hit share
//! that picks the first command of a lookup.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a cache's Redis tier did since the cache was built
/// ([`Cache::redis_stats`](crate::Cache::redis_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Values read from Redis instead of computed (computed by another worker, or earlier).
    pub fetched: u64,
    /// Values computed here under a lease and written to Redis.
    pub computed: u64,
    /// Keys for which this cache waited on another worker's lease.
    pub waited: u64,
    /// Leases taken after waiting: the holder failed, or died and its lease expired.
    pub taken_over: u64,
    /// Keys computed without Redis because it was unavailable (fail open).
    pub unshared: u64,
    /// Redis failures: unreachable, refused commands, failed writes.
    pub errors: u64,
    /// Leases that expired while their key was computed (see
    /// [`RedisConfig::lease_ttl`](crate::RedisConfig::lease_ttl)).
    pub lost_leases: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) fetched: AtomicU64,
    pub(super) computed: AtomicU64,
    pub(super) waited: AtomicU64,
    pub(super) taken_over: AtomicU64,
    pub(super) unshared: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) lost_leases: AtomicU64,
}

/// Whether lookups lately found their value: a moving average of the share of hits, in
/// 1/1024ths, updated without synchronization (it only picks the cheaper first command).
#[derive(Debug, Default)]
pub(super) struct HitShare(pub(super) std::sync::atomic::AtomicU32);

impl HitShare {
    pub(super) fn likely(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 512
    }

    pub(super) fn record(&self, hit: bool) {
        let share = self.0.load(Ordering::Relaxed);
        self.0.store(share - share / 16 + if hit { 64 } else { 0 }, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hit_share_follows_recent_lookups() {
        let share = HitShare::default();
        assert!(!share.likely(), "a new cache starts with the lease script");
        let hits_to_switch = (1..).find(|_| {
            share.record(true);
            share.likely()
        });
        assert_eq!(hits_to_switch, Some(11));
        for _ in 0..100 {
            share.record(true);
        }
        assert!(share.0.load(Ordering::Relaxed) <= 1024, "bounded");
        let misses_to_switch = (1..).find(|_| {
            share.record(false);
            !share.likely()
        });
        assert_eq!(misses_to_switch, Some(11));
    }
}

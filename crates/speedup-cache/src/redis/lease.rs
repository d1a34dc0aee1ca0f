//! Leases: the right to compute one key in the whole cluster.
//!
//! A lease is a Redis key holding a random token, set with `NX PX ttl` (see
//! `scripts::GET_OR_LEASE`). While the computation runs, a refresher thread extends every
//! lease this cache holds, every third of the TTL, with a compare-and-expire script; a
//! worker that dies stops refreshing, its lease expires, and a waiting worker takes over.
//! Publishing the value releases the lease in the same script; dropping the guard without
//! publishing (the computation failed) releases it with compare-and-delete, so the next
//! worker need not wait for the TTL.

use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use speedup_paged::Storable;

use super::codec::{self, Names};
use super::{Core, scripts};
use crate::tier::Lease;

/// A lease this cache holds, as the refresher sees it.
#[derive(Debug)]
pub(super) struct Held {
    lease_key: Vec<u8>,
    token: String,
}

/// A held lease for a key of value type `V`.
pub(super) struct LeaseGuard<V> {
    core: Arc<Core>,
    id: u64,
    names: Names,
    token: String,
    published: bool,
    _value: PhantomData<fn(&V)>,
}

impl<V> LeaseGuard<V> {
    /// Registers a lease just taken in Redis with the refresher.
    pub(super) fn new(core: &Arc<Core>, names: Names, token: String) -> Self {
        let id = core.next_id.fetch_add(1, Ordering::Relaxed);
        core.held.lock().insert(id, Held { lease_key: names.lease.clone(), token: token.clone() });
        LeaseGuard { core: Arc::clone(core), id, names, token, published: false, _value: PhantomData }
    }
}

impl<V: Storable> Lease<V> for LeaseGuard<V> {
    fn publish(mut self: Box<Self>, value: &V) {
        self.core.stats.computed.fetch_add(1, Ordering::Relaxed);
        let framed = match codec::frame(value, self.core.ns.fingerprint, &self.names.value) {
            Ok(framed) => framed,
            Err(error) => {
                self.core.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "speedup-cache: cannot serialize a value for Redis; it stays local");
                return; // dropping the guard releases the lease
            }
        };
        self.published = true;
        // Not held any more: the refresher found the lease expired (and said so).
        let still_held = self.core.held.lock().remove(&self.id).is_some();
        let core = &self.core;
        let ttl_ms = core.settings.value_ttl.map_or(0, |t| t.as_millis().max(1) as u64);
        let result = core.redis.run(|conn| {
            scripts::PUBLISH
                .key(&self.names.value)
                .key(&self.names.lease)
                .key(&self.names.waiters)
                .arg(&self.token)
                .arg(&framed)
                .arg(ttl_ms)
                .arg(&core.ns.channel)
                .invoke::<i64>(conn)
        });
        match result {
            Ok(1) => {}
            Ok(_) if !still_held => {}
            Ok(_) => {
                core.stats.lost_leases.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    addr = %core.redis.addr,
                    lease_ttl_ms = core.settings.lease_ttl.as_millis() as u64,
                    "speedup-cache: a lease expired before its value was published (another worker may \
                     have computed the key too); raise RedisConfig::lease_ttl if refreshes are late"
                );
            }
            Err(failure) => {
                core.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    error = %failure,
                    "speedup-cache: writing a computed value to Redis failed; it is kept locally only"
                );
            }
        }
    }
}

impl<V> Drop for LeaseGuard<V> {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        self.core.held.lock().remove(&self.id);
        let core = &self.core;
        let released = core.redis.run(|conn| {
            scripts::RELEASE
                .key(&self.names.lease)
                .key(&self.names.waiters)
                .arg(&self.token)
                .arg(&core.ns.channel)
                .arg(&self.names.value)
                .invoke::<i64>(conn)
        });
        if let Err(failure) = released {
            core.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %failure, "speedup-cache: releasing a lease failed; it expires with its TTL");
        }
    }
}

/// Starts the thread that keeps this cache's leases alive; it ends once `core` is gone.
pub(super) fn spawn_refresher(core: &Arc<Core>) {
    let core = Arc::downgrade(core);
    let spawned =
        std::thread::Builder::new().name("speedup-cache-redis-lease".into()).spawn(move || refresh(&core));
    if let Err(error) = spawned {
        tracing::warn!(
            %error,
            "speedup-cache: cannot start the lease refresher; computations longer than the lease TTL may run twice"
        );
    }
}

fn refresh(weak: &Weak<Core>) {
    loop {
        let Some(core) = weak.upgrade() else { return };
        let interval = core.settings.lease_ttl / 3;
        let ttl_ms = core.settings.lease_ttl.as_millis() as u64;
        let held: Vec<(u64, Vec<u8>, String)> =
            core.held.lock().iter().map(|(id, h)| (*id, h.lease_key.clone(), h.token.clone())).collect();
        for (id, lease_key, token) in held {
            let result = core
                .redis
                .run(|conn| scripts::REFRESH.key(&lease_key).arg(&token).arg(ttl_ms).invoke::<i64>(conn));
            match result {
                Ok(1) => {}
                // Published or released meanwhile, or lost: only the last one is news.
                Ok(_) => {
                    if core.held.lock().remove(&id).is_some() {
                        core.stats.lost_leases.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "speedup-cache: a lease expired while its key was computed (another worker may \
                             compute it too); raise RedisConfig::lease_ttl"
                        );
                    }
                }
                Err(failure) => {
                    core.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %failure, "speedup-cache: refreshing a lease failed; retrying");
                }
            }
        }
        drop(core);
        // Sleep in short steps, so that the thread ends soon after its cache is dropped.
        let wake = std::time::Instant::now() + interval;
        while weak.strong_count() > 0 && std::time::Instant::now() < wake {
            std::thread::sleep(interval.min(STEP));
        }
    }
}

/// The longest the refresher sleeps without checking whether its cache is gone.
const STEP: std::time::Duration = std::time::Duration::from_millis(250);

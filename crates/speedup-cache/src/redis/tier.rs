//! The tier itself: one script per miss (value or lease), then validate, wait or compute.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use speedup_paged::Storable;

use super::codec::{self, Names, Namespace};
use super::config::{FailMode, RedisConfig, Settings};
use super::conn::{Failure, Redis};
use super::lease::{self, Held, LeaseGuard};
use super::stats::{Counters, HitShare, RedisStats};
use super::{scripts, watch};
use crate::announce::Watchers;
use crate::sync::Mutex;
use crate::tier::{Acquired, SharedTier, TierError};

/// Everything the tier's threads share; independent of the key and value types.
#[derive(Debug)]
pub(super) struct Core {
    pub(super) redis: Redis,
    pub(super) ns: Namespace,
    pub(super) settings: Settings,
    pub(super) watchers: Arc<Watchers>,
    /// Leases held by this cache, kept alive by the refresher.
    pub(super) held: Mutex<HashMap<u64, Held>>,
    pub(super) next_id: AtomicU64,
    /// Random per cache: lease tokens of two workers never collide.
    pub(super) token_base: String,
    pub(super) stats: Counters,
    /// Picks a plain `GET` before the lease script when most lookups find their value.
    pub(super) hits: HitShare,
}

/// The Redis tier of a `Cache<K, V>`.
pub(crate) struct RedisTier<K, V> {
    core: Arc<Core>,
    _types: PhantomData<fn(&K) -> V>,
}

impl<K: Storable, V: Storable + 'static> RedisTier<K, V> {
    pub(crate) fn start(config: RedisConfig) -> Self {
        let ns = Namespace::new::<K, V>(&config.name, config.version);
        let watchers = Arc::new(Watchers::default());
        watch::spawn_listener(
            config.client.clone(),
            ns.channel.clone(),
            &watchers,
            config.timeout,
            config.retry_after,
        );
        let random =
            std::hash::RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()));
        let core = Arc::new(Core {
            redis: Redis::new(config.client, config.addr, config.timeout, config.retry_after),
            ns,
            settings: config.settings,
            watchers,
            held: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            token_base: format!("{}-{random:016x}", std::process::id()),
            stats: Counters::default(),
            hits: HitShare::default(),
        });
        lease::spawn_refresher(&core);
        RedisTier { core, _types: PhantomData }
    }
}

impl<K, V: Storable> RedisTier<K, V> {
    /// A value read from Redis, once it checks out.
    fn fetched(&self, bytes: &[u8], names: &Names) -> Result<Acquired<V>, TierError> {
        let value = codec::unframe::<V>(bytes, self.core.ns.fingerprint, &names.value)
            .map_err(|e| TierError::Corrupt(format!("{e} (Redis key \"{}\")", names.value.escape_ascii())))?;
        self.core.stats.fetched.fetch_add(1, Ordering::Relaxed);
        Ok(Acquired::Value(value))
    }
}

/// What `GET_OR_LEASE` answered.
enum Reply {
    Value(Vec<u8>),
    Leased,
    Busy {
        pttl_ms: i64,
    },
    /// The lease key never expires: not a lease of ours, and waiting would never end.
    Unexpiring,
}

fn parse_reply(reply: redis::Value) -> Result<Reply, String> {
    use redis::Value;
    match reply {
        Value::Array(items) => match items.as_slice() {
            [Value::Int(1), Value::BulkString(bytes)] => Ok(Reply::Value(bytes.clone())),
            [Value::Int(2)] => Ok(Reply::Leased),
            [Value::Int(3)] => Ok(Reply::Unexpiring),
            [Value::Int(0), Value::Int(pttl_ms)] => Ok(Reply::Busy { pttl_ms: *pttl_ms }),
            other => Err(format!("unexpected reply to the lease script: {other:?}")),
        },
        other => Err(format!("unexpected reply to the lease script: {other:?}")),
    }
}

impl<K: Storable, V: Storable + 'static> SharedTier<K, V> for RedisTier<K, V> {
    fn acquire(&self, key: &K) -> Result<Acquired<V>, TierError> {
        let core = &self.core;
        let key_bytes = codec::archive(key)
            .map_err(|e| TierError::Corrupt(format!("cannot serialize the key for Redis: {e}")))?;
        let names = core.ns.names(&key_bytes);
        let wrong_type = |e: redis::RedisError| {
            let wrong = core.wrong_typed(&names).unwrap_or_else(|| names.value.clone());
            TierError::Corrupt(format!(
                "Redis key \"{}\" holds another Redis type than speedup-cache writes there ({e}); delete that key",
                wrong.escape_ascii()
            ))
        };
        // Mostly hits lately: a plain GET answers them without running a script.
        if core.hits.likely() {
            match core.redis.run(|conn| redis::cmd("GET").arg(&names.value).query::<Option<Vec<u8>>>(conn)) {
                Ok(Some(bytes)) => {
                    core.hits.record(true);
                    return self.fetched(&bytes, &names);
                }
                Ok(None) => {}
                Err(Failure::WrongType(e)) => return Err(wrong_type(e)),
                Err(failure) => return core.unavailable(&failure.to_string()),
            }
        }
        let token = format!("{}-{}", core.token_base, core.next_id.fetch_add(1, Ordering::Relaxed));
        let ttl_ms = core.settings.lease_ttl.as_millis() as u64;
        // The marker outlives the waiter's next look (at most a poll or the lease's TTL away).
        let marker_ms = (core.settings.lease_ttl + core.settings.poll).as_millis() as u64;
        let watch = core.watchers.watch(&names.value);
        let mut waited = false;
        loop {
            watch.reset();
            let reply = core.redis.run(|conn| {
                scripts::GET_OR_LEASE
                    .key(&names.value)
                    .key(&names.lease)
                    .key(&names.waiters)
                    .arg(&token)
                    .arg(ttl_ms)
                    .arg(marker_ms)
                    .invoke::<redis::Value>(conn)
            });
            let reply = match reply {
                Ok(reply) => parse_reply(reply),
                Err(Failure::WrongType(e)) => return Err(wrong_type(e)),
                Err(failure) => return core.unavailable(&failure.to_string()),
            };
            match reply {
                Ok(Reply::Value(bytes)) => {
                    core.hits.record(!waited);
                    return self.fetched(&bytes, &names);
                }
                Ok(Reply::Leased) => {
                    core.hits.record(false);
                    if waited {
                        core.stats.taken_over.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(Acquired::Lease(Box::new(LeaseGuard::<V>::new(core, names, token))));
                }
                Ok(Reply::Unexpiring) => {
                    return Err(TierError::Corrupt(format!(
                        "Redis key \"{}\" holds a lease that never expires, which speedup-cache never writes (its \
                         leases expire, so that a dead worker's key is taken over); waiting for it would never \
                         end. Delete that key",
                        names.lease.escape_ascii()
                    )));
                }
                Ok(Reply::Busy { pttl_ms }) => {
                    if !waited {
                        waited = true;
                        core.stats.waited.fetch_add(1, Ordering::Relaxed);
                    }
                    // Wake at the latest when the lease could have expired.
                    let until_expiry = Duration::from_millis(pttl_ms.max(0) as u64 + 1);
                    watch.wait(core.settings.poll.min(until_expiry));
                }
                Err(message) => return core.unavailable(&message),
            }
        }
    }

    fn stats(&self) -> RedisStats {
        let s = &self.core.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RedisStats {
            fetched: get(&s.fetched),
            computed: get(&s.computed),
            waited: get(&s.waited),
            taken_over: get(&s.taken_over),
            unshared: get(&s.unshared),
            errors: get(&s.errors),
            lost_leases: get(&s.lost_leases),
        }
    }

    fn key_name(&self, key: &K) -> Vec<u8> {
        // A key that cannot be archived has no name; `acquire` reports it as an error.
        codec::archive(key).map(|bytes| self.core.ns.value_key(&bytes)).unwrap_or_default()
    }
}

impl Core {
    /// Which of a key's Redis keys holds another Redis type than a string (after a
    /// `WRONGTYPE` reply), so that the error names the key to delete.
    fn wrong_typed(&self, names: &Names) -> Option<Vec<u8>> {
        [&names.value, &names.lease, &names.waiters].into_iter().find_map(|name| {
            let kind = self.redis.run(|conn| redis::cmd("TYPE").arg(name).query::<String>(conn)).ok()?;
            (kind != "string" && kind != "none").then(|| name.clone())
        })
    }

    /// Redis failed: compute locally (fail open) or refuse (fail closed).
    fn unavailable<V>(&self, message: &str) -> Result<Acquired<V>, TierError> {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        match self.settings.fail {
            FailMode::Open => {
                self.stats.unshared.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(message, "speedup-cache: computing without the Redis tier");
                Ok(Acquired::Unshared)
            }
            FailMode::Closed => Err(TierError::Unavailable(message.to_string())),
        }
    }
}

//! The Redis tier (feature `redis`): a cluster of workers computes each key once.
//!
//! After a local miss, a cache asks Redis, in one script, for the key's value or else for a
//! lease on it (`SET <lease key> <token> NX PX <ttl>`); while most lookups find their value,
//! a plain `GET` goes first and the script only runs on a miss:
//!
//! - the value is there: validate it (`codec`) and use it;
//! - the lease is ours: compute, then store the value, release the lease and announce the
//!   key on the cache's channel if a worker marked it as waited for, again in one script
//!   (`lease`);
//! - another worker holds the lease: wait for the announcement (`watch`), at most one poll
//!   interval or the lease's remaining TTL, then ask again. A worker that died leaves a
//!   lease that expires; the next ask takes it over.
//!
//! When Redis cannot be reached, the cache fails open (computes locally, shares nothing,
//! logs through `tracing`) or, if so configured, fails closed with [`Error::Unavailable`].
//!
//! [`Error::Unavailable`]: crate::Error::Unavailable

mod codec;
mod conn;
mod lease;
mod scripts;
mod watch;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use speedup_paged::Storable;

use self::codec::{Names, Namespace};
use self::conn::{Failure, Redis};
use self::lease::{Held, LeaseGuard};
use crate::announce::Watchers;
use crate::cache::CacheBuilder;
use crate::tier::{Acquired, SharedTier, TierError};

/// What a cache does when Redis cannot be reached or refuses a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Keep working from the local cache and the function, sharing nothing until Redis is
    /// back; log the outage (default).
    #[default]
    Open,
    /// Compute nothing without Redis: `try_get` returns
    /// [`Error::Unavailable`](crate::Error::Unavailable) (and `get` panics with it). For
    /// computations so expensive that running one twice in the cluster is worse than waiting.
    Closed,
}

/// Why a [`RedisConfig`] could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisConfigError {
    /// The URL does not parse as a Redis connection URL.
    #[error("invalid Redis URL{shown}: {reason} (expected e.g. redis://127.0.0.1:6379/0)")]
    Url {
        /// The URL, or nothing if it holds credentials (they are not repeated in messages).
        shown: String,
        /// What the parser said.
        reason: String,
    },
    /// The cache name is empty, too long, or has characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid cache name {name:?}: use 1 to 100 ASCII letters, digits, '_', '-' or '.'")]
    Name {
        /// The name given.
        name: String,
    },
}

/// How a [`Cache`](crate::Cache) shares its values through Redis (feature `redis`); pass
/// it to [`CacheBuilder::redis`].
///
/// Every Redis key the cache uses starts with `speedup:<name>:<fingerprint>:`, where the
/// fingerprint covers the key and value types and [`version`](RedisConfig::version): two
/// programs, or two versions of one, never read each other's values. Bump the version when
/// the function changes meaning.
///
/// ```
/// use std::time::Duration;
/// use speedup_cache::{FailMode, RedisConfig};
///
/// let config = RedisConfig::new("redis://127.0.0.1:6379/0", "factor")?
///     .version(2)
///     .lease_ttl(Duration::from_secs(30))
///     .value_ttl(Duration::from_secs(24 * 3600))
///     .fail_mode(FailMode::Open);
/// assert!(RedisConfig::new("not a url", "factor").is_err());
/// assert!(RedisConfig::new("redis://127.0.0.1/", "has space").is_err());
/// # Ok::<(), speedup_cache::RedisConfigError>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    client: redis::Client,
    addr: String,
    name: String,
    version: u64,
    settings: Settings,
    timeout: Duration,
    retry_after: Duration,
}

/// Shows where and what, never the credentials inside the client.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("addr", &self.addr)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("settings", &self.settings)
            .field("timeout", &self.timeout)
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    lease_ttl: Duration,
    value_ttl: Option<Duration>,
    poll: Duration,
    fail: FailMode,
}

impl RedisConfig {
    /// A configuration for the Redis server at `url` (`redis://[:password@]host:port/db`,
    /// or `redis+unix:///path`) and the cache called `name`. Nothing connects yet: a cache
    /// built while Redis is down starts working locally and uses Redis once it answers.
    ///
    /// Defaults: version 0, lease TTL 10 s, no value TTL, poll fallback 1 s, connect and
    /// command timeout 2 s, retry 1 s after an outage, [`FailMode::Open`].
    ///
    /// # Errors
    ///
    /// [`RedisConfigError::Url`] for a URL that does not parse, [`RedisConfigError::Name`]
    /// for an empty or unusual name.
    pub fn new(url: &str, name: &str) -> Result<Self, RedisConfigError> {
        let valid_name = (1..=100).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !valid_name {
            return Err(RedisConfigError::Name { name: name.to_string() });
        }
        let client = redis::Client::open(url).map_err(|e| RedisConfigError::Url {
            shown: if url.contains('@') { String::new() } else { format!(" {url:?}") },
            reason: e.to_string(),
        })?;
        let addr = client.get_connection_info().addr().to_string();
        Ok(RedisConfig {
            client,
            addr,
            name: name.to_string(),
            version: 0,
            settings: Settings {
                lease_ttl: Duration::from_secs(10),
                value_ttl: None,
                poll: Duration::from_secs(1),
                fail: FailMode::Open,
            },
            timeout: Duration::from_secs(2),
            retry_after: Duration::from_secs(1),
        })
    }

    /// Part of the namespace: caches with different versions share nothing.
    pub fn version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// How long a lease outlives its last refresh (at least 30 ms). Leases are refreshed
    /// every third of it while the key is computed, so it bounds how long others wait for a
    /// worker that died, not how long a computation may take.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.settings.lease_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// Lets Redis drop values this long after they are written (default: kept).
    pub fn value_ttl(mut self, ttl: Duration) -> Self {
        self.settings.value_ttl = Some(ttl.max(Duration::from_millis(1)));
        self
    }

    /// The longest a waiting worker sleeps between two looks at Redis when no announcement
    /// wakes it (at least 1 ms). Announcements normally wake it at once; this bounds the
    /// cost of a missed one.
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.settings.poll = poll.max(Duration::from_millis(1));
        self
    }

    /// How long one call to Redis may take before Redis counts as unreachable: connecting
    /// (or reconnecting, when a pooled connection turns out broken), sending, and waiting
    /// for the reply, all together. A `get` makes one such call to look the key up and,
    /// after computing it, one to publish it; waiting for another worker's lease is not a
    /// call (it is bounded by the lease's expiry). While Redis is found down, calls fail
    /// at once until [`RedisConfig::retry_after`] has passed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long to stop trying Redis after it was found unreachable.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// What to do when Redis is unreachable (default [`FailMode::Open`]).
    pub fn fail_mode(mut self, fail: FailMode) -> Self {
        self.settings.fail = fail;
        self
    }
}

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
    /// [`RedisConfig::lease_ttl`]).
    pub lost_leases: u64,
}

#[derive(Debug, Default)]
struct Counters {
    fetched: AtomicU64,
    computed: AtomicU64,
    waited: AtomicU64,
    taken_over: AtomicU64,
    unshared: AtomicU64,
    errors: AtomicU64,
    lost_leases: AtomicU64,
}

/// Everything the tier's threads share; independent of the key and value types.
#[derive(Debug)]
struct Core {
    redis: Redis,
    ns: Namespace,
    settings: Settings,
    watchers: Arc<Watchers>,
    /// Leases held by this cache, kept alive by the refresher.
    held: Mutex<HashMap<u64, Held>>,
    next_id: AtomicU64,
    /// Random per cache: lease tokens of two workers never collide.
    token_base: String,
    stats: Counters,
    /// Picks a plain `GET` before the lease script when most lookups find their value.
    hits: HitShare,
}

/// The Redis tier of a `Cache<K, V>`.
struct RedisTier<K, V> {
    core: Arc<Core>,
    _types: PhantomData<fn(&K) -> V>,
}

impl<K: Storable, V: Storable + 'static> RedisTier<K, V> {
    fn start(config: RedisConfig) -> Self {
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

/// Whether lookups lately found their value: a moving average of the share of hits, in
/// 1/1024ths, updated without synchronization (it only picks the cheaper first command).
#[derive(Debug, Default)]
struct HitShare(std::sync::atomic::AtomicU32);

impl HitShare {
    fn likely(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 512
    }

    fn record(&self, hit: bool) {
        let share = self.0.load(Ordering::Relaxed);
        self.0.store(share - share / 16 + if hit { 64 } else { 0 }, Ordering::Relaxed);
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

impl<K, V> CacheBuilder<K, V>
where
    K: Storable + Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: Storable + Clone + Send + Sync + 'static,
{
    /// Shares values with every cache using the same Redis, name, types and version
    /// (feature `redis`): a local miss looks in Redis before computing, a computed value
    /// is written there, and a cluster-wide lease makes each key computed once in the whole
    /// cluster. See [`RedisConfig`] for the options and [`FailMode`] for outages.
    ///
    /// Keys and values are stored as rkyv archives; values are checked on every read, and
    /// a value that does not check out is an [`Error::Corrupt`](crate::Error::Corrupt).
    /// Equal keys must archive to equal bytes (true of every type without a hash map
    /// inside).
    ///
    /// With a [`backing`](CacheBuilder::backing) tier too, the order is: memory, backing,
    /// Redis, the function; a value found in the backing tier is used as it is (not copied
    /// to Redis), a value from Redis is also stored in the backing tier.
    ///
    /// Starts two threads: one listens for values announced by other workers, one keeps
    /// this cache's leases alive. Both end soon after the cache is dropped.
    ///
    /// ```no_run
    /// use speedup_cache::{Cache, RedisConfig};
    ///
    /// let config = RedisConfig::new("redis://127.0.0.1:6379/", "squares")?;
    /// let squares = Cache::builder().redis(config).build(|_: &Cache<u64, u64>, n: u64| n * n);
    /// assert_eq!(squares.get(12), 144); // computed once in the cluster, then shared
    /// println!("{:?}", squares.redis_stats());
    /// # Ok::<(), speedup_cache::RedisConfigError>(())
    /// ```
    pub fn redis(self, config: RedisConfig) -> Self {
        self.shared_tier(Box::new(RedisTier::<K, V>::start(config)))
    }
}

#[cfg(feature = "tokio")]
impl<K, V> crate::AsyncCache<K, V>
where
    K: Storable + Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: Storable + Clone + Send + Sync + 'static,
{
    /// An async cache of `f` that shares its values through Redis (features `tokio` and
    /// `redis`), with the same protocol as [`CacheBuilder::redis`]: each key is computed
    /// once in the cluster. Waiting for another worker happens on tokio's blocking pool;
    /// publishing a value is one round trip on the task that computed it.
    ///
    /// An unavailable tier (fail closed) or a corrupt value makes `get` panic with the
    /// message of [`Error::Unavailable`](crate::Error::Unavailable) or
    /// [`Error::Corrupt`](crate::Error::Corrupt).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use speedup_cache::{AsyncCache, RedisConfig};
    ///
    /// let config = RedisConfig::new("redis://127.0.0.1:6379/", "double").unwrap();
    /// let double = AsyncCache::with_redis(config, |_: AsyncCache<u64, u64>, n: u64| async move { 2 * n });
    /// assert_eq!(double.get(21).await, 42);
    /// # }
    /// ```
    pub fn with_redis<F, Fut>(config: RedisConfig, f: F) -> Self
    where
        F: Fn(crate::AsyncCache<K, V>, K) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = V> + Send + 'static,
    {
        Self::with_tier(f, Some(Arc::new(RedisTier::<K, V>::start(config))))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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

    #[test]
    fn bad_configs_are_typed_errors_that_keep_secrets() {
        let tls = RedisConfig::new("rediss://127.0.0.1:6379/", "n").unwrap_err();
        assert!(tls.to_string().contains("TLS"), "{tls}");
        let secret = RedisConfig::new("redis://:hunter2@127.0.0.1:6379/?protocol=nope", "n").unwrap_err();
        assert!(matches!(&secret, RedisConfigError::Url { shown, .. } if shown.is_empty()));
        assert!(!secret.to_string().contains("hunter2"), "{secret}");
        for name in ["", "a b", "a:b", "ü", &"x".repeat(101)] {
            assert_eq!(
                RedisConfig::new("redis://127.0.0.1/", name).unwrap_err(),
                RedisConfigError::Name { name: name.to_string() }
            );
        }
        let ok = RedisConfig::new("redis://:pw@127.0.0.1:6380/", "a-b_c.1").unwrap();
        assert_eq!(ok.addr, "127.0.0.1:6380");
        let shown = format!("{ok:?}");
        assert!(shown.contains("127.0.0.1:6380") && !shown.contains("pw"), "{shown}");
    }
}

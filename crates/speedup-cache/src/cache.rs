//! [`Cache`]: the sharded map of ready values and in-flight computations.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::Ordering;

use crate::error::{Error, describe, panic_message};
use crate::flight::{Claim, Flight};
use crate::sync::{Arc, AtomicUsize, RwLock, thread_id};
use crate::tier::{Acquired, SharedTier, TierError};
use crate::waits::Waits;

/// Stack left before a computation grows the stack (and the size of each new segment).
#[cfg(not(speedup_loom))]
const RED_ZONE: usize = 256 * 1024;
#[cfg(not(speedup_loom))]
const STACK_SEGMENT: usize = 8 * 1024 * 1024;

type Func<K, V, E> = dyn Fn(&Cache<K, V, E>, K) -> Result<V, Error<E>> + Send + Sync;

/// A concurrent memoizing cache of a function `K -> V`, whose recursive sub-calls can run in
/// parallel on a bounded pool.
///
/// The function receives the cache itself, so recursive calls are memoized too. Each key's
/// function body runs at most once while its value is cached, however many threads ask at
/// once; no lock is held while it runs. A thread waiting for a key that is queued but not
/// started runs it itself, a key that depends on itself is reported instead of hanging, and
/// a panic (or an error) is not cached: the next `get` computes again.
///
/// # Examples
///
/// The seed's parallel Fibonacci, with `batch_async` scheduling both sub-calls only when
/// both are missing:
///
/// ```
/// use num_bigint::BigUint;
/// use speedup_cache::Cache;
///
/// let fib = Cache::new(|fib: &Cache<u64, BigUint>, n: u64| -> BigUint {
///     if n < 2 {
///         return BigUint::from(1u32);
///     }
///     fib.batch_async([n - 1, n - 2]);
///     fib.get(n - 1) + fib.get(n - 2)
/// });
/// assert_eq!(fib.get(5).to_string(), "8");
/// assert_eq!(fib.get(100).to_string(), "573147844013817084101");
/// assert_eq!(fib.get(200).to_string(), "453973694165307953197296969697410619233826");
/// fib.apply_async(300); // starts in the background, returns at once
/// ```
///
/// `Cache` is a handle: clones share the same values (`Arc` inside).
pub struct Cache<K, V, E = Infallible> {
    inner: Arc<Inner<K, V, E>>,
}

struct Inner<K, V, E> {
    shards: Box<[RwLock<Shard<K, V, E>>]>,
    hasher: ahash::RandomState,
    func: Box<Func<K, V, E>>,
    waits: Waits<V, E>,
    /// Ready values in the whole cache.
    len: AtomicUsize,
    /// Ready values allowed per shard (`usize::MAX`: unbounded).
    shard_capacity: usize,
    #[cfg(not(speedup_loom))]
    pool: Option<rayon::ThreadPool>,
    backing: Option<Box<dyn crate::Backing<K, V>>>,
    /// The tier shared with other workers (Redis), consulted after `backing`.
    shared: Option<Box<dyn SharedTier<K, V>>>,
}

struct Shard<K, V, E> {
    /// Keyed by the hash computed once per call (it also picks the shard).
    slots: hashbrown::HashTable<(K, Slot<V, E>)>,
    /// Ready keys in insertion order, for second-chance eviction (only with a capacity).
    clock: VecDeque<K>,
}

enum Slot<V, E> {
    Ready { value: V, referenced: std::sync::atomic::AtomicBool },
    Pending(Arc<Flight<V, E>>),
}

impl<K: Eq, V, E> Shard<K, V, E> {
    fn get(&self, hash: u64, key: &K) -> Option<&Slot<V, E>> {
        self.slots.find(hash, |(k, _)| k == key).map(|(_, slot)| slot)
    }

    fn insert(&mut self, hash: u64, key: K, slot: Slot<V, E>, hasher: &ahash::RandomState)
    where
        K: Hash,
    {
        match self.slots.find_mut(hash, |(k, _)| *k == key) {
            Some(entry) => entry.1 = slot,
            None => {
                self.slots.insert_unique(hash, (key, slot), |(k, _)| hasher.hash_one(k));
            }
        }
    }

    fn remove(&mut self, hash: u64, key: &K) {
        if let Ok(entry) = self.slots.find_entry(hash, |(k, _)| k == key) {
            entry.remove();
        }
    }
}

impl<K, V, E> Clone for Cache<K, V, E> {
    fn clone(&self) -> Self {
        Cache { inner: Arc::clone(&self.inner) }
    }
}

impl<K, V, E> fmt::Debug for Cache<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache").field("len", &self.inner.len.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

/// Options for a [`Cache`]: pool size, capacity, persistence.
///
/// ```
/// use speedup_cache::Cache;
/// let squares = Cache::builder().threads(2).capacity(10_000).build(|_: &Cache<u64, u64>, n| n * n);
/// assert_eq!(squares.get(12), 144);
/// ```
pub struct CacheBuilder<K, V> {
    threads: Option<usize>,
    capacity: Option<usize>,
    backing: Option<Box<dyn crate::Backing<K, V>>>,
    shared: Option<Box<dyn SharedTier<K, V>>>,
}

impl<K, V> fmt::Debug for CacheBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("threads", &self.threads)
            .field("capacity", &self.capacity)
            .field("persistent", &self.backing.is_some())
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl<K, V> Default for CacheBuilder<K, V> {
    fn default() -> Self {
        CacheBuilder { threads: None, capacity: None, backing: None, shared: None }
    }
}

impl<K, V> CacheBuilder<K, V>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Runs `apply_async` / `batch_async` work on a pool of its own with `n` threads
    /// (default: rayon's global pool, one thread per core).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n.max(1));
        self
    }

    /// Keeps at most about `n` values, evicting the least recently used first (second
    /// chance). Keys being computed are never evicted. Default: unbounded.
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = Some(n.max(1));
        self
    }

    /// Looks values up in (and writes computed values to) a second tier, for example a
    /// [`speedup_paged::DiskDict`] (feature `persist`), so results survive restarts.
    pub fn backing(mut self, backing: impl crate::Backing<K, V> + 'static) -> Self {
        self.backing = Some(Box::new(backing));
        self
    }

    /// Sets the tier shared with other workers (see `CacheBuilder::redis`).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn shared_tier(mut self, tier: Box<dyn SharedTier<K, V>>) -> Self {
        self.shared = Some(tier);
        self
    }

    /// Builds an infallible cache of `f`.
    pub fn build(self, f: impl Fn(&Cache<K, V>, K) -> V + Send + Sync + 'static) -> Cache<K, V> {
        self.build_with(Box::new(move |c: &Cache<K, V>, k| Ok(f(c, k))))
    }

    /// Builds a fallible cache of `f` (see [`Cache::try_new`]).
    pub fn try_build<E>(
        self,
        f: impl Fn(&Cache<K, V, E>, K) -> Result<V, Error<E>> + Send + Sync + 'static,
    ) -> Cache<K, V, E>
    where
        E: Clone + Send + Sync + 'static,
    {
        self.build_with(Box::new(f))
    }

    fn build_with<E: Clone + Send + Sync + 'static>(self, func: Box<Func<K, V, E>>) -> Cache<K, V, E> {
        // Many more shards than cores: two threads rarely touch the same lock.
        let shards = (crate::cores() * 64).next_power_of_two().max(64);
        let shard_capacity = self.capacity.map_or(usize::MAX, |c| c.div_ceil(shards));
        let hasher = ahash::RandomState::new();
        #[cfg(not(speedup_loom))]
        let pool = self.threads.map(|n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(|i| format!("speedup-cache-{i}"))
                .build()
                .unwrap_or_else(|e| panic!("cannot start the cache's {n} worker threads: {e}"))
        });
        Cache {
            inner: Arc::new(Inner {
                shards: (0..shards)
                    .map(|_| {
                        RwLock::new(Shard { slots: hashbrown::HashTable::new(), clock: VecDeque::new() })
                    })
                    .collect(),
                hasher,
                func,
                waits: Waits::default(),
                len: AtomicUsize::new(0),
                shard_capacity,
                #[cfg(not(speedup_loom))]
                pool,
                backing: self.backing,
                shared: self.shared,
            }),
        }
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of `f` with default options (see [`Cache::builder`]).
    pub fn new(f: impl Fn(&Cache<K, V>, K) -> V + Send + Sync + 'static) -> Self {
        CacheBuilder::default().build(f)
    }

    /// Options: pool size, capacity, persistence.
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder::default()
    }

    /// The value for `key`: the cached one, or computed now (in this thread, unless another
    /// thread is computing it already, in which case this one waits for it).
    ///
    /// # Panics
    ///
    /// If the function panicked for this key (here or in the thread that computed it), with
    /// the same message; if the key depends on itself (a cycle), naming the key.
    pub fn get(&self, key: K) -> V {
        match self.resolve(key) {
            Ok(v) => v,
            Err(Failure { payload: Some(payload), .. }) => resume_unwind(payload),
            Err(Failure { error, .. }) => panic!("{error}"),
        }
    }
}

impl<K, V, E> Cache<K, V, E>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// A fallible cache: `f` returns `Result<V, Error<E>>` (wrap your own errors as
    /// [`Error::Failed`]), and [`Cache::try_get`] inside it propagates with `?`. Errors are
    /// not cached.
    ///
    /// ```
    /// use speedup_cache::{Cache, Error};
    /// let parse = Cache::try_new(|_: &Cache<String, i64, String>, s: String| {
    ///     s.parse::<i64>().map_err(|e| Error::Failed { key: s.clone(), error: e.to_string() })
    /// });
    /// assert_eq!(parse.try_get("42".to_string()), Ok(42));
    /// assert!(matches!(parse.try_get("x".to_string()), Err(Error::Failed { .. })));
    /// assert!(!parse.contains_key(&"x".to_string())); // not cached
    /// ```
    pub fn try_new(f: impl Fn(&Cache<K, V, E>, K) -> Result<V, Error<E>> + Send + Sync + 'static) -> Self {
        CacheBuilder::default().try_build(f)
    }

    /// The value for `key`, or why there is none: the function's error, a panic (caught),
    /// or a cycle. Nothing of that is cached.
    ///
    /// # Errors
    ///
    /// [`Error::Failed`], [`Error::Panicked`], [`Error::Cycle`].
    pub fn try_get(&self, key: K) -> Result<V, Error<E>> {
        self.resolve(key).map_err(|f| f.error)
    }

    /// Whether a value for `key` is cached (not counting computations in flight).
    pub fn contains_key(&self, key: &K) -> bool {
        let hash = self.hash(key);
        matches!(self.read_shard(hash).get(hash, key), Some(Slot::Ready { .. }))
    }

    /// The number of cached values.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// Whether no value is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts computing `key` on the pool and returns at once. Does nothing if the key is
    /// cached, queued or being computed.
    pub fn apply_async(&self, key: K) {
        let hash = self.hash(&key);
        let flight = {
            let mut shard = self.write_shard(hash);
            if shard.get(hash, &key).is_some() {
                return;
            }
            let flight = Arc::new(Flight::queued());
            shard.insert(hash, key.clone(), Slot::Pending(Arc::clone(&flight)), &self.inner.hasher);
            flight
        };
        let cache = self.clone();
        self.spawn(move || {
            if let Claim::Run = flight.claim(thread_id()) {
                // Nobody asked for the outcome yet: waiters get it from the flight, and a
                // panic must not unwind into the pool (rayon would abort the process).
                let _ = cache.run(key, &flight);
            }
        });
    }

    /// Schedules the keys that are neither cached nor in flight, but only when two or more
    /// are missing: a single missing key is computed inline by the `get` that follows, which
    /// is cheaper than a round trip through the pool (the seed's "avoid unnecessary
    /// branching").
    pub fn batch_async(&self, keys: impl IntoIterator<Item = K>) {
        let missing: Vec<K> = keys
            .into_iter()
            .filter(|k| {
                let hash = self.hash(k);
                self.read_shard(hash).get(hash, k).is_none()
            })
            .collect();
        if missing.len() >= 2 {
            for key in missing {
                self.apply_async(key);
            }
        }
    }

    /// Writes the backing tier's pending writes to disk (a no-op without one).
    ///
    /// # Errors
    ///
    /// The backing's error, as a message.
    pub fn flush(&self) -> Result<(), String> {
        self.inner.backing.as_ref().map_or(Ok(()), |b| b.flush())
    }

    /// What the Redis tier did so far, or `None` without one (feature `redis`).
    #[cfg(feature = "redis")]
    pub fn redis_stats(&self) -> Option<crate::RedisStats> {
        self.inner.shared.as_ref().map(|s| s.stats())
    }

    /// The Redis key that holds (or will hold) the value for `key`, or `None` without a
    /// Redis tier (feature `redis`). Deleting that key makes the cluster compute it again.
    #[cfg(feature = "redis")]
    pub fn redis_key(&self, key: &K) -> Option<Vec<u8>> {
        self.inner.shared.as_ref().map(|s| s.key_name(key))
    }

    fn resolve(&self, key: K) -> Result<V, Failure<E>> {
        let me = thread_id();
        let hash = self.hash(&key);
        // Hit path: one hash, one shared lock, one lookup, one clone.
        let flight = {
            let shard = self.read_shard(hash);
            match shard.get(hash, &key) {
                Some(Slot::Ready { value, referenced }) => {
                    if self.inner.shard_capacity != usize::MAX && !referenced.load(Ordering::Relaxed) {
                        referenced.store(true, Ordering::Relaxed);
                    }
                    return Ok(value.clone());
                }
                Some(Slot::Pending(flight)) => Some(Arc::clone(flight)),
                None => None,
            }
        };
        let flight = match flight {
            Some(flight) => flight,
            None => {
                let mut shard = self.write_shard(hash);
                match shard.get(hash, &key) {
                    Some(Slot::Ready { value, .. }) => return Ok(value.clone()),
                    Some(Slot::Pending(flight)) => Arc::clone(flight),
                    None => {
                        let flight = Arc::new(Flight::running(me));
                        shard.insert(
                            hash,
                            key.clone(),
                            Slot::Pending(Arc::clone(&flight)),
                            &self.inner.hasher,
                        );
                        drop(shard);
                        return self.run(key, &flight);
                    }
                }
            }
        };
        match flight.claim(me) {
            Claim::Run => self.run(key, &flight),
            Claim::Finished(outcome) => outcome.map_err(Failure::from),
            Claim::Wait { owner } if owner == me => {
                let key_text = describe(&key);
                Err(self.cycle(&key, format!("{key_text} -> … -> {key_text}, on one thread")))
            }
            Claim::Wait { owner } => {
                if let Err(path) = self.inner.waits.enter(me, owner, &flight, describe(&key)) {
                    return Err(self.cycle(&key, path));
                }
                let outcome = flight.wait();
                self.inner.waits.leave(me);
                outcome.map_err(Failure::from)
            }
        }
    }

    fn cycle(&self, key: &K, path: String) -> Failure<E> {
        Failure::from(Error::Cycle { key: describe(key), path })
    }

    /// Computes `key`, which this thread owns, publishes the outcome and wakes the waiters.
    fn run(&self, key: K, flight: &Arc<Flight<V, E>>) -> Result<V, Failure<E>> {
        let stored = self.inner.backing.as_ref().and_then(|b| b.load(&key));
        let from_backing = stored.is_some();
        let mut lease = None;
        let stored = match (stored, &self.inner.shared) {
            (None, Some(shared)) => match shared.acquire(&key) {
                Ok(Acquired::Value(v)) => Some(v),
                Ok(Acquired::Lease(l)) => {
                    lease = Some(l);
                    None
                }
                Ok(Acquired::Unshared) => None,
                Err(error) => {
                    let error = match error {
                        TierError::Unavailable(message) => {
                            Error::Unavailable { key: describe(&key), message }
                        }
                        TierError::Corrupt(message) => Error::Corrupt { key: describe(&key), message },
                    };
                    self.retract(&key, flight);
                    flight.finish(Err(error.clone()));
                    return Err(Failure::from(error));
                }
            },
            (stored, _) => stored,
        };
        let computed = match stored {
            Some(v) => Ok(Ok(v)),
            None => grow_stack(|| catch_unwind(AssertUnwindSafe(|| (self.inner.func)(self, key.clone())))),
        };
        match computed {
            Ok(Ok(value)) => {
                if let Some(lease) = lease {
                    lease.publish(&value);
                }
                if let Some(b) = self.inner.backing.as_ref().filter(|_| !from_backing) {
                    b.store(&key, &value);
                }
                self.publish(key, flight, value.clone());
                // Once the slot holds the value, nobody can pick up this flight any more:
                // if we hold the only reference, nobody waits on it either, and the
                // uncontended path skips the lock, the clone and the wake-up.
                if Arc::strong_count(flight) > 1 {
                    flight.finish(Ok(value.clone()));
                }
                Ok(value)
            }
            Ok(Err(error)) => {
                // Dropping the lease releases it: another worker may try at once.
                drop(lease);
                self.retract(&key, flight);
                flight.finish(Err(error.clone()));
                Err(Failure::from(error))
            }
            Err(payload) => {
                let error = Error::Panicked { key: describe(&key), message: panic_message(&*payload) };
                drop(lease);
                self.retract(&key, flight);
                flight.finish(Err(error.clone()));
                Err(Failure { error, payload: Some(payload) })
            }
        }
    }

    /// Replaces the key's flight with its value (unless the slot changed meanwhile).
    fn publish(&self, key: K, flight: &Arc<Flight<V, E>>, value: V) {
        let hash = self.hash(&key);
        let mut shard = self.write_shard(hash);
        let ours = matches!(shard.get(hash, &key), Some(Slot::Pending(f)) if Arc::ptr_eq(f, flight));
        if !ours {
            return;
        }
        let bounded = self.inner.shard_capacity != usize::MAX;
        if bounded {
            shard.clock.push_back(key.clone());
        }
        shard.insert(hash, key, Slot::Ready { value, referenced: false.into() }, &self.inner.hasher);
        self.inner.len.fetch_add(1, Ordering::Relaxed);
        if bounded {
            self.evict(&mut shard);
        }
    }

    /// Second chance: pop the oldest ready key; if it was used since it was last looked at,
    /// clear its bit and requeue it, otherwise evict it.
    fn evict(&self, shard: &mut Shard<K, V, E>) {
        let mut ready = shard.clock.len();
        let mut budget = 2 * ready + 1;
        while ready > self.inner.shard_capacity && budget > 0 {
            budget -= 1;
            let Some(key) = shard.clock.pop_front() else { return };
            let hash = self.hash(&key);
            match shard.get(hash, &key) {
                Some(Slot::Ready { referenced, .. }) if referenced.swap(false, Ordering::Relaxed) => {
                    shard.clock.push_back(key);
                }
                Some(Slot::Ready { .. }) => {
                    shard.remove(hash, &key);
                    self.inner.len.fetch_sub(1, Ordering::Relaxed);
                    ready -= 1;
                }
                // Recomputing (the value was evicted and is being computed again): the
                // clock entry is stale; the new value will push its own.
                _ => ready -= 1,
            }
        }
    }

    /// Removes the key's flight after a failure: the key is vacant again, not poisoned.
    fn retract(&self, key: &K, flight: &Arc<Flight<V, E>>) {
        let hash = self.hash(key);
        let mut shard = self.write_shard(hash);
        if matches!(shard.get(hash, key), Some(Slot::Pending(f)) if Arc::ptr_eq(f, flight)) {
            shard.remove(hash, key);
        }
    }

    fn hash(&self, key: &K) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    fn shard_at(&self, hash: u64) -> &RwLock<Shard<K, V, E>> {
        // High bits pick the shard; the table inside it uses the low ones.
        &self.inner.shards[(hash >> 40) as usize & (self.inner.shards.len() - 1)]
    }

    fn read_shard(&self, hash: u64) -> impl std::ops::Deref<Target = Shard<K, V, E>> + '_ {
        self.shard_at(hash).read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_shard(&self, hash: u64) -> impl std::ops::DerefMut<Target = Shard<K, V, E>> + '_ {
        self.shard_at(hash).write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(not(speedup_loom))]
    fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        match &self.inner.pool {
            Some(pool) => pool.spawn(job),
            None => rayon::spawn(job),
        }
    }

    /// Under loom there is no pool: queued keys stay queued until a waiter helps, which is
    /// exactly the path the models check.
    #[cfg(speedup_loom)]
    fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        drop(job);
    }
}

/// An error, with the original panic payload when this thread caught it (so `get` can
/// re-raise the very same panic).
struct Failure<E> {
    error: Error<E>,
    payload: Option<Box<dyn std::any::Any + Send>>,
}

impl<E> From<Error<E>> for Failure<E> {
    fn from(error: Error<E>) -> Self {
        Failure { error, payload: None }
    }
}

/// Runs `f` with at least `RED_ZONE` bytes of stack, on a fresh heap-allocated segment if
/// needed: deep recursion through the cache never overflows.
#[cfg(not(speedup_loom))]
fn grow_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, f)
}

#[cfg(speedup_loom)]
fn grow_stack<R>(f: impl FnOnce() -> R) -> R {
    f()
}

//! [`Cache`]: the sharded map of ready values and in-flight computations.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::Ordering;

use std::sync::Arc as StdArc;

use crate::biased::{BiasedLock, Readers};
use crate::error::{Error, describe, panic_message};
use crate::flight::{Claim, Flight};
use crate::sync::{Arc, AtomicUsize, Mutex};
use crate::tiers::{Lookup, Tiers};
use crate::waits::{self, Kind, Node, Verdict, Waits};

/// How long a rayon worker with nothing else to run waits for a key computed elsewhere
/// before it computes the key itself, when the wait may hide a rayon job the wait-for
/// graph cannot see (see `Cache::block_on`).
#[cfg(not(speedup_loom))]
const STUCK: std::time::Duration = std::time::Duration::from_millis(50);
/// The same when nothing suggests so: a rayon job that never calls the cache can still
/// stack on top of the computation waited for, on the thread that computes it.
#[cfg(not(speedup_loom))]
const STUCK_UNSEEN: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether this thread is a rayon worker (of any pool).
#[cfg(not(speedup_loom))]
fn on_rayon_worker() -> bool {
    rayon::current_thread_index().is_some()
}

#[cfg(speedup_loom)]
fn on_rayon_worker() -> bool {
    false
}

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
/// The original PySpeedup's parallel Fibonacci, with `batch_async` scheduling both sub-calls only when
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
///
/// # Which calls a computation waits for
///
/// Cycle detection needs to know which computation a call belongs to:
///
/// - The function's argument, and anything that borrows it (`rayon::join`, `scope` and
///   `par_iter` closures, `std::thread::scope` threads), acts for the function's
///   computation, wherever the call runs: the computation waits for that work.
/// - A clone of a handle acts for no computation of its own. Clones are what work the
///   function does not wait for needs (`std::thread::spawn`, `rayon::spawn`, a handle
///   kept in a global or sent away): a key asked there may need the function's own key,
///   and that is no cycle. On a plain thread, such a handle acts for the computation
///   running on that thread, so a function that reaches the cache through a global still
///   gets its cycles reported.
/// - `V::clone` runs under a shard's read lock on the hit path: a `Clone` impl must not
///   call the cache. A panic in it (or in a key's `Clone`, `Hash` or `Debug`) fails that
///   call only; the key is not left in flight.
///
/// The flip side: a cycle closed through a thread that the function spawns with a clone
/// and then joins is not seen, and waits like any thread joining a thread that waits for
/// it.
pub struct Cache<K, V, E = Infallible> {
    inner: Arc<Inner<K, V, E>>,
    /// The computation this handle acts for: the one whose function received it (`None`
    /// for handles made by [`Cache::new`] and their clones). It travels with the handle
    /// into rayon jobs, so cycle detection follows computations, not threads.
    frame: Option<StdArc<Node<K>>>,
}

struct Inner<K, V, E> {
    /// Tags this cache's frames on each thread's stack of running computations.
    id: usize,
    shards: Box<[BiasedLock<Shard<K, V, E>>]>,
    /// Where the shards' readers announce themselves (see `biased.rs`).
    readers: Readers,
    hasher: ahash::RandomState,
    func: Box<Func<K, V, E>>,
    waits: Waits<K>,
    /// Ready values in the whole cache.
    len: AtomicUsize,
    /// Ready values allowed in the whole cache (`usize::MAX`: unbounded).
    capacity: usize,
    /// Ready keys in publication order, for second-chance eviction (only with a capacity).
    clock: Mutex<VecDeque<K>>,
    /// Keys a caller computed itself because waiting would have deadlocked its own stack.
    reruns: AtomicUsize,
    /// Set once a handle was used away from its computation's own frame: the function
    /// hands work to rayon (or to threads), so waits may hide behind rayon jobs that the
    /// wait-for graph cannot see (see `Cache::block_on`).
    forked: std::sync::atomic::AtomicBool,
    #[cfg(not(speedup_loom))]
    pool: Option<rayon::ThreadPool>,
    /// The backing store and the tier shared with other workers, asked on a miss.
    tiers: Tiers<K, V>,
}

struct Shard<K, V, E> {
    /// Keyed by the hash computed once per call (it also picks the shard).
    slots: hashbrown::HashTable<(K, Slot<K, V, E>)>,
}

/// What [`Cache::take_or_find`] found in a key's slot.
enum Vacancy<K, V, E> {
    /// The value.
    Ready(V),
    /// Nothing: the slot now holds this new flight, which the caller must run.
    Taken(Arc<Flight<K, V, E>>),
    /// Another caller's flight.
    InFlight(Arc<Flight<K, V, E>>),
}

enum Slot<K, V, E> {
    Ready { value: V, referenced: std::sync::atomic::AtomicBool },
    Pending(Arc<Flight<K, V, E>>),
}

impl<K: Eq, V, E> Shard<K, V, E> {
    fn get(&self, hash: u64, key: &K) -> Option<&Slot<K, V, E>> {
        self.slots.find(hash, |(k, _)| k == key).map(|(_, slot)| slot)
    }

    /// Stores `slot` for `key`, returning what it replaced, for the caller to drop after
    /// releasing the lock.
    fn insert(
        &mut self,
        hash: u64,
        key: K,
        slot: Slot<K, V, E>,
        hasher: &ahash::RandomState,
    ) -> Option<Slot<K, V, E>>
    where
        K: Hash,
    {
        match self.slots.find_mut(hash, |(k, _)| *k == key) {
            Some(entry) => Some(std::mem::replace(&mut entry.1, slot)),
            None => {
                self.slots.insert_unique(hash, (key, slot), |(k, _)| hasher.hash_one(k));
                None
            }
        }
    }

    /// Removes the key's entry, returning it for the caller to drop after releasing the lock.
    fn remove(&mut self, hash: u64, key: &K) -> Option<(K, Slot<K, V, E>)> {
        self.slots.find_entry(hash, |(k, _)| k == key).ok().map(|entry| entry.remove().0)
    }
}

impl<K, V, E> Clone for Cache<K, V, E> {
    /// A handle to the same cache that acts for no computation (see "Which calls a
    /// computation waits for" on [`Cache`]): work that needs an owned handle
    /// (`std::thread::spawn`, `rayon::spawn`, a global) is work the function does not wait
    /// for. Structured parallelism (`rayon::join`, `scope`, `par_iter`,
    /// `std::thread::scope`) borrows the function's handle instead, and acts for it.
    fn clone(&self) -> Self {
        Cache { inner: Arc::clone(&self.inner), frame: None }
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
    tiers: Tiers<K, V>,
}

impl<K, V> fmt::Debug for CacheBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("threads", &self.threads)
            .field("capacity", &self.capacity)
            .field("tiers", &self.tiers)
            .finish()
    }
}

impl<K, V> Default for CacheBuilder<K, V> {
    fn default() -> Self {
        CacheBuilder { threads: None, capacity: None, tiers: Tiers::default() }
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

    /// Keeps at most `n` values (at least 1), evicting the least recently used first
    /// (second chance, over the whole cache), whatever the number of cores. Keys being
    /// computed are not counted and never evicted; a computation that just ended may hold
    /// its value for the moment it takes to evict another one. Evicted values are dropped
    /// after every lock is released, so a value's `Drop` may use the cache. Default:
    /// unbounded.
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = Some(n.max(1));
        self
    }

    /// Looks values up in (and writes computed values to) a second tier, for example a
    /// `speedup_paged::DiskDict` (feature `persist`), so results survive restarts.
    pub fn backing(mut self, backing: impl crate::Backing<K, V> + 'static) -> Self {
        self.tiers.set_backing(Box::new(backing));
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
        E: Send + Sync + 'static,
    {
        self.build_with(Box::new(f))
    }

    fn build_with<E: Send + Sync + 'static>(self, func: Box<Func<K, V, E>>) -> Cache<K, V, E> {
        // Many more shards than cores: two threads rarely touch the same lock.
        let shards = (crate::cores() * 64).next_power_of_two().max(64);
        // Under loom, fixed seeds: a model's executions must repeat one another exactly, and
        // a random seed moved keys between shards from one execution to the next (loom then
        // failed on its own replay, e.g. "expected to be able to acquire write lock").
        #[cfg(not(speedup_loom))]
        let hasher = ahash::RandomState::new();
        #[cfg(speedup_loom)]
        let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
        #[cfg(not(speedup_loom))]
        let pool = self.threads.map(|n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(|i| format!("speedup-cache-{i}"))
                .build()
                .unwrap_or_else(|e| panic!("cannot start the cache's {n} worker threads: {e}"))
        });
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        Cache {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                shards: (0..shards)
                    .map(|_| BiasedLock::new(Shard { slots: hashbrown::HashTable::new() }))
                    .collect(),
                // A slot per thread for a few times the cores (rayon pools, oversubscribed
                // callers); past that, threads share slots and sometimes take the slow path.
                readers: Readers::new((crate::cores() * 4).max(32)),
                hasher,
                func,
                waits: Waits::default(),
                len: AtomicUsize::new(0),
                capacity: self.capacity.unwrap_or(usize::MAX),
                clock: Mutex::new(VecDeque::new()),
                reruns: AtomicUsize::new(0),
                forked: std::sync::atomic::AtomicBool::new(false),
                #[cfg(not(speedup_loom))]
                pool,
                tiers: self.tiers,
            }),
            frame: None,
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
            Err(failure) => failure.raise(),
        }
    }
}

impl<K, V, E> Cache<K, V, E>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// A fallible cache: `f` returns `Result<V, Error<E>>` (wrap your own errors as
    /// [`Error::failed`], which names the key for you), and [`Cache::try_get`] inside it
    /// propagates with `?`. Errors are not cached.
    ///
    /// ```
    /// use speedup_cache::{Cache, Error};
    /// let parse = Cache::try_new(|_: &Cache<String, i64, String>, s: String| {
    ///     s.parse::<i64>().map_err(|e| Error::failed(e.to_string()))
    /// });
    /// assert_eq!(parse.try_get("42".to_string()), Ok(42));
    /// let failed = parse.try_get("x".to_string()).unwrap_err();
    /// assert_eq!(failed.to_string(), r#"computing "x" failed: invalid digit found in string"#);
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
        self.resolve(key).map_err(Failure::into_error)
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
            // Nobody waits for a scheduled key yet: a caller that claims it links itself.
            let flight = Arc::new(Flight::queued(Node::new(key.clone(), None)));
            shard.insert(hash, key.clone(), Slot::Pending(Arc::clone(&flight)), &self.inner.hasher);
            flight
        };
        let cache = Cache { inner: Arc::clone(&self.inner), frame: None };
        self.spawn(move || {
            if let Claim::Run = flight.claim() {
                // Nobody asked for the outcome yet: waiters get it from the flight, and a
                // panic must not unwind into the pool (rayon would abort the process).
                let _ = cache.run(key, &flight, None);
            }
        });
    }

    /// Schedules the keys that are neither cached nor in flight, but only when two or more
    /// are missing: a single missing key is computed inline by the `get` that follows, which
    /// is cheaper than a round trip through the pool (the original's "avoid unnecessary
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
    /// [`FlushError`](crate::FlushError), whose source is the backing tier's own error.
    pub fn flush(&self) -> std::result::Result<(), crate::FlushError> {
        self.inner.tiers.flush()
    }

    /// How many times a caller computed a key that was already being computed, because
    /// waiting for it would (or, as far as the cache can tell, might) have deadlocked a
    /// thread's own stack. That happens only on rayon workers: a thread waiting in `join`
    /// may steal a job that needs a key whose computation lies below it on the same
    /// stack, and that computation cannot resume before the stolen job returns. The key's
    /// body then runs once more, and its value is handed to every waiter. A rayon worker
    /// that waits long for a key with nothing else to run counts here too (see the crate
    /// docs). Zero when no rayon worker ever waits for a key.
    pub fn reruns(&self) -> usize {
        self.inner.reruns.load(Ordering::Relaxed)
    }

    /// What the Redis tier did so far, or `None` without one (feature `redis`).
    #[cfg(feature = "redis")]
    pub fn redis_stats(&self) -> Option<crate::RedisStats> {
        self.inner.tiers.redis_stats()
    }

    /// The Redis key that holds (or will hold) the value for `key`, or `None` without a
    /// Redis tier (feature `redis`). Deleting that key makes the cluster compute it again.
    #[cfg(feature = "redis")]
    pub fn redis_key(&self, key: &K) -> Option<Vec<u8>> {
        self.inner.tiers.redis_key(key)
    }

    /// A clone that acts for the same computation as this handle (a plain `clone` acts
    /// for none; see "Which calls a computation waits for" on [`Cache`]). For structured
    /// work that needs an owned handle, such as a language binding that keeps the handle of
    /// each running computation: the computation must wait for every call made through it,
    /// or a key asked there that needs the computation's own key is reported as a cycle.
    pub fn attached_clone(&self) -> Self {
        Cache { inner: Arc::clone(&self.inner), frame: self.frame.clone() }
    }

    /// The computation this call acts for, if any (and still running).
    ///
    /// The handle's own computation, when it has one: the function's argument, borrowed
    /// into rayon jobs (`join`, `scope`, `par_iter`) or scoped threads, which the
    /// computation waits for. A handle without one (a clone, a global) acts, on a plain
    /// thread, for the innermost computation of that thread: the function running there
    /// uses the cache through it, and a thread of its own acts for nobody. On a rayon
    /// worker it acts for nobody: the call may come from a job stolen on top of that
    /// computation, not from it (so a cycle closed only through such calls is not seen).
    fn caller(&self) -> Option<StdArc<Node<K>>> {
        if let Some(frame) = &self.frame {
            return (!frame.is_done()).then(|| StdArc::clone(frame));
        }
        if on_rayon_worker() {
            return None;
        }
        waits::top::<K>(self.inner.id).filter(|n| !n.is_done())
    }

    /// Notes a handle used away from its computation's frame (a rayon job, a thread).
    fn note_fork(&self, me: Option<&StdArc<Node<K>>>) {
        if let Some(me) = me
            && !self.inner.forked.load(Ordering::Relaxed)
            && !waits::on_this_thread(self.inner.id, me)
        {
            self.inner.forked.store(true, Ordering::Relaxed);
        }
    }

    fn resolve(&self, key: K) -> Result<V, Failure<E>> {
        let hash = self.hash(&key);
        // Hit path: one hash, one read of the shard (biased: see `biased.rs`), one lookup,
        // one clone.
        let flight = {
            let shard = self.read_shard(hash);
            match shard.get(hash, &key) {
                Some(Slot::Ready { value, referenced }) => {
                    if self.inner.capacity != usize::MAX && !referenced.load(Ordering::Relaxed) {
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
            None => match self.take_or_find(hash, &key) {
                Vacancy::Ready(value) => return Ok(value),
                Vacancy::Taken(flight) => return self.run(key, &flight, None),
                Vacancy::InFlight(flight) => flight,
            },
        };
        self.join(key, &flight)
    }

    /// Under the shard's write lock: the key's value, or its flight, or (vacant) a new
    /// flight of this caller's in the key's slot. (Out of line, as is [`Cache::join`]: the
    /// frame of `get` is one of every level of a deep recursion.)
    #[inline(never)]
    fn take_or_find(&self, hash: u64, key: &K) -> Vacancy<K, V, E> {
        let mut shard = self.write_shard(hash);
        match shard.get(hash, key) {
            Some(Slot::Ready { value, referenced }) => {
                referenced.store(true, Ordering::Relaxed);
                Vacancy::Ready(value.clone())
            }
            Some(Slot::Pending(flight)) => Vacancy::InFlight(Arc::clone(flight)),
            None => {
                let flight = Arc::new(Flight::running(Node::new(key.clone(), self.caller())));
                shard.insert(hash, key.clone(), Slot::Pending(Arc::clone(&flight)), &self.inner.hasher);
                Vacancy::Taken(flight)
            }
        }
    }

    /// Takes part in another caller's flight for `key`: runs it if it is queued, takes its
    /// outcome if it ended, or waits for it.
    #[inline(never)]
    fn join(&self, key: K, flight: &Arc<Flight<K, V, E>>) -> Result<V, Failure<E>> {
        match flight.claim() {
            Claim::Run => self.run_queued(key, flight),
            Claim::Finished(outcome) => outcome.map_err(Failure::from),
            Claim::Wait => self.wait_for(key, flight),
        }
    }

    /// Runs a key that `apply_async` queued and this caller claimed: it waits for it as
    /// for a call. (Out of line, as every path but the plain miss: the frames of a deep
    /// recursion through the cache stay small.)
    #[inline(never)]
    fn run_queued(&self, key: K, flight: &Arc<Flight<K, V, E>>) -> Result<V, Failure<E>> {
        let me = self.caller();
        let link = me.as_ref().map(|me| self.inner.waits.link(me, &flight.node, Kind::Needs));
        let outcome = self.run(key, flight, me.as_ref());
        if let Some(link) = link {
            self.inner.waits.leave(link);
        }
        outcome
    }

    /// Waits for a key another computation runs, unless that would never end.
    #[inline(never)]
    fn wait_for(&self, key: K, flight: &Arc<Flight<K, V, E>>) -> Result<V, Failure<E>> {
        let me = self.caller();
        self.note_fork(me.as_ref());
        let top = waits::top::<K>(self.inner.id);
        match self.inner.waits.enter(me.as_ref(), top.as_ref(), &flight.node) {
            Verdict::Wait(registration) => {
                let outcome = self.block_on(flight, me.as_ref(), top.as_ref());
                self.inner.waits.leave(registration);
                match outcome {
                    Some(outcome) => outcome.map_err(Failure::from),
                    None => self.run_here(key, flight, me),
                }
            }
            Verdict::Cycle(chain) => {
                let mut path: Vec<String> = chain.iter().map(|n| describe(&n.key)).collect();
                path.push(describe(&key));
                Err(Failure::from(Error::Cycle { key: describe(&key), path: path.join(" -> ") }))
            }
            Verdict::RunHere => self.run_here(key, flight, me),
        }
    }

    /// Waits for `flight`; `None` if a rayon worker should compute the key itself.
    ///
    /// A rayon worker does not block: it runs other jobs of its pool meanwhile (a job it
    /// leaves queued may be what the flight needs, and a pool whose every worker blocks
    /// would never run it). The jobs it runs sit on top of this wait on its stack, so for
    /// as long as it waits, `me` is a frame of this thread, and the frame below (if
    /// another) cannot resume before `me` does. So only a thread's outermost wait runs
    /// jobs (its own, other workers', the pool's queue); a wait nested in it, inside one of
    /// those jobs, only sleeps, which bounds the work piled up on one stack to one job and
    /// what it calls. Other workers run the jobs this one leaves queued meanwhile.
    ///
    /// The graph cannot see every such edge: a rayon job that never calls the cache (the
    /// body of a `scope`, a `join` half) is invisible, yet whatever rayon stacks on top of
    /// it blocks it (a `par_iter` job stolen on top of a computation, whose other half, on
    /// another thread, waits for that computation). So a worker that has waited with
    /// nothing left to run stops waiting and computes the key itself: a stack-bound
    /// deadlock cannot last, at the cost of running a key's body a second time (counted in
    /// [`Cache::reruns`]). It waits `STUCK` (50 ms) when the wait may hide such an edge
    /// (the function was seen handing work to rayon, or this thread has computations
    /// suspended below the wait other than in this loop), `STUCK_UNSEEN` (500 ms)
    /// otherwise.
    #[cfg(not(speedup_loom))]
    fn block_on(
        &self,
        flight: &Arc<Flight<K, V, E>>,
        me: Option<&StdArc<Node<K>>>,
        top: Option<&StdArc<Node<K>>>,
    ) -> Option<Result<V, Error<E>>> {
        if rayon::current_thread_index().is_none() {
            return Some(flight.wait());
        }
        let me_is_top = matches!((me, top), (Some(me), Some(top)) if StdArc::ptr_eq(me, top));
        // Frames of this thread that are suspended for reasons the graph may not see: not
        // the one running (`me`), not waiting in this very loop further down.
        let hidden = waits::deeper_than(self.inner.id, usize::from(me_is_top) + waits::helping());
        let pushed = me.filter(|me| top.is_none_or(|top| !StdArc::ptr_eq(me, top)));
        let below = match (pushed, top) {
            (Some(me), Some(top)) => Some(self.inner.waits.link(top, me, Kind::Stack)),
            _ => None,
        };
        let frame = pushed.map(|me| waits::push(self.inner.id, me));
        let _helping = (pushed.is_some() || me_is_top).then(waits::help);
        let may_be_stuck = hidden || self.inner.forked.load(Ordering::Relaxed);
        let _waiting = waits::wait();
        let outermost = waits::waiting() == 1;
        let mut pause = std::time::Duration::from_micros(50);
        let started = std::time::Instant::now();
        let outcome = loop {
            if let Some(outcome) = flight.wait_timeout(std::time::Duration::ZERO) {
                break Some(outcome);
            }
            // Only the outermost wait on this thread runs jobs: a job run here stacks on
            // this wait, and jobs that wait and run jobs again stack without bound, each a
            // computation the frames below cannot finish before. A key found in flight below
            // is then computed again, and so are its children, in flight below too: the
            // reruns cascade (issue #12: a `par_iter` fan-out of 4 from 16 threads ran each
            // key's body 22 times when nested waits ran this worker's own queued jobs, and a
            // fan-out of 50 did not end; with nested waits that only sleep, 1.07 times and
            // every round). A nested wait left waiting `STUCK` computes the key itself.
            if outermost && let Some(rayon::Yield::Executed) = rayon::yield_now() {
                pause = std::time::Duration::from_micros(50);
                continue;
            }
            let patience =
                if may_be_stuck || self.inner.forked.load(Ordering::Relaxed) { STUCK } else { STUCK_UNSEEN };
            if started.elapsed() > patience {
                break None;
            }
            // Nothing to run (or not allowed to): sleep until the flight ends, looking for
            // new jobs now and then.
            if let Some(outcome) = flight.wait_timeout(pause) {
                break Some(outcome);
            }
            pause = (pause * 2).min(std::time::Duration::from_millis(5));
        };
        drop(frame);
        if let Some(below) = below {
            self.inner.waits.leave(below);
        }
        outcome
    }

    /// Under loom there is no pool: waiting is blocking.
    #[cfg(speedup_loom)]
    fn block_on(
        &self,
        flight: &Arc<Flight<K, V, E>>,
        _: Option<&StdArc<Node<K>>>,
        _: Option<&StdArc<Node<K>>>,
    ) -> Option<Result<V, Error<E>>> {
        Some(flight.wait())
    }

    /// Computes a key whose computation lies below this caller on its own stack (see
    /// [`Cache::reruns`]), and hands the value to that computation's waiters.
    fn run_here(
        &self,
        key: K,
        flight: &Arc<Flight<K, V, E>>,
        me: Option<StdArc<Node<K>>>,
    ) -> Result<V, Failure<E>> {
        if let Claim::Finished(outcome) = flight.claim() {
            return outcome.map_err(Failure::from);
        }
        self.inner.reruns.fetch_add(1, Ordering::Relaxed);
        let node = Node::new(key.clone(), me.clone());
        let computed = self.compute(&node, key.clone(), me.as_ref());
        Waits::finished(&node);
        // The outcome goes to the owner's flight as if the owner had computed it. A failure
        // too: the owner lies below a stack that may never resume, and a waiter left
        // waiting would time out and run the key again, for ever when the failure is a
        // genuine cycle (issue #12: a cycle under `par_iter` from four threads). The slot is
        // cleared, so errors are not cached: the next call computes the key again (the
        // owner's own outcome, when it ends, no longer reaches the slot).
        match computed {
            Ok(Ok(value)) => self.deliver(key, flight, value),
            Ok(Err(error)) => self.fail_with(&key, flight, Ok(error)),
            Err(payload) => self.fail_with(&key, flight, Err(payload)),
        }
    }

    /// Runs the function for `key` as computation `node`, on this thread's stack of
    /// computations. `caller` (if any) waits for it and has linked itself already.
    fn compute(
        &self,
        node: &StdArc<Node<K>>,
        key: K,
        caller: Option<&StdArc<Node<K>>>,
    ) -> std::thread::Result<Result<V, Error<E>>> {
        let id = self.inner.id;
        let top = waits::top::<K>(id);
        let asked = |n: Option<&StdArc<Node<K>>>| {
            n.is_some_and(|n| top.as_ref().is_some_and(|t| StdArc::ptr_eq(n, t)))
        };
        if !asked(node.parent()) {
            // Asked by a computation that is not the innermost one here: a rayon job (or a
            // thread) of it, unless it is further down this very stack.
            self.note_fork(node.parent());
        }
        // A computation pushed over one that did not ask for it (work-stealing, a pool job
        // run inside a `join`): the one below cannot resume before this one returns.
        let boundary = top
            .as_ref()
            .filter(|_| !asked(node.parent()) && !asked(caller))
            .map(|top| self.inner.waits.link(top, node, Kind::Stack));
        let span = compute_span(&key);
        let _entered = span.enter();
        let frame = waits::push(id, node);
        let handle = Cache { inner: Arc::clone(&self.inner), frame: Some(StdArc::clone(node)) };
        let computed = grow_stack(|| catch_unwind(AssertUnwindSafe(|| (self.inner.func)(&handle, key))));
        drop(frame);
        if let Some(boundary) = boundary {
            self.inner.waits.leave(boundary);
        }
        computed
    }

    /// Computes `key`, which this caller owns, publishes the outcome and wakes the waiters.
    fn run(
        &self,
        key: K,
        flight: &Arc<Flight<K, V, E>>,
        caller: Option<&StdArc<Node<K>>>,
    ) -> Result<V, Failure<E>> {
        // The function's panics are caught in `compute`; this catches the others on the
        // way (a `Clone`, `Hash` or `Drop` of the key or value), which must not leave the
        // flight running for ever.
        let outcome = match catch_unwind(AssertUnwindSafe(|| self.run_inner(key, flight, caller))) {
            Ok(outcome) => outcome,
            Err(payload) => self.fail_with(&flight.node.key, flight, Err(payload)),
        };
        Waits::finished(&flight.node);
        outcome
    }

    fn run_inner(
        &self,
        key: K,
        flight: &Arc<Flight<K, V, E>>,
        caller: Option<&StdArc<Node<K>>>,
    ) -> Result<V, Failure<E>> {
        if !self.inner.tiers.is_empty() {
            return self.run_tiered(key, flight, caller);
        }
        match self.compute(&flight.node, key.clone(), caller) {
            Ok(Ok(value)) => self.deliver(key, flight, value),
            Ok(Err(error)) => self.fail_with(&key, flight, Ok(error)),
            Err(payload) => self.fail_with(&key, flight, Err(payload)),
        }
    }

    /// [`Cache::fail`] with the function's error (`Ok`) or a panic's payload (`Err`). (Out
    /// of line: building the failure needs locals that need not sit in every frame of a
    /// deep recursion.)
    #[cold]
    #[inline(never)]
    fn fail_with(
        &self,
        key: &K,
        flight: &Arc<Flight<K, V, E>>,
        failure: Result<Error<E>, Box<dyn std::any::Any + Send>>,
    ) -> Result<V, Failure<E>> {
        let failure = match failure {
            Ok(error) => Failure::from(error.for_key(key)),
            Err(payload) => Failure::panicked(key, payload),
        };
        self.fail(key, flight, failure)
    }

    /// Hands a computed value to the key's slot and to the flight's waiters. (Out of line:
    /// its locals need not sit in every frame of a deep recursion.)
    #[inline(never)]
    fn deliver(&self, key: K, flight: &Arc<Flight<K, V, E>>, value: V) -> Result<V, Failure<E>> {
        self.publish(key, flight, value.clone());
        // Once the slot holds the value, nobody can pick up this flight any more: if we
        // hold the only reference, nobody waits on it either, and the uncontended path
        // skips the lock, the clone and the wake-up.
        if Arc::strong_count(flight) > 1 {
            flight.finish(Ok(value.clone()));
        }
        Ok(value)
    }

    /// Ends a computation that produced no value: empties the key's slot (the next call
    /// computes it again) and hands the failure to the flight's waiters.
    #[cold]
    #[inline(never)]
    fn fail(&self, key: &K, flight: &Arc<Flight<K, V, E>>, failure: Failure<E>) -> Result<V, Failure<E>> {
        self.retract(key, flight);
        flight.finish(Err(failure.error().clone()));
        Err(failure)
    }

    /// `run_inner` with a backing tier or a shared tier: memory, backing, Redis, the
    /// function, then the value goes back to the tiers that lacked it.
    #[inline(never)]
    fn run_tiered(
        &self,
        key: K,
        flight: &Arc<Flight<K, V, E>>,
        caller: Option<&StdArc<Node<K>>>,
    ) -> Result<V, Failure<E>> {
        let claim = match self.inner.tiers.lookup(&key) {
            Ok(Lookup::Found(value)) => return self.deliver(key, flight, value),
            Ok(Lookup::Compute(claim)) => claim,
            Err(error) => return self.fail(&key, flight, Failure::from(error.for_key(&key))),
        };
        match self.compute(&flight.node, key.clone(), caller) {
            Ok(Ok(value)) => {
                self.inner.tiers.keep(&key, &value, claim);
                self.deliver(key, flight, value)
            }
            // Dropping the claim first releases its lease: another worker may try at once.
            Ok(Err(error)) => {
                drop(claim);
                self.fail(&key, flight, Failure::from(error.for_key(&key)))
            }
            Err(payload) => {
                drop(claim);
                self.fail(&key, flight, Failure::panicked(&key, payload))
            }
        }
    }

    /// Replaces the key's flight with its value (unless the slot changed meanwhile), then
    /// evicts down to the capacity.
    fn publish(&self, key: K, flight: &Arc<Flight<K, V, E>>, value: V) {
        let hash = self.hash(&key);
        let bounded = self.inner.capacity != usize::MAX;
        let clocked = bounded.then(|| key.clone());
        let mut shard = self.write_shard(hash);
        let ours = matches!(shard.get(hash, &key), Some(Slot::Pending(f)) if Arc::ptr_eq(f, flight));
        if !ours {
            return;
        }
        let replaced =
            shard.insert(hash, key, Slot::Ready { value, referenced: false.into() }, &self.inner.hasher);
        self.inner.len.fetch_add(1, Ordering::Relaxed);
        drop(shard);
        drop(replaced);
        if let Some(key) = clocked {
            self.inner.clock.lock().push_back(key);
            self.evict();
        }
    }

    /// Second chance over the whole cache: pop the oldest ready key; if it was used since it
    /// was last looked at, clear its bit and requeue it, otherwise evict it. Evicted entries
    /// are dropped once no lock is held: a value's `Drop` may call the cache.
    fn evict(&self) {
        let mut evicted = Vec::new();
        let mut stale = Vec::new();
        let mut budget = 2 * self.inner.clock.lock().len() + 1;
        while self.inner.len.load(Ordering::Relaxed) > self.inner.capacity && budget > 0 {
            budget -= 1;
            let Some(key) = self.inner.clock.lock().pop_front() else { break };
            let hash = self.hash(&key);
            let mut shard = self.write_shard(hash);
            let requeue = match shard.get(hash, &key) {
                Some(Slot::Ready { referenced, .. }) if referenced.swap(false, Ordering::Relaxed) => true,
                Some(Slot::Ready { .. }) => {
                    evicted.extend(shard.remove(hash, &key));
                    self.inner.len.fetch_sub(1, Ordering::Relaxed);
                    false
                }
                // Not ready (evicted and being computed again): its new value queues itself.
                _ => false,
            };
            drop(shard);
            if requeue {
                self.inner.clock.lock().push_back(key);
            } else {
                stale.push(key);
            }
        }
        if !evicted.is_empty() {
            tracing::debug!(
                evicted = evicted.len(),
                capacity = self.inner.capacity,
                "speedup-cache: evicted"
            );
        }
        crate::error::drop_evicted(evicted);
        drop(stale);
    }

    /// Removes the key's flight after a failure: the key is vacant again, not poisoned.
    fn retract(&self, key: &K, flight: &Arc<Flight<K, V, E>>) {
        let hash = self.hash(key);
        let mut shard = self.write_shard(hash);
        let removed = if matches!(shard.get(hash, key), Some(Slot::Pending(f)) if Arc::ptr_eq(f, flight)) {
            shard.remove(hash, key)
        } else {
            None
        };
        drop(shard);
        drop(removed);
    }

    fn hash(&self, key: &K) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    fn shard_at(&self, hash: u64) -> &BiasedLock<Shard<K, V, E>> {
        // High bits pick the shard; the table inside it uses the low ones.
        &self.inner.shards[(hash >> 40) as usize & (self.inner.shards.len() - 1)]
    }

    fn read_shard(&self, hash: u64) -> impl std::ops::Deref<Target = Shard<K, V, E>> + '_ {
        self.shard_at(hash).read(&self.inner.readers)
    }

    fn write_shard(&self, hash: u64) -> impl std::ops::DerefMut<Target = Shard<K, V, E>> + '_ {
        self.shard_at(hash).write(&self.inner.readers)
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
/// re-raise the very same panic). Boxed: a `Result<V, Failure<E>>` is returned through every
/// level of a deep recursion, and failures are rare (the box keeps those frames small).
struct Failure<E>(Box<Failed<E>>);

struct Failed<E> {
    error: Error<E>,
    payload: Option<Box<dyn std::any::Any + Send>>,
}

impl<E: fmt::Display> Failure<E> {
    /// Passes the failure on as a panic: the function's own payload if it panicked.
    #[cold]
    #[inline(never)]
    fn raise(self) -> ! {
        match *self.0 {
            Failed { payload: Some(payload), .. } => resume_unwind(payload),
            Failed { error, .. } => panic!("{error}"),
        }
    }
}

impl<E> Failure<E> {
    /// The function (or a `Clone` on the way) panicked computing `key`.
    fn panicked<K: fmt::Debug>(key: &K, payload: Box<dyn std::any::Any + Send>) -> Self {
        Failure(Box::new(Failed {
            error: Error::Panicked { key: describe(key), message: panic_message(&*payload) },
            payload: Some(payload),
        }))
    }

    /// The error, without the payload.
    fn into_error(self) -> Error<E> {
        self.0.error
    }

    fn error(&self) -> &Error<E> {
        &self.0.error
    }
}

impl<E> From<Error<E>> for Failure<E> {
    fn from(error: Error<E>) -> Self {
        Failure(Box::new(Failed { error, payload: None }))
    }
}

/// The span of one computation. (Out of line: the macro's temporaries need not sit in every
/// frame of a deep recursion.)
#[inline(never)]
fn compute_span<K: fmt::Debug>(key: &K) -> tracing::Span {
    tracing::debug_span!("speedup_cache::compute", key = ?key)
}

/// Runs `f` with at least `RED_ZONE` bytes of stack, on a fresh heap-allocated segment if
/// needed: deep recursion through the cache never overflows. (`stacker::maybe_grow`,
/// with the switch out of line: inlined, its locals sat in every frame of a recursion.)
#[cfg(not(speedup_loom))]
#[inline(always)]
fn grow_stack<R>(f: impl FnOnce() -> R) -> R {
    if stacker::remaining_stack().is_some_and(|left| left >= RED_ZONE) { f() } else { grow_stack_now(f) }
}

#[cfg(not(speedup_loom))]
#[cold]
#[inline(never)]
fn grow_stack_now<R>(f: impl FnOnce() -> R) -> R {
    stacker::grow(STACK_SEGMENT, f)
}

#[cfg(speedup_loom)]
fn grow_stack<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(feature = "redis")]
impl<K, V> CacheBuilder<K, V>
where
    K: speedup_paged::Storable + Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: speedup_paged::Storable + Clone + Send + Sync + 'static,
{
    /// Shares values with every cache using the same Redis, name, types and version
    /// (feature `redis`): a local miss looks in Redis before computing, a computed value
    /// is written there, and a cluster-wide lease makes each key computed once in the whole
    /// cluster. See [`RedisConfig`](crate::RedisConfig) for the options and [`FailMode`](crate::FailMode) for outages.
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
    pub fn redis(mut self, config: crate::RedisConfig) -> Self {
        self.tiers.set_shared(StdArc::new(crate::redis::RedisTier::<K, V>::start(config)));
        self
    }
}

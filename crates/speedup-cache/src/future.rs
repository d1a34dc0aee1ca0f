//! [`AsyncCache`]: the same single-flight memoization where computations are futures.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::Backing;
use crate::error::{Error, describe, panic_message};
use crate::sync::{Mutex, MutexGuard};
use crate::tiers::{Lookup, Tiers};
use crate::waits::{Node, Verdict, Waits};

/// How a computation ended without a value.
#[derive(Debug)]
enum Failure<E> {
    /// The function's error, a panic (caught) or a tier's error: every caller gets it.
    Error(Error<E>),
    /// Its task was dropped before it ended (its runtime shut down): nothing is known.
    Cancelled,
}

// By hand: `Error<E>` is `Clone` for every `E` (it shares the function's error in an `Arc`).
impl<E> Clone for Failure<E> {
    fn clone(&self) -> Self {
        match self {
            Failure::Error(error) => Failure::Error(error.clone()),
            Failure::Cancelled => Failure::Cancelled,
        }
    }
}

type Outcome<V, E> = Result<V, Failure<E>>;
type SharedOutcome<V, E> = Shared<BoxFuture<'static, Outcome<V, E>>>;
type AsyncFunc<K, V, E> =
    dyn Fn(AsyncCache<K, V, E>, K) -> BoxFuture<'static, Result<V, Error<E>>> + Send + Sync;

/// A memoizing cache of an async function, on tokio.
///
/// Each key's computation runs once, as a spawned tokio task, and every caller awaits the
/// same shared outcome (`futures::future::Shared` semantics): a caller that stops polling,
/// or is dropped, does not stall the others or cancel the computation. A panic is not
/// cached, and neither is a computation whose runtime shut down before it ended: the next
/// `get` (on any runtime) computes it again. No lock is held while the function runs,
/// neither its synchronous part nor its future.
///
/// A key that awaits itself, directly, through other keys, or through another task (0
/// needs 1 while 1 needs 0), panics with a message naming the whole chain instead of
/// hanging (`try_get` returns it as [`Error::Cycle`](crate::Error::Cycle)): the handle a
/// computation receives carries its identity, and every wait is an edge of a wait-for graph
/// that is checked before awaiting. One case is not seen: a task the function spawns
/// (`tokio::spawn`) acts for no computation, so a spawned task that asks for the key
/// awaiting it waits for ever; await recursive calls in the computation's own task
/// (`join!`, `select!`) instead.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use speedup_cache::AsyncCache;
///
/// let fib = AsyncCache::new(|fib: AsyncCache<u64, u64>, n: u64| async move {
///     if n < 2 {
///         return 1;
///     }
///     let (a, b) = tokio::join!(fib.get(n - 1), fib.get(n - 2));
///     a + b
/// });
/// assert_eq!(fib.get(50).await, 20365011074);
/// # }
/// ```
pub struct AsyncCache<K, V, E = std::convert::Infallible> {
    inner: Arc<Inner<K, V, E>>,
}

tokio::task_local! {
    /// The computation the current task runs, tagged with its cache (`Inner`'s address).
    static COMPUTING: (usize, Arc<dyn Any + Send + Sync>);
}

struct Inner<K, V, E> {
    table: Mutex<Table<K, V, E>>,
    func: Box<AsyncFunc<K, V, E>>,
    /// Who awaits whom, for cycle detection.
    waits: Waits<K>,
    /// At most this many ready values (`usize::MAX`: unbounded).
    capacity: usize,
    /// The backing store and the tier shared with other workers, asked on a miss.
    tiers: Tiers<K, V>,
}

/// Every key's slot, and (with a capacity) the order to evict ready ones in.
struct Table<K, V, E> {
    slots: HashMap<K, Slot<K, V, E>, ahash::RandomState>,
    /// The ready keys, oldest first (only with a capacity): each one exactly once, since a
    /// ready value leaves its slot only by eviction.
    clock: VecDeque<K>,
    ready: usize,
}

enum Slot<K, V, E> {
    /// Behind an `Arc`, so that a hit clones the value (user code) after the lock is released.
    Ready {
        value: Arc<V>,
        referenced: bool,
    },
    Pending {
        outcome: SharedOutcome<V, E>,
        node: Arc<Node<K>>,
    },
}

impl<K, V, E> Inner<K, V, E> {
    fn table(&self) -> MutexGuard<'_, Table<K, V, E>> {
        self.table.lock()
    }
}

impl<K: Hash + Eq + Clone, V, E> Table<K, V, E> {
    /// Makes the key's pending slot `node` ready with `value`, evicting down to
    /// `capacity`. Returns what left the table, for the caller to drop once the lock is
    /// released (a value's `Drop` may use the cache).
    fn settle(
        &mut self,
        key: K,
        node: &Arc<Node<K>>,
        value: Option<V>,
        capacity: usize,
    ) -> Vec<Slot<K, V, E>> {
        let ours =
            matches!(self.slots.get(&key), Some(Slot::Pending { node: n, .. }) if Arc::ptr_eq(n, node));
        if !ours {
            return Vec::new();
        }
        let Some(value) = value else { return self.slots.remove(&key).into_iter().collect() };
        if capacity != usize::MAX {
            self.clock.push_back(key.clone());
        }
        let mut gone: Vec<_> = self
            .slots
            .insert(key, Slot::Ready { value: Arc::new(value), referenced: false })
            .into_iter()
            .collect();
        self.ready += 1;
        gone.extend(self.evict(capacity));
        gone
    }

    /// Second chance: a ready value used since it was last looked at is requeued once,
    /// the others are evicted, oldest first, until at most `capacity` are left.
    fn evict(&mut self, capacity: usize) -> Vec<Slot<K, V, E>> {
        let mut evicted = Vec::new();
        let mut budget = 2 * self.clock.len() + 1;
        while self.ready > capacity && budget > 0 {
            budget -= 1;
            let Some(key) = self.clock.pop_front() else { break };
            match self.slots.get_mut(&key) {
                Some(Slot::Ready { referenced, .. }) if *referenced => {
                    *referenced = false;
                    self.clock.push_back(key);
                }
                Some(Slot::Ready { .. }) => {
                    evicted.extend(self.slots.remove(&key));
                    self.ready -= 1;
                }
                _ => {}
            }
        }
        evicted
    }
}

impl<K: Hash + Eq, V, E> Inner<K, V, E> {
    /// Empties the key's slot if it still holds computation `node`.
    fn vacate(&self, key: &K, node: &Arc<Node<K>>) {
        let mut table = self.table();
        let removed = match table.slots.get(key) {
            Some(Slot::Pending { node: n, .. }) if Arc::ptr_eq(n, node) => table.slots.remove(key),
            _ => None,
        };
        drop(table);
        drop(removed);
    }
}

impl<K, V, E> Clone for AsyncCache<K, V, E> {
    fn clone(&self) -> Self {
        AsyncCache { inner: Arc::clone(&self.inner) }
    }
}

impl<K, V, E> fmt::Debug for AsyncCache<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncCache").finish_non_exhaustive()
    }
}

impl<K, V> AsyncCache<K, V>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of the async function `f`, which receives a handle to the cache for its
    /// recursive calls.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(AsyncCache<K, V>, K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = V> + Send + 'static,
    {
        AsyncCacheBuilder::default().build(f)
    }

    /// Options: capacity, a backing tier, a Redis tier (as [`Cache::builder`](crate::Cache::builder)).
    pub fn builder() -> AsyncCacheBuilder<K, V> {
        AsyncCacheBuilder::default()
    }

    /// The value for `key`: cached, or computed once (as a tokio task) and shared by every
    /// concurrent caller. Must be called from within a tokio runtime.
    ///
    /// # Panics
    ///
    /// If the computation panicked (the message is passed on), or if the key depends on
    /// itself (a cycle, on one task or across tasks; the message names the chain).
    pub async fn get(&self, key: K) -> V {
        match self.try_get(key).await {
            Ok(value) => value,
            Err(error) => panic!("{error}"),
        }
    }
}

impl<K, V, E> AsyncCache<K, V, E>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// A fallible cache of the async function `f`, which returns `Result<V, Error<E>>`
    /// (wrap your own errors as [`Error::failed`], which names the key for you; inside it,
    /// [`AsyncCache::try_get`] propagates with `?`), as [`Cache::try_new`](crate::Cache::try_new).
    /// Errors are not cached.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use speedup_cache::{AsyncCache, Error};
    ///
    /// let parse = AsyncCache::try_new(|_: AsyncCache<String, i64, String>, s: String| async move {
    ///     s.parse::<i64>().map_err(|e| Error::failed(e.to_string()))
    /// });
    /// assert_eq!(parse.try_get("42".to_string()).await, Ok(42));
    /// let failed = parse.try_get("x".to_string()).await.unwrap_err();
    /// assert_eq!(failed.to_string(), r#"computing "x" failed: invalid digit found in string"#);
    /// assert!(!parse.contains_key(&"x".to_string())); // not cached
    /// # }
    /// ```
    pub fn try_new<F, Fut>(f: F) -> Self
    where
        F: Fn(AsyncCache<K, V, E>, K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<V, Error<E>>> + Send + 'static,
    {
        AsyncCacheBuilder::default().try_build(f)
    }

    /// The value for `key`, or why there is none: the function's error, a panic (caught),
    /// a cycle (on one task or across tasks), or a tier's error. Nothing of that is cached.
    /// Must be called from within a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Failed`], [`Error::Panicked`], [`Error::Cycle`]; with a Redis tier,
    /// [`Error::Unavailable`] and [`Error::Corrupt`].
    ///
    /// # Panics
    ///
    /// If the tokio runtime this call runs under is shut down (nothing can compute the key).
    pub async fn try_get(&self, key: K) -> Result<V, Error<E>> {
        // Computations this call spawned that were cancelled: the runtime it spawned them on
        // shut down. Once may be a future moved from a dead runtime to a live one (then the
        // next spawn runs); twice in a row means this call runs under the dead one.
        let mut cancelled_here = 0;
        loop {
            let Pending { outcome, node, started_here } = match self.lookup(&key) {
                Ok(value) => return Ok(value),
                Err(pending) => pending,
            };
            let me = self.caller();
            let registration = match me.as_ref().map(|me| self.inner.waits.enter(Some(me), None, &node)) {
                Some(Verdict::Cycle(chain)) => {
                    let mut path: Vec<String> = chain.iter().map(|n| describe(&n.key)).collect();
                    path.push(describe(&key));
                    return Err(Error::Cycle { key: describe(&key), path: path.join(" -> ") });
                }
                Some(Verdict::Wait(registration)) => Some(registration),
                // Without stack edges (no tasks share a stack) this cannot happen: waiting is
                // then as safe as it is for a caller outside any computation.
                Some(Verdict::RunHere) | None => None,
            };
            // Leaves the graph however this await ends, cancellation included.
            let _registered = Registered { waits: &self.inner.waits, registration };
            match outcome.await {
                Ok(value) => return Ok(value),
                Err(Failure::Error(error)) => return Err(error),
                // A task this call spawned is cancelled only if the runtime it was spawned
                // on shut down. Try once more, on the runtime polling us now; a second
                // cancellation means that one is shut down too: trying again would spin.
                Err(Failure::Cancelled) if started_here && cancelled_here == 0 => {
                    cancelled_here += 1;
                    self.inner.vacate(&key, &node);
                }
                Err(Failure::Cancelled) if started_here => {
                    self.inner.vacate(&key, &node);
                    panic!(
                        "speedup-cache: cannot compute {}: the tokio runtime this call runs under is shut down",
                        describe(&key)
                    );
                }
                // The runtime that ran it shut down: compute it afresh.
                Err(Failure::Cancelled) => self.inner.vacate(&key, &node),
            }
        }
    }

    /// What the Redis tier did so far, or `None` without one (feature `redis`).
    #[cfg(feature = "redis")]
    pub fn redis_stats(&self) -> Option<crate::RedisStats> {
        self.inner.tiers.redis_stats()
    }

    /// The Redis key that holds (or will hold) the value for `key`, or `None` without a
    /// Redis tier (feature `redis`).
    #[cfg(feature = "redis")]
    pub fn redis_key(&self, key: &K) -> Option<Vec<u8>> {
        self.inner.tiers.redis_key(key)
    }

    /// The computation this call acts for: the one whose task polls it, whichever handle
    /// it goes through (the function's argument or a global). Work the function spawns as
    /// a task of its own (`tokio::spawn`) acts for nobody: the computation need not wait
    /// for it, so a key asked there may need the computation's own key without a cycle.
    fn caller(&self) -> Option<Arc<Node<K>>> {
        let cache = Arc::as_ptr(&self.inner) as *const () as usize;
        COMPUTING
            .try_with(|(owner, node)| (*owner == cache).then(|| Arc::clone(node).downcast::<Node<K>>().ok()))
            .ok()
            .flatten()
            .flatten()
            .filter(|n| !n.is_done())
    }

    /// Starts computing `key` as a task of its own (if it is neither cached nor in flight)
    /// and returns at once; a later `get` awaits that computation. Must be called from
    /// within a tokio runtime, which runs the task: on a current-thread runtime that
    /// nobody drives any more, callers on other runtimes wait until it is driven again or
    /// dropped (then the next `get` computes the key afresh).
    pub fn apply_async(&self, key: K) {
        let _ = self.lookup(&key);
    }

    /// Starts the keys that are neither cached nor in flight, but only when two or more
    /// are missing: a single missing key is computed by the `get` that follows at no more
    /// cost (as [`Cache::batch_async`](crate::Cache::batch_async)). Must be called from
    /// within a tokio runtime.
    pub fn batch_async(&self, keys: impl IntoIterator<Item = K>) {
        // The iterator is user code (it may read the cache): run it before taking the lock.
        let keys: Vec<K> = keys.into_iter().collect();
        let missing: Vec<K> = {
            let table = self.inner.table();
            keys.into_iter().filter(|k| !table.slots.contains_key(k)).collect()
        };
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
    pub fn flush(&self) -> Result<(), crate::FlushError> {
        self.inner.tiers.flush()
    }

    /// Whether a value for `key` is cached.
    pub fn contains_key(&self, key: &K) -> bool {
        matches!(self.inner.table().slots.get(key), Some(Slot::Ready { .. }))
    }

    /// The number of cached values.
    pub fn len(&self) -> usize {
        self.inner.table().ready
    }

    /// Whether no value is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached value, or the computation in flight (started now if there was none).
    fn lookup(&self, key: &K) -> Result<V, Pending<K, V, E>> {
        let found = {
            let mut table = self.inner.table();
            match table.slots.get_mut(key) {
                Some(Slot::Ready { value, referenced }) => {
                    *referenced = true;
                    Some(Ok(Arc::clone(value)))
                }
                Some(Slot::Pending { outcome, node }) => Some(Err(Pending {
                    outcome: outcome.clone(),
                    node: Arc::clone(node),
                    started_here: false,
                })),
                None => None,
            }
        };
        // Neither the start (it takes the lock again) nor the value's `Clone` (user code)
        // runs under the lock.
        match found {
            Some(found) => found.map(|value| V::clone(&value)),
            None => Err(self.start(key)),
        }
    }

    /// Starts the key's computation as a task of the current runtime, unless another caller
    /// got there first (then that computation, or its value).
    fn start(&self, key: &K) -> Pending<K, V, E> {
        // Spawned outside the lock (a runtime that is shutting down drops the task at
        // once, and dropping it takes the lock); it waits for `go` before doing anything.
        let node = Node::new(key.clone(), None);
        let (go, ready) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(compute(Arc::clone(&self.inner), key.clone(), Arc::clone(&node), ready));
        let node_key = key.clone();
        let outcome = async move {
            match task.await {
                Ok(outcome) => outcome,
                Err(e) if e.is_cancelled() => Err(Failure::Cancelled),
                Err(e) => Err(Failure::Error(Error::Panicked {
                    key: describe(&node_key),
                    message: format!("the computation's task failed: {e}"),
                })),
            }
        }
        .boxed()
        .shared();
        let mut table = self.inner.table();
        let found = match table.slots.get_mut(key) {
            // Settled meanwhile: hand it over as a computation that is over.
            Some(Slot::Ready { value, referenced }) => {
                *referenced = true;
                let value = Arc::clone(value);
                let outcome = async move { Ok(V::clone(&value)) }.boxed().shared();
                Pending { outcome, node, started_here: false }
            }
            Some(Slot::Pending { outcome, node }) => {
                Pending { outcome: outcome.clone(), node: Arc::clone(node), started_here: false }
            }
            None => {
                table
                    .slots
                    .insert(key.clone(), Slot::Pending { outcome: outcome.clone(), node: Arc::clone(&node) });
                drop(table);
                // The slot is ours: let the task run. (Losing the race above drops `go`,
                // and the task ends without doing anything.)
                let _ = go.send(());
                return Pending { outcome, node, started_here: true };
            }
        };
        drop(table);
        found
    }
}

/// Options for an [`AsyncCache`]: capacity, a backing tier, a Redis tier.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use speedup_cache::AsyncCache;
///
/// let squares = AsyncCache::builder()
///     .capacity(1_000)
///     .build(|_: AsyncCache<u64, u64>, n: u64| async move { n * n });
/// assert_eq!(squares.get(12).await, 144);
/// # }
/// ```
pub struct AsyncCacheBuilder<K, V> {
    capacity: Option<usize>,
    tiers: Tiers<K, V>,
}

impl<K, V> Default for AsyncCacheBuilder<K, V> {
    fn default() -> Self {
        AsyncCacheBuilder { capacity: None, tiers: Tiers::default() }
    }
}

impl<K, V> fmt::Debug for AsyncCacheBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncCacheBuilder")
            .field("capacity", &self.capacity)
            .field("tiers", &self.tiers)
            .finish()
    }
}

impl<K, V> AsyncCacheBuilder<K, V>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Keeps at most `n` values (at least 1), evicting the least recently used first
    /// (second chance). Keys being computed are not counted and never evicted. Evicted
    /// values are dropped after the lock is released, so a value's `Drop` may use the
    /// cache. Default: unbounded.
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = Some(n.max(1));
        self
    }

    /// Looks values up in (and writes computed values to) a second tier, for example a
    /// `speedup_paged::DiskDict` (feature `persist`), so results survive restarts. Its
    /// calls run on the computation's task: a `DiskDict` reads from its mapping and buffers
    /// its writes until [`AsyncCache::flush`].
    pub fn backing(mut self, backing: impl Backing<K, V> + 'static) -> Self {
        self.tiers.set_backing(Box::new(backing));
        self
    }

    /// Builds the cache of the async function `f`.
    pub fn build<F, Fut>(self, f: F) -> AsyncCache<K, V>
    where
        F: Fn(AsyncCache<K, V>, K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = V> + Send + 'static,
    {
        self.build_with(Box::new(move |cache, key| f(cache, key).map(Ok).boxed()))
    }

    /// Builds a fallible cache of `f` (see [`AsyncCache::try_new`]).
    pub fn try_build<E, F, Fut>(self, f: F) -> AsyncCache<K, V, E>
    where
        E: Send + Sync + 'static,
        F: Fn(AsyncCache<K, V, E>, K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<V, Error<E>>> + Send + 'static,
    {
        self.build_with(Box::new(move |cache, key| f(cache, key).boxed()))
    }

    fn build_with<E>(self, func: Box<AsyncFunc<K, V, E>>) -> AsyncCache<K, V, E> {
        AsyncCache {
            inner: Arc::new(Inner {
                table: Mutex::new(Table { slots: HashMap::default(), clock: VecDeque::new(), ready: 0 }),
                func,
                waits: Waits::default(),
                capacity: self.capacity.unwrap_or(usize::MAX),
                tiers: self.tiers,
            }),
        }
    }
}

/// A computation a call awaits.
struct Pending<K, V, E> {
    outcome: SharedOutcome<V, E>,
    node: Arc<Node<K>>,
    /// Whether this call spawned it (on the runtime it runs under).
    started_here: bool,
}

/// Removes a wait's edges from the graph when the wait ends or is cancelled.
struct Registered<'a, K> {
    waits: &'a Waits<K>,
    registration: Option<crate::waits::Registration>,
}

impl<K> Drop for Registered<'_, K> {
    fn drop(&mut self) {
        if let Some(registration) = self.registration.take() {
            self.waits.leave(registration);
        }
    }
}

/// Vacates the key if the task is dropped before it ends (its runtime shut down), so the
/// next `get` computes it again instead of finding a computation that will never end.
struct Vacate<K: Hash + Eq, V, E> {
    inner: Arc<Inner<K, V, E>>,
    key: Option<K>,
    node: Arc<Node<K>>,
}

impl<K: Hash + Eq, V, E> Drop for Vacate<K, V, E> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.inner.vacate(&key, &self.node);
        }
        Waits::finished(&self.node);
    }
}

/// The task of one computation: the shared tier, then the function (called here, never
/// under a lock), then the slot.
async fn compute<K, V, E>(
    inner: Arc<Inner<K, V, E>>,
    key: K,
    node: Arc<Node<K>>,
    go: tokio::sync::oneshot::Receiver<()>,
) -> Outcome<V, E>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    if go.await.is_err() {
        return Err(Failure::Cancelled); // another caller's computation won the slot
    }
    let mut vacate = Vacate { inner: Arc::clone(&inner), key: Some(key.clone()), node: Arc::clone(&node) };
    let outcome = run(&inner, &key, &node).await;
    let settled = outcome.as_ref().ok().cloned();
    let gone = inner.table().settle(key.clone(), &node, settled, inner.capacity);
    crate::error::drop_evicted(gone);
    vacate.key = None; // the slot is settled
    drop(vacate);
    outcome
}

async fn run<K, V, E>(inner: &Arc<Inner<K, V, E>>, key: &K, node: &Arc<Node<K>>) -> Outcome<V, E>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    let claim = match lookup(inner, key).await {
        Ok(Lookup::Found(value)) => return Ok(value),
        Ok(Lookup::Compute(claim)) => claim,
        Err(error) => return Err(Failure::Error(error)),
    };
    let span = tracing::debug_span!("speedup_cache::compute", key = ?key);
    let child = AsyncCache { inner: Arc::clone(inner) };
    // The task knows its computation: calls polled in it act for it (see `caller`).
    let computing =
        || (Arc::as_ptr(inner) as *const () as usize, Arc::clone(node) as Arc<dyn Any + Send + Sync>);
    let started = COMPUTING.sync_scope(computing(), || {
        std::panic::catch_unwind(AssertUnwindSafe(|| (inner.func)(child, key.clone())))
    });
    let computed = match started {
        Ok(future) => {
            use tracing::Instrument;
            COMPUTING.scope(computing(), AssertUnwindSafe(future).catch_unwind()).instrument(span).await
        }
        Err(payload) => Err(payload),
    };
    match computed {
        Ok(Ok(value)) => {
            // Publishing is one bounded round trip (the configured timeout); dropping the
            // claim after a failure releases its lease the same way.
            inner.tiers.keep(key, &value, claim);
            Ok(value)
        }
        Ok(Err(error)) => Err(Failure::Error(error.for_key(key))),
        Err(payload) => {
            Err(Failure::Error(Error::Panicked { key: describe(key), message: panic_message(&*payload) }))
        }
    }
}

/// Asks the tiers for the key. The shared tier may wait for another worker, so with one
/// the lookup runs on tokio's blocking pool, not on a runtime thread.
async fn lookup<K, V, E>(inner: &Arc<Inner<K, V, E>>, key: &K) -> Result<Lookup<V>, Error<E>>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    let answer = if inner.tiers.may_block() {
        let (inner, asked) = (Arc::clone(inner), key.clone());
        match tokio::task::spawn_blocking(move || inner.tiers.lookup(&asked)).await {
            Ok(answer) => answer,
            Err(join) => {
                let message =
                    if join.is_panic() { panic_message(&*join.into_panic()) } else { join.to_string() };
                return Err(Error::Panicked { key: describe(key), message });
            }
        }
    } else {
        inner.tiers.lookup(key)
    };
    answer.map_err(|error| error.for_key(key))
}

#[cfg(feature = "redis")]
impl<K, V> AsyncCache<K, V>
where
    K: speedup_paged::Storable + Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: speedup_paged::Storable + Clone + Send + Sync + 'static,
{
    /// An async cache of `f` that shares its values through Redis (features `tokio` and
    /// `redis`), with the same protocol as [`CacheBuilder::redis`](crate::CacheBuilder::redis): each key is computed
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
    pub fn with_redis<F, Fut>(config: crate::RedisConfig, f: F) -> Self
    where
        F: Fn(crate::AsyncCache<K, V>, K) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = V> + Send + 'static,
    {
        Self::builder().redis(config).build(f)
    }
}

#[cfg(feature = "redis")]
impl<K, V> AsyncCacheBuilder<K, V>
where
    K: speedup_paged::Storable + Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    V: speedup_paged::Storable + Clone + Send + Sync + 'static,
{
    /// Shares values through Redis (feature `redis`), as
    /// [`CacheBuilder::redis`](crate::CacheBuilder::redis) does: each key is computed once
    /// in the cluster. With a backing tier too, the order is memory, backing, Redis, the
    /// function.
    pub fn redis(mut self, config: crate::RedisConfig) -> Self {
        self.tiers.set_shared(Arc::new(crate::redis::RedisTier::<K, V>::start(config)));
        self
    }
}

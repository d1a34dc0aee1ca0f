//! [`AsyncCache`]: the same single-flight memoization where computations are futures.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::error::{Error, describe, panic_message};
use crate::tier::{Acquired, Lease, SharedTier, TierError};

type Outcome<V> = Result<V, Arc<str>>;
type SharedOutcome<V> = Shared<BoxFuture<'static, Outcome<V>>>;
type AsyncFunc<K, V> = dyn Fn(AsyncCache<K, V>, K) -> BoxFuture<'static, V> + Send + Sync;

/// A memoizing cache of an async function, on tokio.
///
/// Each key's computation runs once, as a spawned tokio task, and every caller awaits the
/// same shared outcome (`futures::future::Shared` semantics): a caller that stops polling,
/// or is dropped, does not stall the others or cancel the computation. A panic is not
/// cached. A key that awaits itself through the handle its computation received panics
/// with a message naming the key instead of hanging.
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
pub struct AsyncCache<K, V> {
    inner: Arc<Inner<K, V>>,
    /// The keys whose computations led to this handle, innermost first.
    chain: Option<Arc<Chain<K>>>,
}

struct Inner<K, V> {
    slots: Mutex<HashMap<K, Slot<V>, ahash::RandomState>>,
    func: Box<AsyncFunc<K, V>>,
    /// The tier shared with other workers (Redis), consulted before computing.
    shared: Option<Arc<dyn SharedTier<K, V>>>,
}

struct Chain<K> {
    key: K,
    parent: Option<Arc<Chain<K>>>,
}

enum Slot<V> {
    Ready(V),
    Pending(SharedOutcome<V>),
}

impl<K, V> Clone for AsyncCache<K, V> {
    fn clone(&self) -> Self {
        AsyncCache { inner: Arc::clone(&self.inner), chain: self.chain.clone() }
    }
}

impl<K, V> fmt::Debug for AsyncCache<K, V> {
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
        Self::with_tier(f, None)
    }

    pub(crate) fn with_tier<F, Fut>(f: F, shared: Option<Arc<dyn SharedTier<K, V>>>) -> Self
    where
        F: Fn(AsyncCache<K, V>, K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = V> + Send + 'static,
    {
        AsyncCache {
            inner: Arc::new(Inner {
                slots: Mutex::new(HashMap::default()),
                func: Box::new(move |cache, key| f(cache, key).boxed()),
                shared,
            }),
            chain: None,
        }
    }

    /// What the Redis tier did so far, or `None` without one (feature `redis`).
    #[cfg(feature = "redis")]
    pub fn redis_stats(&self) -> Option<crate::RedisStats> {
        self.inner.shared.as_ref().map(|s| s.stats())
    }

    /// The Redis key that holds (or will hold) the value for `key`, or `None` without a
    /// Redis tier (feature `redis`).
    #[cfg(feature = "redis")]
    pub fn redis_key(&self, key: &K) -> Option<Vec<u8>> {
        self.inner.shared.as_ref().map(|s| s.key_name(key))
    }

    /// The value for `key`: cached, or computed once (as a tokio task) and shared by every
    /// concurrent caller. Must be called from within a tokio runtime.
    ///
    /// # Panics
    ///
    /// If the computation panicked (the message is passed on), or if the key depends on
    /// itself through this handle's chain of computations.
    pub async fn get(&self, key: K) -> V {
        let mut link = self.chain.as_deref();
        while let Some(node) = link {
            if node.key == key {
                panic!("cycle: {} depends on itself (awaiting it would never finish)", describe(&key));
            }
            link = node.parent.as_deref();
        }
        let pending = {
            let mut slots = self.inner.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match slots.get(&key) {
                Some(Slot::Ready(v)) => return v.clone(),
                Some(Slot::Pending(shared)) => shared.clone(),
                None => {
                    let shared = self.start(key.clone());
                    slots.insert(key, Slot::Pending(shared.clone()));
                    shared
                }
            }
        };
        match pending.await {
            Ok(v) => v,
            Err(message) => panic!("{message}"),
        }
    }

    /// Starts computing `key` in the background (if it is neither cached nor in flight) and
    /// returns at once.
    pub fn spawn(&self, key: K) {
        let mut slots = self.inner.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let std::collections::hash_map::Entry::Vacant(slot) = slots.entry(key) {
            let shared = self.start(slot.key().clone());
            slot.insert(Slot::Pending(shared));
        }
    }

    /// Whether a value for `key` is cached.
    pub fn contains_key(&self, key: &K) -> bool {
        let slots = self.inner.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        matches!(slots.get(key), Some(Slot::Ready(_)))
    }

    /// The number of cached values.
    pub fn len(&self) -> usize {
        let slots = self.inner.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.values().filter(|s| matches!(s, Slot::Ready(_))).count()
    }

    /// Whether no value is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Spawns the computation of `key`; the task publishes the value (or vacates the key
    /// after a panic) whether or not anybody still awaits it.
    fn start(&self, key: K) -> SharedOutcome<V> {
        let child = AsyncCache {
            inner: Arc::clone(&self.inner),
            chain: Some(Arc::new(Chain { key: key.clone(), parent: self.chain.clone() })),
        };
        let computation = (self.inner.func)(child, key.clone());
        let inner = Arc::clone(&self.inner);
        let task = tokio::spawn(async move {
            let (stored, lease) = match acquire(&inner.shared, &key).await {
                Ok(found) => found,
                Err(message) => {
                    let mut slots = inner.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    slots.remove(&key);
                    return Err(message);
                }
            };
            let outcome = match stored {
                Some(value) => Ok(value),
                None => AssertUnwindSafe(computation).catch_unwind().await,
            };
            if let (Some(lease), Ok(value)) = (lease, &outcome) {
                // One bounded round trip (the configured timeout); dropping the lease after
                // a panic releases it the same way.
                lease.publish(value);
            }
            let mut slots = inner.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match outcome {
                Ok(value) => {
                    slots.insert(key, Slot::Ready(value.clone()));
                    Ok(value)
                }
                Err(payload) => {
                    slots.remove(&key);
                    Err(Arc::from(format!(
                        "computing {} panicked: {}",
                        describe(&key),
                        panic_message(&*payload)
                    )))
                }
            }
        });
        async move { task.await.unwrap_or_else(|e| Err(Arc::from(format!("the computation's task ended: {e}")))) }
            .boxed()
            .shared()
    }
}

/// Asks the shared tier (if any) for the key's value or a lease. The tier may wait for
/// another worker, so it runs on tokio's blocking pool, not on a runtime thread.
async fn acquire<K, V>(
    shared: &Option<Arc<dyn SharedTier<K, V>>>,
    key: &K,
) -> Result<(Option<V>, Option<Box<dyn Lease<V>>>), Arc<str>>
where
    K: Clone + fmt::Debug + Send + Sync + 'static,
    V: Send + 'static,
{
    let Some(tier) = shared.clone() else { return Ok((None, None)) };
    let asked = key.clone();
    let answer = tokio::task::spawn_blocking(move || tier.acquire(&asked)).await;
    let error = match answer {
        Ok(Ok(Acquired::Value(value))) => return Ok((Some(value), None)),
        Ok(Ok(Acquired::Lease(lease))) => return Ok((None, Some(lease))),
        Ok(Ok(Acquired::Unshared)) => return Ok((None, None)),
        Ok(Err(TierError::Unavailable(message))) => {
            Error::<std::convert::Infallible>::Unavailable { key: describe(key), message }
        }
        Ok(Err(TierError::Corrupt(message))) => Error::Corrupt { key: describe(key), message },
        Err(join) => Error::Panicked { key: describe(key), message: join.to_string() },
    };
    Err(Arc::from(error.to_string()))
}

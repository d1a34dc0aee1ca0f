//! A concurrent memoizing cache whose recursive sub-calls are evaluated in parallel, once
//! per key, without deadlocks.
//!
//! This is PySpeedup's `Cache` ("maintains multiple recursive calls stably", with
//! `apply_async` and `batch_async`), rebuilt without its failure modes: the original ran
//! one OS process per call, polled every 100 ms, could compute a key twice, and hung for
//! ever after the function raised once.
//!
//! ```
//! use speedup_cache::Cache;
//!
//! let fib = Cache::new(|fib: &Cache<u64, u64>, n: u64| -> u64 {
//!     if n < 2 { return 1; }
//!     fib.get(n - 1).wrapping_add(fib.get(n - 2))
//! });
//! assert_eq!(fib.get(5), 8);
//! assert_eq!(fib.get(90), 4660046610375530309);
//! assert!(fib.contains_key(&89));
//! ```
//!
//! # Guarantees
//!
//! - **Single flight.** Each key's function body runs at most once while its value is
//!   cached, however many threads ask at once. Waiters block on a condition variable; they
//!   never spin. (One exception, counted by [`Cache::reruns`]: with work-stealing inside
//!   the function, see below.)
//! - **No lock around user code.** Shard locks are held only to look up or publish a slot;
//!   evicted values are dropped after the lock is released.
//! - **Help, don't wait.** A thread that needs a key that is queued on the pool but not
//!   started runs it itself, so a pool of one thread, or a pool whose every worker waits,
//!   cannot deadlock. A rayon worker that waits for a key runs other jobs of its pool
//!   meanwhile.
//! - **Cycles are errors, work-stealing is not.** Cycle detection follows computations,
//!   not threads: the handle a function receives carries the identity of its
//!   computation into every rayon job (`join`, `scope`, `par_iter`) it is used in. A key
//!   that depends on itself, on one thread, across threads or through rayon jobs, makes
//!   `get` panic with a message naming the whole chain (`cycle: 10 depends on itself
//!   (through 10 -> 11 -> 12 -> 10)`), and `try_get` return [`Error::Cycle`], instead of
//!   hanging. When work-stealing stacks a job on top of a computation that the job needs
//!   (a thread waiting in `join` may steal it), that is no cycle but a deadlock of the
//!   thread's own stack: the job computes the key itself and hands the value to the
//!   other waiters (the key's body then runs twice; [`Cache::reruns`] counts it). Some
//!   such stacks are invisible to the cache (a rayon job that never calls it), so a rayon
//!   worker that has waited for a key with nothing else to run (50 ms when the function
//!   hands work to rayon, 500 ms otherwise) computes it itself too: on a rayon pool, a key
//!   slower than that may run twice. Plain threads never do.
//! - **Failures are not cached.** A panic reaches the caller that triggered the computation
//!   and every waiter; the key is vacant again and the next `get` recomputes it.
//! - **Deep recursion.** Computations grow the stack on demand (`stacker`), so cold
//!   `fib(100_000)` does not overflow a default thread stack.
//! - **Bounded pool.** `apply_async` / `batch_async` run on rayon's pool (or one of
//!   [`CacheBuilder::threads`] threads), never one thread per call.
//! - **Hit path.** One shared shard lock, one hash lookup, one clone of `V` (use cheap
//!   clones, e.g. `Arc`, for big values).
//!
//! Optional: a capacity bound (at most `n` values, on any number of cores) with
//! second-chance (CLOCK) eviction that never evicts a key in flight
//! ([`CacheBuilder::capacity`]); a second tier that survives restarts
//! ([`CacheBuilder::backing`], with a `speedup_paged::DiskDict` under feature `persist`); an
//! async variant on tokio, `AsyncCache` (feature `tokio`); a tier shared by a cluster
//! through Redis, so that each key is computed once on all machines together
//! (`CacheBuilder::redis` and, with `tokio` too, `AsyncCache::with_redis`; feature `redis`).
//!
//! # The Redis tier (feature `redis`)
//!
//! A local miss looks in Redis, then computes. Before computing, a worker takes a lease on
//! the key in Redis (`SET <key>:lease <token> NX PX <ttl>`), refreshed while it computes;
//! other workers wait for the value, woken by a message on the cache's pub/sub channel (with
//! a bounded poll as the fallback). A worker that dies stops refreshing; its lease expires
//! and a waiting worker takes over. A lease key that never expires (not one of ours) is
//! reported as [`Error::Corrupt`] naming it, not waited for. Values are rkyv archives
//! behind a checksummed header that also carries a hash of the key they were written for,
//! validated on every read (a value copied under another key is `Corrupt`); keys are
//! namespaced by cache name, key and value types and a version. `RedisConfig::timeout`
//! bounds each call to Redis, reconnection included. When Redis is down, the cache computes locally and logs through `tracing`
//! (`FailMode::Open`, the default) or refuses with [`Error::Unavailable`]
//! (`FailMode::Closed`).
//!
//! ```no_run
//! # #[cfg(feature = "redis")] {
//! use speedup_cache::{Cache, RedisConfig};
//!
//! let config = RedisConfig::new("redis://127.0.0.1:6379/", "factor").unwrap().version(1);
//! let cache = Cache::builder().redis(config).build(|_: &Cache<u64, u64>, n: u64| n * n);
//! cache.get(7);
//! let stats = cache.redis_stats().unwrap();
//! println!("computed {} keys, got {} from other workers", stats.computed, stats.fetched);
//! # }
//! ```
//!
//! Not covered: cycles that span processes (a key whose computation needs itself through
//! another worker waits on leases that stay alive; cycles within one process are detected
//! as usual), and Redis Cluster (the scripts touch a value key and its lease key, which
//! would need one hash slot).

#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod announce;
mod backing;
mod cache;
mod error;
mod flight;
#[cfg(feature = "tokio")]
mod future;
#[cfg(feature = "redis")]
mod shared;
mod sync;
mod tier;
mod waits;

pub use backing::Backing;
pub use cache::{Cache, CacheBuilder};
pub use error::Error;
#[cfg(feature = "tokio")]
pub use future::AsyncCache;
#[cfg(feature = "redis")]
pub use shared::{FailMode, RedisConfig, RedisConfigError, RedisStats};

/// Cores available to this process (1 under loom).
fn cores() -> usize {
    if cfg!(speedup_loom) { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get()) }
}

#[cfg(test)]
mod static_checks {
    const fn assert_send_sync<T: Send + Sync>() {}
    const _: () = assert_send_sync::<crate::Cache<u64, String>>();
}

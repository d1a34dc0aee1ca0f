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
//! Your own types work as keys and values: keys need `Hash + Eq + Clone + Debug`, values
//! `Clone` (an `Arc` keeps the hit path's clone cheap for big ones).
//!
//! ```
//! use std::sync::Arc;
//! use speedup_cache::Cache;
//!
//! #[derive(Debug, Clone, PartialEq, Eq, Hash)]
//! struct Route { from: String, to: String }
//!
//! #[derive(Debug)]
//! struct Plan { stops: Vec<String> }
//!
//! let plans = Cache::new(|_: &Cache<Route, Arc<Plan>>, r: Route| {
//!     Arc::new(Plan { stops: vec![r.from, r.to] })
//! });
//! let plan = plans.get(Route { from: "Oslo".into(), to: "Rome".into() });
//! assert_eq!(plan.stops, ["Oslo", "Rome"]);
//! ```
//!
//! With feature `persist`, results survive restarts in a `speedup_paged::DiskDict` (the
//! value type is stored with rkyv: mark your own structs `#[speedup_paged::storable]`):
//!
//! ```
//! # #[cfg(feature = "persist")] {
//! use std::sync::RwLock;
//! use speedup_cache::Cache;
//! use speedup_paged::{DiskDict, Options};
//!
//! #[speedup_paged::storable]
//! #[derive(Debug, Clone, PartialEq)]
//! struct Stats { steps: u32, peak: u64 }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let options = Options::new().location(dir.path());
//! let collatz = |dict: DiskDict<u64, Stats>| {
//!     Cache::builder().backing(RwLock::new(dict)).build(|c: &Cache<u64, Stats>, n: u64| {
//!         if n == 1 { return Stats { steps: 0, peak: 1 }; }
//!         let next = c.get(if n % 2 == 0 { n / 2 } else { 3 * n + 1 });
//!         Stats { steps: next.steps + 1, peak: next.peak.max(n) }
//!     })
//! };
//! let first = collatz(DiskDict::open_with("collatz", &options).unwrap());
//! assert_eq!(first.get(27), Stats { steps: 111, peak: 9232 });
//! first.flush().unwrap();
//! drop(first);
//! // A new process (here: a new cache) finds the values on disk instead of computing.
//! let again = collatz(DiskDict::open_with("collatz", &options).unwrap());
//! assert_eq!(again.get(27).peak, 9232);
//! # }
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
//!   meanwhile, in its outermost wait only: a wait nested in one of those jobs sleeps
//!   (jobs that wait and run jobs again would pile up on its stack without bound).
//! - **Cycles are errors, work-stealing is not.** Cycle detection follows computations,
//!   not threads: the handle a function receives carries the identity of its
//!   computation into every rayon job (`join`, `scope`, `par_iter`) it is used in. A key
//!   that depends on itself, on one thread, across threads or through rayon jobs, makes
//!   `get` panic with a message naming the whole chain (`cycle: 10 depends on itself
//!   (through 10 -> 11 -> 12 -> 10)`), and `try_get` return [`Error::Cycle`], instead of
//!   hanging. When work-stealing stacks a job on top of a computation that the job needs
//!   (a thread waiting in `join` may steal it), that is no cycle but a deadlock of the
//!   thread's own stack: the job computes the key itself and hands the value to the
//!   other waiters (the key's body then runs once more; [`Cache::reruns`] counts it). Some
//!   such stacks are invisible to the cache (a rayon job that never calls it), so a rayon
//!   worker that has waited for a key with nothing else to run (50 ms when the function
//!   hands work to rayon, 500 ms otherwise) computes it itself too: on a rayon pool, a key
//!   slower than that may run more than once. Under heavy sharing (16 threads fanning out
//!   with rayon over shared keys, on pools of 1 to 8 threads) a hostile review measured
//!   1.0 to 1.5 runs per key on average, and up to 7 for one key. Plain threads never
//!   rerun.
//! - **Failures are not cached.** A panic reaches the caller that triggered the computation
//!   and every waiter; the key is vacant again and the next `get` recomputes it. The same
//!   holds for a key computed once more as above: its failure (a panic, an error, a cycle)
//!   reaches the key's waiters, whose computation may have been fine.
//! - **Deep recursion.** Computations grow the stack on demand (`stacker`), so cold
//!   `fib(100_000)` does not overflow a default thread stack.
//! - **Bounded pool.** `apply_async` / `batch_async` run on rayon's pool (or one of
//!   [`CacheBuilder::threads`] threads), never one thread per call.
//! - **Hit path.** One hash lookup and one clone of `V` (use cheap clones, e.g. `Arc`, for
//!   big values) under the shard's read lock, which is biased towards readers: while the
//!   shard is read-mostly, a hit writes only to a slot of its own thread, not to a word
//!   that every reader of the shard shares.
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
//!
//! # Limits
//!
//! - **rayon under heavy sharing.** When many threads at once ask for keys whose functions
//!   fan out with rayon over keys they share, rayon's `join` stacks jobs of other
//!   computations on top of computations those jobs need, and each such stack is broken by
//!   computing a key again ([`Cache::reruns`]), after a wait of up to 50 ms. Measured on 2
//!   cores (`tests/sync_hostile.rs`), from 16 threads: with a fan-out of 4 (`par_iter`
//!   over `n-1, n-2, n/2, n/3`), about 1.05 runs of each key's body; with a fan-out of 50
//!   over 201 keys, about 20 reruns and 0.3 to 0.5 s a round (mostly such waits), where
//!   one thread takes milliseconds; a genuine cycle among such keys is reported. rayon's
//!   own maintainers advise against blocking inside jobs for this reason. Fan out from one
//!   top-level call, or use `batch_async` (which queues on the pool without blocking): then
//!   each body runs once, with no waits.
//! - **Cycles through plain threads the function joins** are not seen (see [`Cache`]).
//! - **`AsyncCache`: cycles through tasks the function spawns and awaits** are not seen: a
//!   `tokio::spawn`ed task acts for no computation, so if it asks for the key that awaits
//!   it, both wait for ever. Await recursive calls in the computation's own task
//!   (`tokio::join!`, `select!`, `FuturesUnordered`); cycles between the computations
//!   themselves, on any tasks, are reported.
//! - **Cycles through a global handle on rayon workers.** A function that reaches the
//!   cache through a clone kept in a global (not its argument) and runs on rayon workers
//!   (asked from a `par_iter`, or on the cache's pool) gets its cycles reported only on
//!   plain threads; on a worker such a cycle computes its keys again and again. Use the
//!   argument handle inside the function.
//! - **`V::clone` runs under the shard's read lock**: a `Clone` impl must not call the
//!   cache.
//!
//! # Features
#![doc = document_features::document_features!()]
//!

#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod announce;
mod backing;
mod biased;
mod cache;
mod error;
mod flight;
#[cfg(feature = "tokio")]
mod future;
#[cfg(feature = "redis")]
mod redis;
mod sync;
mod tier;
mod tiers;
mod waits;

pub use backing::Backing;
pub use cache::{Cache, CacheBuilder};
pub use error::{BoxError, Error, FlushError, Result};
#[cfg(feature = "tokio")]
pub use future::{AsyncCache, AsyncCacheBuilder};
#[cfg(feature = "redis")]
pub use redis::{FailMode, RedisConfig, RedisConfigError, RedisStats};

/// Cores available to this process (1 under loom).
fn cores() -> usize {
    if cfg!(speedup_loom) { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get()) }
}

#[cfg(test)]
mod static_checks {
    const fn assert_send_sync<T: Send + Sync>() {}
    const _: () = assert_send_sync::<crate::Cache<u64, String>>();
}

//! AsyncCache against user code that reads the cache from places the cache calls it (an
//! iterator, a value's `Clone`, a value's `Drop`) and against runtimes that are gone or
//! idle: found in a hostile review, each once a deadlock, a spin or a wrong failure. Every
//! test runs under a deadline, beside the sync `Cache` where it has the same case.
#![cfg(feature = "tokio")]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use speedup_cache::{AsyncCache, Cache};
use speedup_test_support::within;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The iterator given to `batch_async` may read the cache (it runs before the lock is taken).
#[test]
fn batch_async_with_an_iterator_that_reads_the_cache() {
    let sync = within(10, || {
        let cache = Cache::new(|_: &Cache<u64, u64>, k: u64| k + 1);
        let c2 = cache.clone();
        cache.batch_async((0..4u64).filter(move |k| !c2.contains_key(k)));
        cache.get(3)
    });
    assert_eq!(sync, 4, "control: the sync Cache");
    let r = within(10, || {
        rt().block_on(async {
            let cache = AsyncCache::new(|_: AsyncCache<u64, u64>, k: u64| async move { k + 1 });
            let c2 = cache.clone();
            cache.batch_async((0..4u64).filter(move |k| !c2.contains_key(k)));
            cache.get(3).await
        })
    });
    assert_eq!(r, 4, "AsyncCache::batch_async");
}

// A value's `Clone` may read the cache: a hit clones after the lock is released.
static ASYNC: OnceLock<AsyncCache<u64, Probe>> = OnceLock::new();
#[derive(Debug)]
struct Probe(u64);
impl Clone for Probe {
    fn clone(&self) -> Self {
        if let Some(c) = ASYNC.get() {
            let _ = c.len();
        }
        Probe(self.0)
    }
}
static SYNC: OnceLock<Cache<u64, SProbe>> = OnceLock::new();
#[derive(Debug)]
struct SProbe(u64);
impl Clone for SProbe {
    fn clone(&self) -> Self {
        if let Some(c) = SYNC.get() {
            let _ = c.len();
        }
        SProbe(self.0)
    }
}
#[test]
fn a_value_whose_clone_reads_the_cache() {
    let sync = within(10, || {
        let c = SYNC.get_or_init(|| Cache::new(|_: &Cache<u64, SProbe>, k: u64| SProbe(k)));
        c.get(1);
        c.get(1).0
    });
    assert_eq!(sync, 1, "control: the sync Cache");
    let r = within(10, || {
        rt().block_on(async {
            let c = ASYNC
                .get_or_init(|| AsyncCache::new(|_: AsyncCache<u64, Probe>, k: u64| async move { Probe(k) }));
            c.get(1).await;
            c.get(1).await.0
        })
    });
    assert_eq!(r, 1, "AsyncCache hit");
}

// A panic in an evicted value's `Drop` is logged, not passed on to the call whose new value
// pushed it out (that value is cached all the same).
#[derive(Clone, Debug)]
struct Bomb(u64, Arc<()>);
impl Drop for Bomb {
    fn drop(&mut self) {
        if self.0 == 0 && Arc::strong_count(&self.1) == 1 && !std::thread::panicking() {
            panic!("drop of 0 exploded");
        }
    }
}
#[test]
fn a_panicking_drop_of_an_evicted_value_does_not_fail_another_key() {
    let r = within(20, || {
        rt().block_on(async {
            let cache = AsyncCache::builder()
                .capacity(1)
                .build(|_: AsyncCache<u64, Bomb>, k: u64| async move { Bomb(k, Arc::new(())) });
            drop(cache.get(0).await);
            let c = cache.clone();
            let got = tokio::spawn(async move { c.get(1).await.0 }).await.map_err(|e| e.to_string());
            (got, cache.contains_key(&1))
        })
    });
    let (got, cached) = r;
    assert_eq!(got, Ok(1), "get(1) failed although its value was computed");
    assert!(cached);
}

#[test]
fn a_panicking_drop_of_an_evicted_value_does_not_fail_the_sync_cache_either() {
    let r = within(20, || {
        let cache = Cache::builder().capacity(1).build(|_: &Cache<u64, Bomb>, k: u64| Bomb(k, Arc::new(())));
        drop(cache.get(0));
        let got = cache.get(1).0;
        (got, cache.contains_key(&1), cache.contains_key(&0))
    });
    assert_eq!(r, (1, true, false));
}

/// Under the handle of a runtime that was shut down, `get` panics saying so (it once spun:
/// spawn, cancelled, vacate, spawn, ...), and the key stays free for a live runtime.
#[test]
fn get_under_the_handle_of_a_dead_runtime_panics_instead_of_spinning() {
    let r = within(5, || {
        let cache = AsyncCache::new(|_: AsyncCache<u64, u64>, k: u64| async move { k });
        let dead_rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let handle = dead_rt.handle().clone();
        drop(dead_rt);
        let dead = {
            let _entered = handle.enter();
            let c = cache.clone();
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| futures::executor::block_on(c.get(1))))
        };
        let message = dead.expect_err("a get under a dead runtime returned");
        let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("shut down"), "{message}");
        rt().block_on(cache.get(1))
    });
    assert_eq!(r, 1, "the key is computed on a live runtime afterwards");
}

/// A computation started on a current-thread runtime runs when that runtime is driven
/// (tokio's semantics, documented on `apply_async`): until then other runtimes wait for it,
/// and once it is dropped the next `get` computes the key afresh.
#[test]
fn a_computation_parked_on_an_idle_current_thread_runtime_waits_for_it_or_its_drop() {
    let r = within(20, || {
        let cache = AsyncCache::new(|_: AsyncCache<u64, u64>, k: u64| async move { k });
        let idle = tokio::runtime::Builder::new_current_thread().build().unwrap();
        idle.block_on(async { cache.apply_async(1) });
        let live = rt();
        let waited =
            live.block_on(async { tokio::time::timeout(Duration::from_millis(300), cache.get(1)).await });
        drop(idle);
        (waited.is_err(), live.block_on(cache.get(1)))
    });
    assert_eq!(r, (true, 1));
}

/// A `get` future that started the computation on a runtime, was moved when that runtime
/// shut down, and is then awaited on a live runtime computes the key there (it panicked
/// with "runtime ... shut down" although the runtime polling it was alive).
#[test]
fn a_get_moved_from_a_dead_runtime_to_a_live_one_computes_there() {
    let r = within(20, || {
        let cache = AsyncCache::try_new(|_: AsyncCache<u64, u64, ()>, k: u64| async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(k + 1)
        });
        let first = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let c = cache.clone();
        let mut pending = Box::pin(async move { c.try_get(1).await });
        first.block_on(async {
            let _ = tokio::time::timeout(Duration::from_millis(20), &mut pending).await;
        });
        drop(first);
        let second = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        second.block_on(async move { tokio::spawn(pending).await.map_err(|e| e.to_string()) })
    });
    assert_eq!(r, Ok(Ok(2)));
}

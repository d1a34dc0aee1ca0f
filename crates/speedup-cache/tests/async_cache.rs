//! AsyncCache: shared evaluation, dropped callers, panics, cycles.
#![cfg(feature = "tokio")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use speedup_cache::AsyncCache;
use speedup_test_support::{panic_message, within_async};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_evaluation() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let cache = AsyncCache::new(move |_: AsyncCache<u64, u64>, k: u64| {
        let counted = Arc::clone(&counted);
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            k * 3
        }
    });
    let handles: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn({
                let c = cache.clone();
                async move { c.get(7).await }
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.await.unwrap(), 21);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(cache.contains_key(&7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_caller_does_not_leave_others_hanging() {
    let cache = AsyncCache::new(|_: AsyncCache<u64, u64>, k: u64| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        k
    });
    let first = tokio::spawn({
        let c = cache.clone();
        async move { c.get(1).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    first.abort(); // the caller that started the computation goes away
    let second = tokio::time::timeout(Duration::from_secs(5), cache.get(1)).await;
    assert_eq!(second.expect("the second caller hung"), 1);
}

#[tokio::test]
async fn a_panic_is_not_cached() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&attempts);
    let cache = AsyncCache::new(move |_: AsyncCache<u64, u64>, k: u64| {
        let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            assert!(!first, "first attempt at {k} fails");
            k
        }
    });
    let failed = tokio::spawn({
        let c = cache.clone();
        async move { c.get(2).await }
    })
    .await;
    let message = failed.unwrap_err().into_panic();
    let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("first attempt at 2 fails"), "{message}");
    assert_eq!(cache.get(2).await, 2);
}

#[tokio::test]
async fn awaiting_yourself_is_a_cycle_not_a_hang() {
    let cache = AsyncCache::new(|c: AsyncCache<u64, u64>, k: u64| async move { c.get(k).await });
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::spawn({
            let c = cache.clone();
            async move { c.get(9).await }
        }),
    )
    .await
    .expect("a cycle hung");
    let panic = result.unwrap_err().into_panic();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("cycle") && message.contains('9'), "{message}");
}

fn rounds(default: usize) -> usize {
    std::env::var("SPEEDUP_ASYNC_ROUNDS")
        .map_or(default, |r| r.parse().expect("SPEEDUP_ASYNC_ROUNDS: a number"))
}

fn panic_text(error: tokio::task::JoinError) -> String {
    panic_message(&*error.into_panic())
}

/// Two tasks start 0 and 1 at once; 0 needs 1 and 1 needs 0. Both report the cycle, in
/// every round, within the deadline (`SPEEDUP_ASYNC_ROUNDS` sets the rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_between_two_tasks_is_reported_not_hung() {
    for round in 0..rounds(50) {
        let both = Arc::new(tokio::sync::Barrier::new(2));
        let cache = AsyncCache::new(move |c: AsyncCache<u64, u64>, k: u64| {
            let both = Arc::clone(&both);
            async move {
                both.wait().await;
                c.get(1 - k).await + 1
            }
        });
        let tasks: Vec<_> = (0..2u64)
            .map(|k| {
                let c = cache.clone();
                tokio::spawn(async move { c.get(k).await })
            })
            .collect();
        for (k, task) in tasks.into_iter().enumerate() {
            let outcome = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .unwrap_or_else(|_| panic!("round {round}: get({k}) hung"));
            let message = panic_text(outcome.expect_err("a cycle has no value"));
            assert!(
                message.contains("cycle")
                    && (message.contains("0 -> 1 -> 0") || message.contains("1 -> 0 -> 1")),
                "round {round}: {message}"
            );
        }
        assert!(cache.is_empty(), "nothing is cached");
    }
}

/// A runtime dropped while a key is in flight leaves no dead computation behind: the next
/// `get`, on a new runtime, computes the key again. Both cases: the task had started, and
/// it had not been polled yet.
#[test]
fn a_runtime_dropped_mid_flight_leaves_the_key_vacant() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hanging = Arc::clone(&hang);
    let (started_tx, started_rx) = std::sync::mpsc::channel::<u64>();
    let started_tx = std::sync::Mutex::new(started_tx);
    let cache = AsyncCache::new(move |_: AsyncCache<u64, u64>, k: u64| {
        counted.fetch_add(1, Ordering::SeqCst);
        let hang = hanging.load(Ordering::SeqCst);
        let _ = started_tx.lock().unwrap().send(k);
        async move {
            if hang {
                std::future::pending::<()>().await; // never ends: its runtime goes away
            }
            k * 10
        }
    });
    // 1. The task is running when the runtime is dropped.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().unwrap();
    let c = cache.clone();
    rt.spawn(async move { c.get(5).await });
    assert_eq!(started_rx.recv_timeout(Duration::from_secs(10)).unwrap(), 5);
    drop(rt);
    // 2. The task was never polled: a current-thread runtime that only spawned it.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async { cache.apply_async(6) });
    drop(rt);
    // A fresh runtime: both keys are computed (again).
    hang.store(false, Ordering::SeqCst);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().unwrap();
    let got = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), cache.get(5))
            .await
            .expect("get(5) hung after the runtime died")
    });
    assert_eq!(got, 50);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "5 computed twice, 6 not yet");
    let got = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), cache.get(6))
            .await
            .expect("get(6) hung after the runtime died")
    });
    assert_eq!(got, 60);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "6 computed once: its first task never ran");
    assert!(cache.contains_key(&5) && cache.contains_key(&6));
}

/// The function's synchronous part (before its future) runs under no lock: it may use the
/// cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_synchronous_part_of_the_function_may_use_the_cache() {
    let cache = AsyncCache::new(|c: AsyncCache<u64, u64>, k: u64| {
        let cached = c.contains_key(&k) || c.len() > 1_000;
        c.apply_async(k + 100);
        async move { if cached { 0 } else { k + 1 } }
    });
    let got =
        tokio::time::timeout(Duration::from_secs(10), cache.get(1)).await.expect("the first get deadlocked");
    assert_eq!(got, 2);
    assert_eq!(tokio::time::timeout(Duration::from_secs(10), cache.get(101)).await.unwrap(), 102);
}

static GLOBAL: std::sync::OnceLock<AsyncCache<u64, u64>> = std::sync::OnceLock::new();

/// 5 needs 6 and 6 needs 5, through a handle the function reaches as a global instead of
/// its argument: still a cycle, reported, not a hang.
fn global() -> &'static AsyncCache<u64, u64> {
    GLOBAL.get_or_init(|| {
        AsyncCache::new(|_: AsyncCache<u64, u64>, k: u64| async move {
            match k {
                5 => global().get(6).await,
                6 => global().get(5).await,
                k => k,
            }
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_through_a_global_handle_is_reported() {
    let outcome = tokio::time::timeout(Duration::from_secs(20), tokio::spawn(global().get(5)))
        .await
        .expect("a cycle through a global handle hung");
    let message = panic_text(outcome.expect_err("a cycle has no value"));
    assert!(message.contains("cycle") && message.contains("5 -> 6 -> 5"), "{message}");
    assert_eq!(global().get(7).await, 7);
}

/// A task the function spawns and does not await acts for nobody: the key it asks for may
/// need the function's own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_spawned_by_the_function_is_not_a_cycle() {
    for _ in 0..rounds(20) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        let cache = AsyncCache::new(move |c: AsyncCache<u64, u64>, k: u64| {
            let tx = if k == 0 { tx.lock().unwrap().take() } else { None };
            async move {
                if let Some(tx) = tx {
                    let background = c.clone();
                    tokio::spawn(async move { tx.send(background.get(1).await).ok() });
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    return 10;
                }
                c.get(k - 1).await + 1
            }
        });
        let got = tokio::time::timeout(Duration::from_secs(20), async {
            let zero = cache.get(0).await;
            (zero, rx.await.expect("the background task answered"))
        })
        .await
        .expect("hung");
        assert_eq!(got, (10, 11));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_bounds_the_values_kept_under_concurrent_callers() {
    for capacity in [1usize, 2, 10, 100] {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let cache = AsyncCache::builder().capacity(capacity).build(move |_: AsyncCache<u64, u64>, k: u64| {
            counted.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::task::yield_now().await;
                k * 2
            }
        });
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let c = cache.clone();
                tokio::spawn(async move {
                    for i in 0..500u64 {
                        let k = (i * 7 + t * 13) % 300;
                        assert_eq!(c.get(k).await, k * 2);
                        assert!(c.len() <= capacity, "{} values kept, capacity {capacity}", c.len());
                    }
                })
            })
            .collect();
        within_async(Duration::from_secs(60), async {
            for t in tasks {
                t.await.unwrap();
            }
        })
        .await;
        assert!(
            cache.len() <= capacity && !cache.is_empty(),
            "{} values kept, capacity {capacity}",
            cache.len()
        );
        assert!(calls.load(Ordering::Relaxed) >= 300, "every key computed at least once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_used_again_gets_a_second_chance() {
    let cache = AsyncCache::builder().capacity(2).build(|_: AsyncCache<u64, u64>, k: u64| async move { k });
    cache.get(0).await;
    for k in 1..50 {
        cache.get(0).await; // used since it was last looked at: requeued, not evicted
        cache.get(k).await;
        assert!(cache.contains_key(&0), "the hot key was evicted at {k}");
        assert!(cache.len() <= 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_value_whose_drop_uses_the_cache_does_not_deadlock() {
    struct Touch(Arc<std::sync::OnceLock<AsyncCache<u64, Arc<Touch>>>>);
    impl Drop for Touch {
        fn drop(&mut self) {
            if let Some(c) = self.0.get() {
                let _ = (c.len(), c.contains_key(&0));
            }
        }
    }
    let slot = Arc::new(std::sync::OnceLock::new());
    let inner = Arc::clone(&slot);
    let cache = AsyncCache::builder().capacity(1).build(move |_: AsyncCache<u64, Arc<Touch>>, _k: u64| {
        let touch = Arc::new(Touch(Arc::clone(&inner)));
        async move { touch }
    });
    let _ = slot.set(cache.clone());
    within_async(Duration::from_secs(20), async {
        for k in 0..200 {
            let _ = cache.get(k).await;
        }
    })
    .await;
    assert_eq!(cache.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_async_starts_a_key_that_get_then_awaits_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let started_tx = std::sync::Mutex::new(Some(started_tx));
    let cache = AsyncCache::new(move |_: AsyncCache<u64, u64>, k: u64| {
        counted.fetch_add(1, Ordering::SeqCst);
        if let Some(tx) = started_tx.lock().unwrap().take() {
            let _ = tx.send(());
        }
        async move { k + 1 }
    });
    cache.apply_async(41);
    cache.apply_async(41); // in flight or cached: nothing new
    within_async(Duration::from_secs(20), started_rx).await.unwrap(); // ran without any get
    assert_eq!(cache.get(41).await, 42);
    cache.apply_async(41); // cached: nothing new
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_async_starts_the_missing_keys_only_when_two_or_more_are_missing() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let cache = AsyncCache::new(move |_: AsyncCache<u64, u64>, k: u64| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { k }
    });
    cache.get(1).await;
    cache.batch_async([1, 2]); // one missing: left to the get that follows
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!cache.contains_key(&2));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    cache.batch_async([1, 2, 3]);
    within_async(Duration::from_secs(20), async {
        while !(cache.contains_key(&2) && cache.contains_key(&3)) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Recursive fan-out, as the original's fib: every key once.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let fib = AsyncCache::new(move |fib: AsyncCache<u64, u64>, n: u64| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                return 1;
            }
            fib.batch_async([n - 1, n - 2]);
            fib.get(n - 1).await.wrapping_add(fib.get(n - 2).await)
        }
    });
    assert_eq!(within_async(Duration::from_secs(60), fib.get(90)).await, 4660046610375530309);
    assert_eq!(calls.load(Ordering::SeqCst), 91);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backing_tier_that_panics_fails_the_call_and_is_not_cached() {
    use speedup_cache::Backing;
    struct Flaky(AtomicUsize, std::sync::Mutex<Vec<(u64, u64)>>);
    impl Backing<u64, u64> for Flaky {
        fn load(&self, key: &u64) -> Option<u64> {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("the disk went away");
            }
            self.1.lock().unwrap().iter().find(|(k, _)| k == key).map(|&(_, v)| v)
        }
        fn store(&self, key: &u64, value: &u64) {
            self.1.lock().unwrap().push((*key, *value));
        }
    }
    let backing = Arc::new(Flaky(AtomicUsize::new(0), std::sync::Mutex::new(Vec::new())));
    let cache = AsyncCache::builder()
        .backing(Arc::clone(&backing))
        .build(|_: AsyncCache<u64, u64>, k: u64| async move { k * 10 });
    let c = cache.clone();
    let first = within_async(Duration::from_secs(20), tokio::spawn(async move { c.get(3).await })).await;
    let message = first.unwrap_err().into_panic();
    let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("the disk went away"), "{message}");
    assert!(!cache.contains_key(&3));
    assert_eq!(within_async(Duration::from_secs(20), cache.get(3)).await, 30, "the next get computes again");
    assert_eq!(*backing.1.lock().unwrap(), vec![(3, 30)], "the computed value was stored");
}

/// A fallible `AsyncCache`: the function's error reaches every caller with its key, is not
/// cached, and propagates through dependents with `?`; the error type need not be `Clone`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_get_returns_the_functions_error_uncached_through_dependents() {
    use speedup_cache::Error;
    #[derive(Debug, PartialEq)]
    struct Odd(u64); // not Clone
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let halves = AsyncCache::try_new(move |c: AsyncCache<u64, u64, Odd>, n: u64| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            match n {
                0 => Ok(0),
                n if n % 2 == 1 && n > 1 => Err(Error::failed(Odd(n))),
                n => Ok(1 + c.try_get(n / 2).await?),
            }
        }
    });
    assert_eq!(within_async(Duration::from_secs(20), halves.try_get(8)).await, Ok(4)); // 8, 4, 2, 1, 0
    let error = within_async(Duration::from_secs(20), halves.try_get(12)).await.unwrap_err();
    // 12 -> 6 -> 3: the error names the key whose computation failed.
    assert!(matches!(&error, Error::Failed { key, error } if key == "3" && **error == Odd(3)), "{error:?}");
    assert!(!halves.contains_key(&12) && !halves.contains_key(&3), "errors are not cached");
    let before = calls.load(Ordering::SeqCst);
    assert!(within_async(Duration::from_secs(20), halves.try_get(3)).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), before + 1, "a failed key is computed again");
}

/// `try_get` returns a cycle between two tasks, and a panic, as errors instead of panicking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_get_returns_cycles_and_panics_as_errors() {
    use speedup_cache::Error;
    let cache = AsyncCache::try_new(|c: AsyncCache<u64, u64, String>, n: u64| async move {
        match n {
            0 => c.try_get(1).await,
            1 => {
                tokio::task::yield_now().await;
                c.try_get(0).await
            }
            2 => panic!("two is right out"),
            n => Ok(n),
        }
    });
    let (a, b) = within_async(Duration::from_secs(20), async {
        let (c0, c1) = (cache.clone(), cache.clone());
        let a = tokio::spawn(async move { c0.try_get(0).await });
        let b = tokio::spawn(async move { c1.try_get(1).await });
        (a.await.unwrap(), b.await.unwrap())
    })
    .await;
    for result in [a, b] {
        assert!(matches!(&result, Err(Error::Cycle { .. })), "{result:?}");
    }
    let panicked = within_async(Duration::from_secs(20), cache.try_get(2)).await;
    assert!(
        matches!(&panicked, Err(Error::Panicked { key, message }) if key == "2" && message == "two is right out"),
        "{panicked:?}"
    );
    assert_eq!(within_async(Duration::from_secs(20), cache.try_get(5)).await, Ok(5));
}

//! AsyncCache: shared evaluation, dropped callers, panics, cycles.
#![cfg(feature = "tokio")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use speedup_cache::AsyncCache;

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
    let payload = error.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
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
    rt.block_on(async { cache.spawn(6) });
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
        c.spawn(k + 100);
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

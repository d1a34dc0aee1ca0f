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

//! Loom models of the per-key state machine (vacant, queued, running, done, failed):
//! single flight, help-while-waiting, panic recovery. Run with
//! `RUSTFLAGS="--cfg speedup_loom" cargo test -p speedup-cache --test loom --release`
//! (`LOOM_MAX_PREEMPTIONS=2` keeps it to seconds).
#![cfg(speedup_loom)]

use std::sync::atomic::{AtomicUsize, Ordering};

use loom::sync::Arc;
use loom::thread;
use speedup_cache::Cache;

fn counting_cache(calls: std::sync::Arc<AtomicUsize>) -> Cache<u64, u64> {
    Cache::new(move |_: &Cache<u64, u64>, k: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        k + 100
    })
}

#[test]
fn two_threads_one_computation() {
    loom::model(|| {
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let cache = Arc::new(counting_cache(std::sync::Arc::clone(&calls)));
        let other = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || cache.get(1))
        };
        assert_eq!(cache.get(1), 101);
        assert_eq!(other.join().unwrap(), 101);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn a_queued_key_is_run_by_whoever_needs_it() {
    loom::model(|| {
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let cache = Arc::new(counting_cache(std::sync::Arc::clone(&calls)));
        // Under loom there is no pool: the key stays queued until a reader helps.
        cache.apply_async(1);
        let other = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || cache.get(1))
        };
        assert_eq!(cache.get(1), 101);
        assert_eq!(other.join().unwrap(), 101);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn a_panic_leaves_the_key_vacant_for_the_next_get() {
    loom::model(|| {
        let failed_once = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&failed_once);
        let cache = Arc::new(Cache::new(move |_: &Cache<u64, u64>, k: u64| {
            if !flag.swap(true, Ordering::SeqCst) {
                panic!("first attempt fails");
            }
            k
        }));
        let other = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get(5))).ok()
            })
        };
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get(5))).ok();
        let theirs = other.join().unwrap();
        // Exactly one of the first attempts failed; whoever got a value got the right one.
        assert!(mine.is_none() || theirs.is_none());
        for v in [mine, theirs].into_iter().flatten() {
            assert_eq!(v, 5);
        }
        assert_eq!(cache.get(5), 5, "not poisoned");
    });
}

/// Two threads close a cycle (1 needs 2, 2 needs 1) in every interleaving: each sees the
/// cycle or the other's failure, never a deadlock (which loom would report).
#[test]
fn a_cycle_across_two_threads_is_reported_in_every_interleaving() {
    loom::model(|| {
        let cache = Arc::new(Cache::try_new(|c: &Cache<u64, u64, ()>, k: u64| c.try_get(3 - k)));
        let other = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || cache.try_get(2))
        };
        let mine = cache.try_get(1);
        let theirs = other.join().unwrap();
        for outcome in [mine, theirs] {
            assert!(matches!(outcome, Err(speedup_cache::Error::Cycle { .. })), "{outcome:?}");
        }
        assert!(cache.is_empty());
    });
}

//! A key that depends on itself is reported, never a hang: on one thread, through other
//! keys, and across two threads.

use std::sync::{Arc, Barrier};

use speedup_cache::{Cache, Error};
use speedup_test_support::{panic_message, within};

#[test]
fn a_key_that_asks_for_itself_panics_naming_it() {
    within(10, || {
        let cache = Cache::new(|c: &Cache<u64, u64>, k: u64| c.get(k) + 1);
        let msg = panic_message(
            &*std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get(42))).unwrap_err(),
        );
        assert!(msg.contains("cycle") && msg.contains("42"), "{msg}");
        assert!(cache.is_empty(), "nothing was cached");
    });
}

#[test]
fn an_indirect_cycle_is_an_error_in_try_get() {
    within(10, || {
        let cache = Cache::try_new(|c: &Cache<u64, u64, ()>, k: u64| {
            let next = if k == 3 { 1 } else { k + 1 };
            c.try_get(next)
        });
        match cache.try_get(1) {
            Err(Error::Cycle { key, path }) => {
                assert_eq!(key, "1", "reported at the key that closes the cycle");
                assert!(path.starts_with('1'), "{path}");
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
    });
}

#[test]
fn a_cycle_across_two_threads_is_reported_not_hung() {
    within(30, || {
        // Key 1 (thread A) and key 2 (thread B) start together, then each asks for the other.
        let both_started = Arc::new(Barrier::new(2));
        let barrier = Arc::clone(&both_started);
        let cache = Cache::try_new(move |c: &Cache<u64, u64, ()>, k: u64| {
            barrier.wait();
            c.try_get(3 - k)
        });
        let a = {
            let cache = cache.clone();
            std::thread::spawn(move || cache.try_get(1))
        };
        let b = {
            let cache = cache.clone();
            std::thread::spawn(move || cache.try_get(2))
        };
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        // One thread closes the cycle and sees Cycle; the other waits on it and gets the
        // same failure. Neither hangs, neither succeeds.
        assert!(matches!(a, Err(Error::Cycle { .. })), "{a:?}");
        assert!(matches!(b, Err(Error::Cycle { .. })), "{b:?}");
        assert!(cache.is_empty());
    });
}

#[test]
fn a_cycle_message_names_the_whole_chain() {
    within(10, || {
        let cache =
            Cache::try_new(|c: &Cache<u64, u64, ()>, k: u64| c.try_get(if k == 12 { 10 } else { k + 1 }));
        match cache.try_get(10) {
            Err(Error::Cycle { key, path }) => {
                assert_eq!(key, "10");
                assert_eq!(path, "10 -> 11 -> 12 -> 10");
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
        let message = panic_message(
            &*std::panic::catch_unwind(|| {
                Cache::new(|c: &Cache<u64, u64>, k: u64| c.get(if k == 12 { 10 } else { k + 1 })).get(11)
            })
            .unwrap_err(),
        );
        assert!(message.contains("11 -> 12 -> 10 -> 11"), "{message}");
    });
}

#[test]
fn a_cycle_across_threads_names_the_whole_chain() {
    within(30, || {
        // 10 (thread A) waits for 11 (thread B), which needs 12, which needs 10.
        let both_started = Arc::new(Barrier::new(2));
        let barrier = Arc::clone(&both_started);
        let cache = Cache::try_new(move |c: &Cache<u64, u64, ()>, k: u64| match k {
            10 | 11 => {
                barrier.wait();
                if k == 10 {
                    std::thread::sleep(std::time::Duration::from_millis(20)); // 11 starts first
                }
                c.try_get(if k == 10 { 11 } else { 12 })
            }
            _ => c.try_get(10),
        });
        let a = {
            let cache = cache.clone();
            std::thread::spawn(move || cache.try_get(10))
        };
        let b = {
            let cache = cache.clone();
            std::thread::spawn(move || cache.try_get(11))
        };
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        let paths: Vec<String> = [&a, &b]
            .into_iter()
            .filter_map(|r| match r {
                Err(Error::Cycle { path, .. }) => Some(path.clone()),
                _ => None,
            })
            .collect();
        assert!(
            matches!(a, Err(Error::Cycle { .. })) && matches!(b, Err(Error::Cycle { .. })),
            "{a:?} {b:?}"
        );
        assert!(
            paths.iter().all(|p| p.split(" -> ").count() == 4),
            "each message names 10, 11 and 12: {paths:?}"
        );
    });
}

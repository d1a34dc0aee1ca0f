//! Single flight, help-while-waiting, panics that do not poison, and a no-deadlock stress.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::time::Duration;

use speedup_cache::{Cache, Error};
use speedup_test_support::{panic_message, within};

#[test]
fn each_key_runs_once_however_many_threads_ask() {
    let calls: Arc<Mutex<HashMap<u64, usize>>> = Arc::default();
    let counted = Arc::clone(&calls);
    let cache = Cache::new(move |_: &Cache<u64, u64>, k: u64| {
        *counted.lock().unwrap().entry(k).or_default() += 1;
        std::thread::sleep(Duration::from_micros(200)); // widen the race window
        k * 2
    });
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (cache, start) = (cache.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                for k in 0..200u64 {
                    let k = (k * 7 + t) % 50;
                    assert_eq!(cache.get(k), k * 2);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 50);
    assert!(calls.values().all(|&n| n == 1), "some key ran twice: {calls:?}");
    assert_eq!(cache.len(), 50);
}

#[test]
fn a_panic_is_not_cached_and_does_not_poison_the_key() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&attempts);
    let cache = Cache::new(move |_: &Cache<u64, u64>, k: u64| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("first attempt at {k} fails");
        }
        k + 1
    });
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get(3))).unwrap_err();
    assert_eq!(
        panic_message(&*caught),
        "first attempt at 3 fails",
        "the original message reaches the caller"
    );
    assert!(!cache.contains_key(&3));
    assert_eq!(cache.get(3), 4, "the next get recomputes");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

#[test]
fn waiters_get_the_panic_too_and_nothing_hangs() {
    within(30, || {
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let gate = Mutex::new(Some((entered_tx, release_rx)));
        let cache = Cache::new(move |_: &Cache<u64, u64>, k: u64| {
            let first = gate.lock().unwrap().take(); // guard dropped before the panic below
            if let Some((entered, release)) = first {
                entered.send(()).unwrap();
                release.recv().unwrap();
                panic!("computing {k} went wrong");
            }
            k
        });
        let owner = {
            let cache = cache.clone();
            std::thread::spawn(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get(1)))
            })
        };
        entered_rx.recv().unwrap();
        let waiter = {
            let cache = cache.clone();
            std::thread::spawn(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get(1)))
            })
        };
        std::thread::sleep(Duration::from_millis(50)); // let the waiter block on the flight
        release_tx.send(()).unwrap();
        let owner_msg = panic_message(&*owner.join().unwrap().unwrap_err());
        let waiter_msg = panic_message(&*waiter.join().unwrap().unwrap_err());
        assert_eq!(owner_msg, "computing 1 went wrong");
        assert!(
            waiter_msg.contains("computing 1 went wrong"),
            "the waiter sees the same failure: {waiter_msg}"
        );
        assert_eq!(cache.get(1), 1, "recomputed after the failure");
    });
}

#[test]
fn a_waiter_runs_a_queued_key_itself_on_a_busy_one_thread_pool() {
    within(30, || {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let cache = Cache::builder().threads(1).build(move |_: &Cache<u64, u64>, k: u64| {
            if k == 0 {
                release_rx.lock().unwrap().recv().unwrap(); // occupies the only worker
            }
            k * 10
        });
        cache.apply_async(0);
        std::thread::sleep(Duration::from_millis(20));
        cache.apply_async(7); // queued behind the blocked worker
        assert_eq!(cache.get(7), 70, "the caller helped instead of waiting for the pool");
        release_tx.send(()).unwrap();
        assert_eq!(cache.get(0), 0);
    });
}

#[test]
fn recursion_on_a_one_thread_pool_does_not_deadlock() {
    within(60, || {
        let fib = Cache::builder().threads(1).build(|f: &Cache<u64, u64>, n: u64| {
            if n < 2 {
                return 1;
            }
            f.batch_async([n - 1, n - 2]);
            f.get(n - 1).wrapping_add(f.get(n - 2))
        });
        assert_eq!(fib.get(90), 4660046610375530309);
    });
}

#[test]
fn batch_async_schedules_only_when_two_or_more_are_missing() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let (started_tx, started_rx) = mpsc::channel::<u64>();
    let started_tx = Mutex::new(started_tx);
    let cache = Cache::builder().threads(1).build(move |_: &Cache<u64, u64>, k: u64| {
        counted.fetch_add(1, Ordering::SeqCst);
        started_tx.lock().unwrap().send(k).unwrap();
        k
    });
    cache.get(1);
    started_rx.recv().unwrap();
    cache.batch_async([1, 2]); // only 2 is missing: nothing is scheduled
    assert!(started_rx.recv_timeout(Duration::from_millis(100)).is_err());
    cache.batch_async([3, 4]); // both missing: both scheduled
    let mut got = [started_rx.recv().unwrap(), started_rx.recv().unwrap()];
    got.sort();
    assert_eq!(got, [3, 4]);
}

/// moka's kind of test: many threads, recursive keys scheduled on a small pool, random
/// orders. It must finish (within the deadline) with every value right.
#[test]
fn no_deadlock_under_a_recursive_storm() {
    within(120, || {
        let cache = Cache::builder().threads(2).build(|c: &Cache<u64, u64>, n: u64| {
            if n < 3 {
                return n;
            }
            c.batch_async([n / 2, n / 3, n - 1]);
            c.get(n / 2).wrapping_add(c.get(n / 3)).wrapping_add(c.get(n - 1) % 1000)
        });
        let reference = Cache::new(|c: &Cache<u64, u64>, n: u64| {
            if n < 3 {
                return n;
            }
            c.get(n / 2).wrapping_add(c.get(n / 3)).wrapping_add(c.get(n - 1) % 1000)
        });
        let threads: Vec<_> = (0..16u64)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    (0..50u64).map(|i| cache.get(200 + (i * 37 + t * 11) % 300)).sum::<u64>()
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for n in 0..500 {
            assert_eq!(cache.get(n), reference.get(n));
        }
    });
}

#[test]
fn errors_are_not_cached_by_the_fallible_variant() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&attempts);
    let cache = Cache::try_new(move |_: &Cache<u64, u64, String>, k: u64| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(Error::failed("not yet".to_string()));
        }
        Ok(k)
    });
    assert_eq!(cache.try_get(5), Err(Error::Failed { key: "5".into(), error: Arc::new("not yet".into()) }));
    assert_eq!(cache.try_get(5), Ok(5));
    let panicky =
        Cache::try_new(|_: &Cache<u64, u64, String>, _| -> Result<u64, Error<String>> { panic!("boom") });
    assert!(matches!(panicky.try_get(1), Err(Error::Panicked { message, .. }) if message == "boom"));
}

#[test]
fn failed_errors_are_named_by_the_cache_and_keep_their_key_through_dependents() {
    let cache = Cache::try_new(|c: &Cache<u64, u64, String>, k: u64| {
        if k == 0 {
            return Err(Error::failed("bottom".to_string()));
        }
        Ok(c.try_get(k - 1)? + 1)
    });
    let expected = Error::Failed { key: "0".into(), error: Arc::new("bottom".into()) };
    assert_eq!(cache.try_get(0), Err(expected.clone()));
    // A dependent passes on its dependency's error, which names the key that failed.
    assert_eq!(cache.try_get(3), Err(expected.clone()));
    assert_eq!(expected.to_string(), "computing 0 failed: bottom");
    // Threads waiting for the failing key get the same named error.
    let slow = Arc::new(Cache::try_new(|_: &Cache<u64, u64, String>, k: u64| {
        std::thread::sleep(std::time::Duration::from_millis(30));
        Err(Error::failed(format!("no {k}")))
    }));
    let outcomes: Vec<_> = (0..4)
        .map(|_| {
            let slow = Arc::clone(&slow);
            std::thread::spawn(move || slow.try_get(7))
        })
        .map(|t| t.join().unwrap())
        .collect();
    for outcome in outcomes {
        assert_eq!(outcome, Err(Error::Failed { key: "7".into(), error: Arc::new("no 7".into()) }));
    }
}

#[test]
fn a_fallible_cache_takes_an_error_type_that_is_not_clone() {
    #[derive(Debug, PartialEq)]
    struct NotClone(u64);
    impl std::fmt::Display for NotClone {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "no {}", self.0)
        }
    }
    let cache = Arc::new(Cache::try_new(|_: &Cache<u64, u64, NotClone>, k: u64| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        if k % 2 == 1 { Err(Error::failed(NotClone(k))) } else { Ok(k) }
    }));
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let cache = Arc::clone(&cache);
            std::thread::spawn(move || cache.try_get(3))
        })
        .collect();
    for waiter in waiters {
        let error = waiter.join().unwrap().unwrap_err();
        assert_eq!(error.to_string(), "computing 3 failed: no 3");
        assert!(matches!(error, Error::Failed { error, .. } if *error == NotClone(3)));
    }
    assert_eq!(cache.try_get(4), Ok(4));
}

/// A backing tier's flush error reaches the caller whole: its own type, behind `FlushError`.
#[test]
fn a_backing_flush_error_keeps_its_type() {
    use speedup_cache::{Backing, BoxError, FlushError};
    struct Full;
    impl Backing<u64, u64> for Full {
        fn load(&self, _: &u64) -> Option<u64> {
            None
        }
        fn store(&self, _: &u64, _: &u64) {}
        fn flush(&self) -> Result<(), BoxError> {
            Err(Box::new(std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left")))
        }
    }
    let cache = Cache::builder().backing(Full).build(|_: &Cache<u64, u64>, k: u64| k);
    assert_eq!(cache.get(1), 1, "a failing tier does not stop the cache");
    let error: FlushError = cache.flush().unwrap_err();
    assert_eq!(error.to_string(), "the cache's backing tier could not flush: no space left");
    let io = error.source.downcast_ref::<std::io::Error>().expect("the tier's own error type");
    assert_eq!(io.kind(), std::io::ErrorKind::StorageFull);
    assert!(Cache::new(|_: &Cache<u64, u64>, k: u64| k).flush().is_ok(), "no tier: nothing to flush");
}

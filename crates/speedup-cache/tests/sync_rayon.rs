//! rayon inside the cached function: `join`, `scope` and `par_iter` on the global pool, a
//! pool of the user's and the cache's own pool never give a false cycle or a hang, and a
//! genuine cycle through rayon jobs is still reported.
//!
//! Work-stealing is what makes this hard: a thread waiting in `join` runs other jobs on top
//! of the computation it is in the middle of, including jobs that need that very key.
//! Each test runs many rounds, each under a deadline. `SPEEDUP_RAYON_ROUNDS` sets the
//! rounds (default small, for CI; try 500).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rayon::prelude::*;
use speedup_cache::{Cache, Error};
use speedup_test_support::within;

const P: u64 = 1_000_000_007;

fn rounds(default: usize) -> usize {
    std::env::var("SPEEDUP_RAYON_ROUNDS")
        .map_or(default, |r| r.parse().expect("SPEEDUP_RAYON_ROUNDS: a number"))
}

fn fib_reference(n: u64) -> u64 {
    let (mut a, mut b) = (1u64, 1u64);
    for _ in 1..n {
        (a, b) = (b, (a + b) % P);
    }
    if n == 0 { 1 } else { b }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

/// `f(n) = join(f(n - 1), f(n - 2))`, asked for by 16 tasks at once on a 4-thread pool:
/// the reproduction (false cycles in every run, a hang in 1-2 of 100).
#[test]
fn join_inside_the_function_on_a_user_pool() {
    let rounds = rounds(20);
    let pool = Arc::new(pool(4));
    let mut reruns = 0;
    for round in 0..rounds {
        let pool = Arc::clone(&pool);
        reruns += within(60, move || {
            let fib = Cache::try_new(|c: &Cache<u64, u64, ()>, n: u64| {
                if n < 2 {
                    return Ok(1);
                }
                let (a, b) = rayon::join(|| c.try_get(n - 1), || c.try_get(n - 2));
                Ok((a? + b?) % P)
            });
            let got: Vec<Result<u64, Error<()>>> =
                pool.install(|| (0..16u64).into_par_iter().map(|t| fib.try_get(40 + t * 7 % 23)).collect());
            for (t, value) in got.into_iter().enumerate() {
                let n = 40 + t as u64 * 7 % 23;
                assert_eq!(value, Ok(fib_reference(n)), "round {round}, task {t}: fib({n})");
            }
            fib.reruns()
        });
    }
    eprintln!("{rounds} rounds, {reruns} keys computed again instead of deadlocking a stack");
}

/// The same on rayon's global pool, through `get` (a false cycle would be a panic).
#[test]
fn join_inside_the_function_on_the_global_pool() {
    let rounds = rounds(20);
    for round in 0..rounds {
        within(60, move || {
            let fib = Cache::new(|c: &Cache<u64, u64>, n: u64| {
                if n < 2 {
                    return 1;
                }
                let (a, b) = rayon::join(|| c.get(n - 1), || c.get(n - 2));
                (a + b) % P
            });
            let got: Vec<u64> = (0..16u64).into_par_iter().map(|t| fib.get(30 + t % 9)).collect();
            for (t, value) in got.into_iter().enumerate() {
                assert_eq!(value, fib_reference(30 + t as u64 % 9), "round {round}, task {t}");
            }
        });
    }
}

/// A function that makes no cache call at all, only a `join` of two short sleeps: the
/// issue saw 28 of 12,000 gets fail with a cycle "on one thread".
#[test]
fn join_of_sleeps_is_never_a_cycle() {
    let rounds = rounds(10);
    let pool = Arc::new(pool(4));
    let computed = Arc::new(AtomicUsize::new(0));
    for round in 0..rounds {
        let (pool, computed) = (Arc::clone(&pool), Arc::clone(&computed));
        within(60, move || {
            let counted = Arc::clone(&computed);
            let cache = Cache::try_new(move |_: &Cache<u64, u64, ()>, k: u64| {
                counted.fetch_add(1, Ordering::Relaxed);
                rayon::join(
                    || std::thread::sleep(Duration::from_micros(50)),
                    || std::thread::sleep(Duration::from_micros(30)),
                );
                Ok(k * 2)
            });
            let failures: Vec<String> = pool.install(|| {
                (0..400u64)
                    .into_par_iter()
                    .filter_map(|i| {
                        let k = i * 13 % 40;
                        match cache.try_get(k) {
                            Ok(v) if v == k * 2 => None,
                            other => Some(format!("round {round}: get({k}) = {other:?}")),
                        }
                    })
                    .collect()
            });
            assert!(failures.is_empty(), "{failures:?}");
        });
    }
    eprintln!("{} computations, {} gets, no failure", computed.load(Ordering::Relaxed), rounds * 400);
}

/// `scope` and `par_iter` inside the function, on the cache's own pool (reached through
/// `batch_async`), from many outside threads.
#[test]
fn scope_and_par_iter_on_the_caches_pool() {
    let rounds = rounds(10);
    for round in 0..rounds {
        within(60, move || {
            let cache = Cache::builder().threads(3).build(|c: &Cache<u64, u64>, n: u64| {
                if n < 3 {
                    return n;
                }
                c.batch_async([n - 1, n / 2, n / 3]);
                let parts = Mutex::new(0u64);
                rayon::scope(|s| {
                    s.spawn(|_| *parts.lock().unwrap() += c.get(n - 1) % 1000);
                    s.spawn(|_| *parts.lock().unwrap() += c.get(n / 2));
                });
                let rest: u64 = [n / 3, n / 4].par_iter().map(|&k| c.get(k)).sum();
                (parts.into_inner().unwrap() + rest) % P
            });
            let reference = Cache::new(|c: &Cache<u64, u64>, n: u64| {
                if n < 3 {
                    return n;
                }
                (c.get(n - 1) % 1000 + c.get(n / 2) + c.get(n / 3) + c.get(n / 4)) % P
            });
            let threads: Vec<_> = (0..8u64)
                .map(|t| {
                    let cache = cache.clone();
                    std::thread::spawn(move || {
                        (0..20u64).map(|i| cache.get(50 + (i * 17 + t * 5) % 150)).collect::<Vec<_>>()
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            for n in 0..200 {
                assert_eq!(cache.get(n), reference.get(n), "round {round}: key {n}");
            }
        });
    }
}

/// A genuine cycle whose links run in rayon jobs, on whatever threads steal them:
/// 0 -> 1 -> 2 -> 0, each step inside a `join`. Reported in every round, never a hang.
#[test]
fn a_genuine_cycle_through_join_is_still_reported() {
    let rounds = rounds(20);
    let pool = Arc::new(pool(4));
    for round in 0..rounds {
        let pool = Arc::clone(&pool);
        within(60, move || {
            let cache = Cache::try_new(|c: &Cache<u64, u64, ()>, k: u64| {
                if k >= 10 {
                    std::thread::sleep(Duration::from_micros(100));
                    return Ok(k);
                }
                let (next, side) = rayon::join(|| c.try_get((k + 1) % 3), || c.try_get(10 + k));
                Ok(next? + side?)
            });
            let got: Vec<Result<u64, Error<()>>> =
                pool.install(|| (0..6u64).into_par_iter().map(|t| cache.try_get(t % 3)).collect());
            for (t, result) in got.into_iter().enumerate() {
                match result {
                    Err(Error::Cycle { path, .. }) => {
                        let keys: Vec<&str> = path.split(" -> ").collect();
                        assert_eq!(keys.len(), 4, "round {round}: the whole chain: {path}");
                        assert_eq!(keys[0], keys[3], "round {round}: {path}");
                    }
                    other => panic!("round {round}, task {t}: expected a cycle, got {other:?}"),
                }
            }
            assert!(cache.len() <= 3, "only the side keys may be cached");
        });
    }
}

/// A function without rayon inside, on the cache's pool: pool workers that wait a long
/// time for a slow key never compute it a second time.
#[test]
fn slow_keys_on_the_pool_run_once_without_rayon_inside() {
    within(60, || {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let cache = Cache::builder().threads(4).build(move |c: &Cache<u64, u64>, n: u64| {
            if n == 0 {
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(300)); // long, but within a worker's patience (500 ms)
                return 1;
            }
            c.get(0) + n
        });
        cache.batch_async(1..=8);
        for n in 1..=8 {
            assert_eq!(cache.get(n), n + 1);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the slow key ran once");
        assert_eq!(cache.reruns(), 0);
    });
}

#[test]
/// Deep recursion through `join` on a 2-thread pool: stealing everywhere, 3,000 levels.
fn deep_join_recursion_on_two_threads() {
    within(120, || {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let fib = Cache::new(|c: &Cache<u64, u64>, n: u64| {
            if n < 2 {
                return 1;
            }
            let (a, b) = rayon::join(|| c.get(n - 1), || c.get(n - 2));
            (a + b) % P
        });
        let v = pool.install(|| fib.get(3000));
        let (mut a, mut b) = (1u64, 1u64);
        for _ in 1..3000 {
            (a, b) = (b, (a + b) % P);
        }
        assert_eq!(v, b);
    });
}

#[test]
/// A panic in a `join` half reaches the caller and is not cached.
fn panic_inside_a_join_half_is_not_cached() {
    within(60, || {
        let first = std::sync::atomic::AtomicBool::new(true);
        let cache = Cache::new(move |c: &Cache<u64, u64>, n: u64| {
            if n == 0 {
                return 0;
            }
            let (a, b) = rayon::join(
                || c.get(n - 1),
                || {
                    if n == 5 && first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                        panic!("boom at 5");
                    }
                    1
                },
            );
            a + b
        });
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get(10)));
        assert!(r.is_err());
        assert_eq!(cache.get(10), 10);
        assert_eq!(cache.try_get(11), Ok(11));
    });
}

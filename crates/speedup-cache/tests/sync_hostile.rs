//! Uses of the cache that broke it once: a `par_iter` fan-out asked for from many OS
//! threads at once, nested rayon calls, a handle given to a background thread, and a
//! cycle through a handle the function reaches as a global instead of its argument.
//!
//! Each runs many rounds under a deadline; `SPEEDUP_RAYON_ROUNDS` sets the rounds.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use speedup_cache::{Cache, Error};
use speedup_test_support::within;

fn rounds(default: usize) -> usize {
    std::env::var("SPEEDUP_RAYON_ROUNDS")
        .map_or(default, |r| r.parse().expect("SPEEDUP_RAYON_ROUNDS: a number"))
}

/// Asks for each of `keys` on an OS thread of its own, all at once; the answers, in order.
fn from_threads<T: Send + 'static>(
    round: usize,
    keys: impl IntoIterator<Item = u64>,
    ask: impl Fn(u64) -> T + Clone + Send + 'static,
) -> Vec<T> {
    let threads: Vec<_> = keys
        .into_iter()
        .map(|key| {
            let ask = ask.clone();
            std::thread::spawn(move || ask(key))
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap_or_else(|_| panic!("round {round}: a thread panicked")))
        .collect()
}

/// `f(n) = sum of f(n-1), f(n-2), f(n/2), f(n/3)` through `par_iter` on the global pool,
/// asked for by 16 OS threads at once.
///
/// rayon's `join` steals jobs of other computations on top of a computation that waits in
/// it, and a stolen job that needs a key which needs the computation underneath forces a
/// key to be computed again. Once, waits in the cache stole too, and stacked stolen work
/// without bound: the recomputations cascaded and no round ended within a minute (issue
/// #12). Now only a thread's outermost wait runs jobs; the keys computed again are counted.
#[test]
fn par_iter_fan_out_from_sixteen_threads() {
    let rounds = rounds(10);
    let mut total_reruns = 0;
    let mut total_runs = 0;
    for round in 0..rounds {
        let (reruns, runs) = within(60, move || {
            let runs = Arc::new(AtomicUsize::new(0));
            let counted = Arc::clone(&runs);
            let f = Cache::new(move |h: &Cache<u64, u64>, n: u64| {
                counted.fetch_add(1, Ordering::Relaxed);
                if n < 2 {
                    return 1;
                }
                [n - 1, n - 2, n / 2, n / 3]
                    .par_iter()
                    .map(|&d| h.get(d))
                    .reduce(|| 0, |a, b| (a + b) % 1_000_003)
            });
            let asked = f.clone();
            let got = from_threads(round, (0..16u64).map(|t| 200 + t * 13 % 97), move |k| asked.get(k));
            let single = Cache::new(|h: &Cache<u64, u64>, n: u64| {
                if n < 2 {
                    return 1;
                }
                [n - 1, n - 2, n / 2, n / 3].iter().map(|&d| h.get(d)).fold(0, |a, b| (a + b) % 1_000_003)
            });
            for (t, v) in got.iter().enumerate() {
                assert_eq!(*v, single.get(200 + t as u64 * 13 % 97), "round {round}, thread {t}");
            }
            (f.reruns(), runs.load(Ordering::Relaxed))
        });
        total_reruns += reruns;
        total_runs += runs;
    }
    eprintln!("{rounds} rounds: {total_runs} bodies run, {total_reruns} reruns");
}

/// The same fan-out asked for from one thread (then from a pool of the user's, by 16
/// tasks): the documented way to use rayon inside the function.
#[test]
fn par_iter_fan_out_from_one_call() {
    let rounds = rounds(10);
    let mut total_reruns = 0;
    for round in 0..rounds {
        total_reruns += within(60, move || {
            let f = Cache::new(|h: &Cache<u64, u64>, n: u64| {
                if n < 2 {
                    return 1;
                }
                [n - 1, n - 2, n / 2, n / 3]
                    .par_iter()
                    .map(|&d| h.get(d))
                    .reduce(|| 0, |a, b| (a + b) % 1_000_003)
            });
            let single = Cache::new(|h: &Cache<u64, u64>, n: u64| {
                if n < 2 {
                    return 1;
                }
                [n - 1, n - 2, n / 2, n / 3].iter().map(|&d| h.get(d)).fold(0, |a, b| (a + b) % 1_000_003)
            });
            assert_eq!(f.get(400), single.get(400), "round {round}");
            let got: Vec<u64> = (0..16u64).into_par_iter().map(|t| f.get(300 + t * 13 % 97)).collect();
            for (t, v) in got.iter().enumerate() {
                assert_eq!(*v, single.get(300 + t as u64 * 13 % 97), "round {round}, task {t}");
            }
            f.reruns()
        });
    }
    eprintln!("{rounds} rounds: {total_reruns} reruns");
}

/// `par_iter` whose jobs `join`, whose halves `join` again, each asking the cache, from 8
/// OS threads at once (it livelocked as the test above did).
#[test]
fn three_levels_of_rayon_nesting() {
    let rounds = rounds(10);
    for round in 0..rounds {
        within(60, move || {
            let f = Cache::new(|h: &Cache<u64, u64>, n: u64| {
                if n < 3 {
                    return n;
                }
                [n - 1, n / 2]
                    .par_iter()
                    .map(|&d| {
                        let (a, b) = rayon::join(
                            || rayon::join(|| h.get(d), || h.get(d.saturating_sub(2))),
                            || h.get(d / 3),
                        );
                        (a.0 + a.1 + b) % 1_000_003
                    })
                    .reduce(|| 0, |a, b| (a + b) % 1_000_003)
            });
            from_threads(round, (0..8u64).map(|t| 120 + t * 7), move |k| f.get(k));
        });
    }
}

/// `f(n)` through `par_iter` over its 50 predecessors, asked for by 16 OS threads at once.
///
/// It used to hang in some rounds (issue #12): waits nested in jobs that a waiting worker
/// ran kept running jobs, up to 7,700 waits deep on one worker; a key found in flight below
/// was computed again with its 50 children, in flight below too, so rounds took 4,000 to
/// 16,000 reruns of 201 keys and about one in 50 did not end within 60 s. Nested waits now
/// sleep: about 20 reruns a round, every round ends.
#[test]
fn wide_par_iter_fan_out_from_sixteen_threads() {
    for round in 0..rounds(10) {
        within(60, move || {
            let f = Cache::new(|h: &Cache<u64, u64>, n: u64| {
                (1..=50.min(n))
                    .into_par_iter()
                    .map(|i| h.get(n - i))
                    .reduce(|| n % 7 + 1, |a, b| (a + b) % 1_000_003)
            });
            from_threads(round, (0..16u64).map(|t| 200 - t * 13 % 97), move |k| f.get(k));
        });
    }
}

/// A genuine cycle (150 -> 180 -> 179 -> ... -> 150) among keys whose functions fan out
/// with `par_iter`, asked for by 4 OS threads: every call must end, with the cycle as an
/// error for the calls that need it.
///
/// It used to hang in most rounds (issue #12): a key computed again because its owner lay
/// below a stuck stack found the cycle, but kept the error to itself, so the owner's other
/// waiters timed out and ran the key again, for ever. A rerun's failure now ends the flight.
#[test]
fn a_cycle_under_par_iter_from_four_threads() {
    for round in 0..rounds(10) {
        within(60, move || {
            let f = Cache::try_new(|h: &Cache<u64, u64, ()>, n: u64| {
                if n < 2 {
                    return Ok(1);
                }
                let mut needs = vec![n - 1, n - 2, n / 2, n / 3];
                if n == 150 {
                    needs.push(180);
                }
                needs.par_iter().map(|&d| h.try_get(d)).try_reduce(|| 0, |a, b| Ok((a + b) % 1_000_003))
            });
            for got in from_threads(round, [200, 187, 174, 161], move |k| f.try_get(k)) {
                assert!(matches!(got, Err(Error::Cycle { .. })), "round {round}: {got:?}");
            }
        });
    }
}

/// A key computed once more by a rayon worker that waited too long for it (the rerun), whose
/// rerun fails while the first computation is still running: the failure reaches the
/// waiter, and is not cached. A later call computes the key again instead of getting the
/// stored failure (found by a hostile review: the failed flight stayed in the slot until
/// the first computation ended, however long that took).
#[test]
fn a_failed_rerun_is_not_cached() {
    within(30, || {
        let runs = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let failed_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, a, once) = (Arc::clone(&runs), Arc::clone(&active), Arc::clone(&failed_once));
        let f = Cache::try_new(move |_: &Cache<u64, u64, String>, n: u64| {
            r.fetch_add(1, Ordering::SeqCst);
            // Only the first run that overlaps another fails: that is the rerun.
            if a.fetch_add(1, Ordering::SeqCst) > 0 && !once.swap(true, Ordering::SeqCst) {
                a.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::failed(format!("a concurrent run of {n}")));
            }
            std::thread::sleep(std::time::Duration::from_millis(5_000)); // slow, but fine
            a.fetch_sub(1, Ordering::SeqCst);
            Ok(n * 10)
        });
        let owner = {
            let f = f.clone();
            std::thread::spawn(move || f.try_get(7))
        };
        while runs.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        // A rayon worker waits, gives up after its patience (500 ms), runs 7 itself and fails.
        // A pool of its own: the global one is busy with the other tests of this binary.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let waited = pool.install(|| f.try_get(7));
        assert!(matches!(waited, Err(Error::Failed { .. })), "the rerun's failure: {waited:?}");
        assert_eq!(f.reruns(), 1);
        // The first computation still sleeps: a call now must run the function again.
        let before = runs.load(Ordering::SeqCst);
        assert_eq!(f.try_get(7), Ok(70), "a later call got the rerun's failure");
        assert_eq!(runs.load(Ordering::SeqCst), before + 1, "the later call did not compute");
        assert_eq!(owner.join().unwrap(), Ok(70));
    });
}

/// A handle given to a background thread that the function does not wait for: its calls
/// are not the function's, so a key asked there may need the function's own key.
#[test]
fn a_handle_in_a_background_thread_is_not_a_cycle() {
    for round in 0..rounds(50) {
        within(30, move || {
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let done_tx = std::sync::Mutex::new(done_tx);
            let f = Cache::try_new(move |h: &Cache<u64, u64, ()>, n: u64| {
                if n == 0 {
                    let h = h.clone();
                    let tx = done_tx.lock().unwrap().clone();
                    // Prefetch key 1 in the background; key 1 needs key 0, which is fine:
                    // key 0 does not wait for it.
                    std::thread::spawn(move || tx.send(h.try_get(1)).unwrap());
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    return Ok(10);
                }
                Ok(h.try_get(n - 1)? + 1)
            });
            assert_eq!(f.try_get(0), Ok(10));
            let background = done_rx.recv().unwrap();
            assert_eq!(background, Ok(11), "round {round}");
        });
    }
}

static GLOBAL: OnceLock<Cache<u64, u64, ()>> = OnceLock::new();

fn global() -> &'static Cache<u64, u64, ()> {
    GLOBAL.get_or_init(|| {
        Cache::try_new(|_: &Cache<u64, u64, ()>, n: u64| {
            // Ignores its handle and recurses through the global: still a cycle 5 -> 6 -> 5.
            match n {
                5 => global().try_get(6),
                6 => global().try_get(5),
                n => Ok(n),
            }
        })
    })
}

#[test]
fn a_cycle_through_a_global_handle_is_reported() {
    let outcome = within(30, || global().try_get(5));
    match outcome {
        Err(Error::Cycle { path, .. }) => assert_eq!(path, "5 -> 6 -> 5"),
        other => panic!("expected a cycle, got {other:?}"),
    }
    // Not cached: still reported the next time, from the other key.
    assert!(matches!(within(30, || global().try_get(6)), Err(Error::Cycle { .. })));
    assert_eq!(global().try_get(7), Ok(7));
}

/// A clone of the function's argument kept in a global acts, on a plain thread, for the
/// computation running there (here 20, computed inside 10), not for the one that cloned it:
/// the cycle 20 -> 30 -> 20 is reported once, and every body runs once.
#[test]
fn a_cloned_handle_in_a_global_acts_for_the_computation_running() {
    within(30, || {
        let kept: Arc<OnceLock<Cache<u64, u64, ()>>> = Arc::new(OnceLock::new());
        let runs: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let (global, counted) = (Arc::clone(&kept), Arc::clone(&runs));
        let cache = Cache::try_new(move |c: &Cache<u64, u64, ()>, n: u64| {
            let sleep = |ms| std::thread::sleep(std::time::Duration::from_millis(ms));
            match n {
                10 => {
                    counted[0].fetch_add(1, Ordering::Relaxed);
                    let _ = global.set(c.clone());
                    Ok(c.try_get(20)? + 1)
                }
                20 => {
                    counted[1].fetch_add(1, Ordering::Relaxed);
                    sleep(100);
                    Ok(global.get().unwrap().try_get(30).map_or(0, |v| v + 1))
                }
                30 => {
                    counted[2].fetch_add(1, Ordering::Relaxed);
                    sleep(50);
                    Ok(c.try_get(20).map_or(0, |v| v + 1))
                }
                _ => Ok(0),
            }
        });
        let other = {
            let cache = cache.clone();
            std::thread::spawn(move || cache.try_get(30))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        let ten = cache.try_get(10);
        let thirty = other.join().unwrap();
        assert_eq!((ten, thirty), (Ok(1), Ok(1)));
        let runs: Vec<usize> = runs.iter().map(|r| r.load(Ordering::Relaxed)).collect();
        assert_eq!(runs, [1, 1, 1], "each body once");
    });
}

/// Work the function does not wait for, through a clone: a plain thread that uses rayon,
/// and `rayon::spawn`. A key asked there may need the function's own key.
#[test]
fn detached_work_through_a_clone_is_never_a_cycle() {
    for detach in ["thread + join", "rayon::spawn"] {
        within(30, move || {
            let (tx, rx) = std::sync::mpsc::channel();
            let tx = std::sync::Mutex::new(tx);
            let cache = Cache::try_new(move |c: &Cache<u64, u64, ()>, n: u64| {
                if n == 1 {
                    let h = c.clone();
                    let tx = tx.lock().unwrap().clone();
                    let job = move || tx.send(h.try_get(2)).unwrap();
                    if detach == "rayon::spawn" {
                        rayon::spawn(job);
                    } else {
                        std::thread::spawn(move || rayon::join(job, || ()));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(30));
                    return Ok(100);
                }
                Ok(c.try_get(1)? + 1)
            });
            assert_eq!(cache.try_get(1), Ok(100));
            assert_eq!(rx.recv().unwrap(), Ok(101), "{detach}");
        });
    }
}

/// A value whose `Clone` panics once: that call fails, the key is not left in flight.
#[test]
fn a_panicking_clone_fails_one_call_and_leaves_no_flight() {
    static ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
    #[derive(Debug, PartialEq)]
    struct Fragile(u64);
    impl Clone for Fragile {
        fn clone(&self) -> Self {
            if ARMED.swap(false, Ordering::SeqCst) {
                panic!("clone failed once");
            }
            Fragile(self.0)
        }
    }
    within(30, || {
        let cache = Cache::new(|_: &Cache<u64, Fragile>, n: u64| Fragile(n));
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get(1)));
        assert!(first.is_err(), "the clone panicked");
        let other = {
            let cache = cache.clone();
            std::thread::spawn(move || cache.get(1))
        };
        assert_eq!(other.join().unwrap(), Fragile(1));
    });
}

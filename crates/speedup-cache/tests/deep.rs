//! Deep cold recursion does not overflow the stack, and the capacity bound holds.

use speedup_cache::Cache;
use speedup_test_support::within;

const P: u64 = 1_000_000_007;

#[test]
fn fib_100_000_cold_on_a_default_stack() {
    within(120, || {
        // A spawned thread has Rust's default 2 MiB stack; 100,000 nested gets need far
        // more, which the cache grows on demand.
        let fib = Cache::new(
            |f: &Cache<u64, u64>, n: u64| if n < 2 { 1 } else { (f.get(n - 1) + f.get(n - 2)) % P },
        );
        let value = std::thread::spawn(move || fib.get(100_000)).join().unwrap();
        let mut a = 1u64;
        let mut b = 1u64;
        for _ in 2..=100_000 {
            (a, b) = (b, (a + b) % P);
        }
        assert_eq!(value, b);
    });
}

#[test]
fn capacity_bounds_the_number_of_values_and_keeps_hot_keys() {
    let cache = Cache::builder().capacity(1000).build(|_: &Cache<u64, u64>, k: u64| k);
    for k in 0..20_000 {
        cache.get(k);
        cache.get(7); // hot
    }
    assert!(cache.len() <= 1000, "len {}", cache.len());
    assert!(cache.contains_key(&7), "the hot key was evicted");
    assert_eq!(cache.get(5), 5, "an evicted key is simply recomputed");
}

/// `fib(n) mod P` through a fresh cache, checked against a loop.
fn cold_fib(n: u64) -> u64 {
    let fib =
        Cache::new(|f: &Cache<u64, u64>, n: u64| if n < 2 { 1 } else { (f.get(n - 1) + f.get(n - 2)) % P });
    let value = fib.get(n);
    let (mut a, mut b) = (1u64, 1u64);
    for _ in 2..=n {
        (a, b) = (b, (a + b) % P);
    }
    assert_eq!(value, b, "fib({n})");
    value
}

/// Deep recursions one after another on one thread, of every depth: within the thread's
/// stack, across many stack segments, and back.
#[test]
fn deep_recursions_one_after_another_on_one_thread() {
    within(120, || {
        std::thread::spawn(|| {
            for n in [30_000, 100_000, 5_000, 60_000, 30_000, 100_000, 1, 30_000] {
                cold_fib(n);
            }
        })
        .join()
        .unwrap();
    });
}

/// Threads recursing deep at once each run on segments of their own.
#[test]
fn deep_recursions_on_several_threads_at_once() {
    within(120, || {
        let threads: Vec<_> =
            (0..4u64).map(|t| std::thread::spawn(move || cold_fib(40_000 + t * 1_000))).collect();
        for t in threads {
            t.join().unwrap();
        }
    });
}

/// A panic deep in a recursion, on a stack segment of its own, reaches the caller as the
/// same panic, and the thread recurses deep again afterwards.
#[test]
fn a_panic_deep_on_a_segment_unwinds_to_the_caller() {
    within(120, || {
        std::thread::spawn(|| {
            for round in 0..3 {
                let fib = Cache::new(|f: &Cache<u64, u64>, n: u64| {
                    assert!(n != 7, "bottom reached");
                    if n < 2 { 1 } else { (f.get(n - 1) + f.get(n - 2)) % P }
                });
                let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fib.get(50_000)));
                let payload = caught.expect_err("the panic at the bottom must reach the top");
                let message = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or(payload.downcast_ref::<&str>().copied());
                assert!(message.is_some_and(|m| m.contains("bottom reached")), "round {round}: {message:?}");
                cold_fib(50_000);
            }
        })
        .join()
        .unwrap();
    });
}

/// A recursion whose depth goes back and forth across a stack segment's edge: each
/// crossing switches stacks.
#[test]
fn a_recursion_oscillating_across_a_segment_edge() {
    const LEAF: u64 = 1 << 63;
    within(120, || {
        std::thread::spawn(|| {
            // A chain 0..=30_000; every 10th link also asks 50 fresh leaves, each a nested
            // computation one level deeper: near a segment's edge, every leaf crosses it.
            let f = Cache::new(|f: &Cache<u64, u64>, n: u64| {
                if n & LEAF != 0 {
                    return n & !LEAF;
                }
                if n == 0 {
                    return 0;
                }
                let below = f.get(n - 1);
                if n.is_multiple_of(10) {
                    (0..50).map(|i| f.get(LEAF | (n * 50 + i))).fold(below, u64::wrapping_add)
                } else {
                    below.wrapping_add(n)
                }
            });
            let expected = (1..=30_000u64).fold(0u64, |acc, n| {
                let acc = acc.wrapping_add(if n.is_multiple_of(10) { 0 } else { n });
                if n.is_multiple_of(10) {
                    (0..50).map(|i| n * 50 + i).fold(acc, u64::wrapping_add)
                } else {
                    acc
                }
            });
            assert_eq!(f.get(30_000), expected);
        })
        .join()
        .unwrap();
    });
}

/// User code guarded by `stacker` itself (a recursive parser, say), deep inside a cached
/// function. `stacker` must measure its room on the stack it actually runs on: the cache
/// grows the stack through `stacker`, so the two agree. (A hostile review crashed a version
/// that switched to stack segments of its own, which `stacker` could not know of: it saw
/// hundreds of MiB of room on an 8 MiB segment and ran into its guard page.)
fn user_recursion_guarded_by_stacker(n: u64) -> u64 {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
        let locals = std::hint::black_box([n; 128]);
        if n == 0 { 0 } else { user_recursion_guarded_by_stacker(n - 1).wrapping_add(locals[1]) }
    })
}

/// First on a `stacker` segment of the caller's own, made after an earlier deep recursion
/// on the thread, then down a cached chain.
#[test]
fn user_code_using_stacker_inside_a_deep_cached_recursion() {
    within(120, || {
        std::thread::spawn(|| {
            let warm = Cache::new(|f: &Cache<u64, u64>, n: u64| if n == 0 { 0 } else { f.get(n - 1) + 1 });
            assert_eq!(warm.get(2_000), 2_000);
            let chain =
                Cache::new(
                    |f: &Cache<u64, u64>, n: u64| {
                        if n == 0 { user_recursion_guarded_by_stacker(20_000) } else { f.get(n - 1) }
                    },
                );
            let value = stacker::grow(512 * 1024, || chain.get(1_000));
            assert_eq!(value, (1..=20_000).sum::<u64>());
        })
        .join()
        .unwrap();
    });
}

/// The same on a thread with a big stack, below a hole of address space freed after the
/// thread started, where new mappings may land above the thread's stack.
#[test]
fn user_code_using_stacker_under_a_big_thread_stack() {
    // 64 MiB: mapped by malloc into the highest gap that fits it; the thread's 64 MiB stack
    // then lies below it.
    let hole: Vec<u8> = Vec::with_capacity(64 << 20);
    let thread = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            drop(hole);
            let chain =
                Cache::new(
                    |f: &Cache<u64, u64>, n: u64| {
                        if n == 0 { user_recursion_guarded_by_stacker(20_000) } else { f.get(n - 1) }
                    },
                );
            assert_eq!(chain.get(20_000), (1..=20_000).sum::<u64>());
        })
        .unwrap();
    within(120, move || thread.join().unwrap());
}

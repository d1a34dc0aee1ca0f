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

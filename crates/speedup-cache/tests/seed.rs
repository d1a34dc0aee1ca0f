//! The seed's examples ("Concurrent Cache"), as tests with asserted output.

use num_bigint::BigUint;
use speedup_cache::Cache;
use speedup_test_support::within;

#[test]
fn fibonacci_as_a_simple_cache() {
    let fibonacci = Cache::new(|f: &Cache<u64, BigUint>, n: u64| {
        if n < 2 {
            return BigUint::from(1u32);
        }
        f.get(n - 1) + f.get(n - 2)
    });
    assert_eq!(fibonacci.get(5).to_string(), "8");
}

#[test]
fn fibonacci_with_apply_async() {
    within(60, || {
        let fibonacci = Cache::new(|f: &Cache<u64, BigUint>, n: u64| {
            if n < 2 {
                return BigUint::from(1u32);
            }
            f.apply_async(n - 1);
            f.apply_async(n - 2);
            f.get(n - 1) + f.get(n - 2)
        });
        assert_eq!(fibonacci.get(100).to_string(), "573147844013817084101");
    });
}

#[test]
fn fibonacci_with_batch_async() {
    within(60, || {
        let fibonacci = Cache::new(|f: &Cache<u64, BigUint>, n: u64| {
            if n < 2 {
                return BigUint::from(1u32);
            }
            f.batch_async([n - 1, n - 2]);
            f.get(n - 1) + f.get(n - 2)
        });
        assert_eq!(fibonacci.get(200).to_string(), "453973694165307953197296969697410619233826");
        assert_eq!(fibonacci.len(), 201);
    });
}

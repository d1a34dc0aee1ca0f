//! The original PySpeedup's factoring example: "when a pair of factors are found, each can be factored
//! asynchronously to find all the prime factors recursively". Each factor pair is handed to
//! `batch_async`, which schedules both halves on the pool only when both are missing.
//!
//! `cargo run --release -p speedup-cache --example factor`

use std::sync::Arc;
use std::time::Instant;

use speedup_cache::Cache;

/// Some factor of `n` other than 1 and `n`, or `None` if `n` is prime (Pollard's rho with a
/// deterministic Miller-Rabin test first).
fn split(n: u64) -> Option<u64> {
    if n < 4 {
        return None;
    }
    if n.is_multiple_of(2) {
        return Some(2);
    }
    if is_prime(n) {
        return None;
    }
    let mulmod = |a: u64, b: u64| ((a as u128 * b as u128) % n as u128) as u64;
    for c in 1.. {
        let f = |x: u64| (mulmod(x, x) + c) % n;
        let (mut x, mut y, mut d) = (2u64, 2u64, 1u64);
        while d == 1 {
            x = f(x);
            y = f(f(y));
            d = gcd(x.abs_diff(y), n);
        }
        if d != n {
            return Some(d);
        }
    }
    None
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mulmod = |a: u64, b: u64| ((a as u128 * b as u128) % n as u128) as u64;
    let powmod = |mut b: u64, mut e: u64| {
        let mut r = 1u64;
        b %= n;
        while e > 0 {
            if e & 1 == 1 {
                r = mulmod(r, b);
            }
            b = mulmod(b, b);
            e >>= 1;
        }
        r
    };
    for p in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let (mut d, mut s) = (n - 1, 0);
    while d.is_multiple_of(2) {
        d /= 2;
        s += 1;
    }
    'witness: for a in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        let mut x = powmod(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mulmod(x, x);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

fn main() {
    let factors = Cache::new(|f: &Cache<u64, Arc<Vec<u64>>>, n: u64| -> Arc<Vec<u64>> {
        let Some(a) = split(n) else {
            return Arc::new(vec![n]);
        };
        let b = n / a;
        f.batch_async([a, b]); // both halves in parallel, if neither is known yet
        let mut all = f.get(a).to_vec();
        all.extend(f.get(b).iter());
        all.sort_unstable();
        Arc::new(all)
    });
    let numbers = [
        600851475143u64,
        1_000_000_016_000_000_063, // 1000000007 * 1000000009
        2u64.pow(62) - 57,
        9_999_999_967 * 3 * 3 * 7,
        u64::MAX,
    ];
    let start = Instant::now();
    for n in numbers {
        let f = factors.get(n);
        assert_eq!(f.iter().product::<u64>(), n, "the factors multiply back");
        assert!(f.iter().all(|&p| is_prime(p)));
        println!("{n} = {}", f.iter().map(u64::to_string).collect::<Vec<_>>().join(" * "));
    }
    println!("{} keys memoized in {:?}", factors.len(), start.elapsed());
}

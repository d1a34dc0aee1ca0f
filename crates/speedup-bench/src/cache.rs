//! speedup-cache vs moka and quick_cache (hits), a plain HashMap memo (cold recursion), and
//! itself without parallelism (branching work).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use num_bigint::BigUint;
use speedup_cache::Cache;

use crate::harness::{Config, Workload, keys, timed};
use crate::memory;

const P: u64 = 1_000_000_007;

/// Hits per second over 10k cached u64 keys, on `threads` threads, one lookup per `probe`
/// key (which the caller generates once, outside any memory measurement).
fn hits(threads: usize, probe: &[u64], get: impl Fn(u64) -> u64 + Sync) -> (u64, Duration) {
    let lookups = probe.len();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let get = &get;
            s.spawn(move || {
                let mut sum = 0u64;
                for k in &probe[t * lookups / threads..(t + 1) * lookups / threads] {
                    sum = sum.wrapping_add(get(k % 10_000));
                }
                black_box(sum);
            });
        }
    });
    (lookups as u64, start.elapsed())
}

fn bench_hits(c: &Config) {
    let lookups = c.size(20_000_000);
    for threads in [1, 2] {
        let label = format!("hit path, 10k cached u64 keys, {threads} thread(s)");
        let Some(mut w) = Workload::new(c, "cache", format!("hits-{threads}"), label) else { continue };
        let probe = keys(lookups, 9);
        // Each run fills a fresh cache before `hits` starts its clock, so that a memory
        // child counts the 10k cached entries.
        w.rate("speedup-cache", "hits/s", || {
            let ours = Cache::new(|_: &Cache<u64, u64>, k: u64| k * 2);
            for k in 0..10_000 {
                ours.get(k);
            }
            hits(threads, &probe, |k| ours.get(k))
        });
        w.rate("moka", "hits/s", || {
            let moka: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(100_000);
            for k in 0..10_000 {
                moka.insert(k, k * 2);
            }
            hits(threads, &probe[..lookups / 10], |k| moka.get(&k).unwrap_or(0))
        });
        w.rate("quick_cache", "hits/s", || {
            let quick: quick_cache::sync::Cache<u64, u64> = quick_cache::sync::Cache::new(100_000);
            for k in 0..10_000 {
                quick.insert(k, k * 2);
            }
            hits(threads, &probe, |k| quick.get(&k).unwrap_or(0))
        });
        w.memory();
    }
}

fn bench_cold(c: &Config) {
    let n = c.size(1_000_000) as u64;
    let label = format!("cold memoized fib mod p, n = {}k, bottom-up", n / 1000);
    let Some(mut w) = Workload::new(c, "cache", "fib", label) else { return };
    w.rate("speedup-cache", "keys/s", || {
        let fib = Cache::new(
            |f: &Cache<u64, u64>, i: u64| if i < 2 { 1 } else { (f.get(i - 1) + f.get(i - 2)) % P },
        );
        let (v, took) = timed(|| (0..n).fold(0, |_, i| fib.get(i)));
        black_box(v);
        (n, took)
    });
    w.rate("std HashMap memo", "keys/s", || {
        fn fib(memo: &mut HashMap<u64, u64>, i: u64) -> u64 {
            if i < 2 {
                return 1;
            }
            if let Some(&v) = memo.get(&i) {
                return v;
            }
            let v = (fib(memo, i - 1) + fib(memo, i - 2)) % P;
            memo.insert(i, v);
            v
        }
        let mut memo = HashMap::new();
        let (v, took) = timed(|| (0..n).fold(0, |_, i| fib(&mut memo, i)));
        black_box(v);
        (n, took)
    });
    w.memory();
}

/// The top-down BigUint recursion: a workload of its own (it was reported by `bench_cold`),
/// so that a memory child runs only it.
fn bench_cold_big(c: &Config) {
    let n = 10_000u64;
    let label = "cold recursive fib(10_000), BigUint, top-down";
    let Some(mut w) = Workload::new(c, "cache", "fib-big", label) else { return };
    w.rate("speedup-cache", "keys/s", || {
        let fib = Cache::new(
            |f: &Cache<u64, BigUint>, i: u64| {
                if i < 2 { BigUint::from(1u32) } else { f.get(i - 1) + f.get(i - 2) }
            },
        );
        let (v, took) = timed(|| fib.get(n));
        black_box(v);
        (n, took)
    });
    // The plain recursion needs a big stack. One thread runs all of its runs, so its stack
    // pages stay touched from one run to the next, as the cache's kept stack segments do on
    // the thread that runs it (each run on a fresh thread would fault them in again).
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn_scoped(s, || {
                w.rate("std HashMap memo", "keys/s", || {
                    fn fib(memo: &mut HashMap<u64, BigUint>, i: u64) -> BigUint {
                        if i < 2 {
                            return BigUint::from(1u32);
                        }
                        if let Some(v) = memo.get(&i) {
                            return v.clone();
                        }
                        let v = fib(memo, i - 1) + fib(memo, i - 2);
                        memo.insert(i, v.clone());
                        v
                    }
                    // The memo is dropped inside the timed span, as before: it is sampled
                    // just before (a run lasts a few milliseconds, and `timed` samples only
                    // after the drop).
                    let (v, took) = timed(|| {
                        let mut memo = HashMap::new();
                        let v = fib(&mut memo, n);
                        memory::sample_now();
                        v
                    });
                    black_box(v);
                    (n, took)
                });
            })
            .expect("cannot start the big-stack thread")
            .join()
            .expect("the plain recursion panicked");
    });
    w.memory();
}

fn spin(seed: u64, iterations: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..iterations {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
    }
    x
}

/// About `micros` of CPU work, calibrated against the clock once.
fn burn(seed: u64, micros: u64) -> u64 {
    static PER_MICRO: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let per_micro = *PER_MICRO.get_or_init(|| {
        let n = 20_000_000;
        let (_, took) = timed(|| spin(1, n));
        (n as f64 / (took.as_secs_f64() * 1e6)).max(1.0) as u64
    });
    spin(seed, micros * per_micro)
}

/// A binary tree of depth 10 whose 1024 leaves each burn ~200 µs: `parallel` picks
/// `batch_async` (both children on the pool) or plain recursion.
fn tree(threads: usize, parallel: bool) -> (u64, Duration) {
    let cache = Cache::builder().threads(threads).build(move |c: &Cache<u64, u64>, node: u64| {
        if node >= 1023 {
            return burn(node, 200);
        }
        let (l, r) = (2 * node + 1, 2 * node + 2);
        if parallel {
            c.batch_async([l, r]);
        }
        c.get(l) ^ c.get(r)
    });
    let (v, took) = timed(|| cache.get(0));
    black_box(v);
    (2047, took)
}

fn bench_parallel(c: &Config) {
    let label = "branching recursion, 1024 leaves x 200 us";
    let Some(mut w) = Workload::new(c, "cache", "tree", label) else { return };
    w.rate("sequential (no batch_async)", "keys/s", || tree(1, false));
    w.rate("speedup-cache, pool of 1", "keys/s", || tree(1, true));
    w.rate("speedup-cache", "keys/s", || tree(2, true));
    w.memory();
}

pub(crate) fn run(c: &Config) {
    eprintln!("speedup-cache ({} runs each)", c.runs);
    workloads(c);
}

/// The workloads that report memory (here, all of them): a memory child of this group
/// calls this too, and only its own workload and implementation run (see [`Workload`]).
pub(crate) fn workloads(c: &Config) {
    bench_hits(c);
    bench_cold(c);
    bench_cold_big(c);
    bench_parallel(c);
}

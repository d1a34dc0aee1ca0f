//! Two worker processes factor overlapping sets of numbers through one Redis: each key is
//! computed once in the pair, and each worker reports how many keys it computed and how
//! many it got from the other.
//!
//! ```text
//! redis-server --port 6379 &            # or any Redis; set REDIS_URL to point elsewhere
//! cargo run --release -p speedup-cache --features redis --example cluster_factor
//! ```
//!
//! Without arguments it starts the two workers (copies of itself) and checks their
//! reports against what is in Redis. `cluster_factor worker <name> <from> <to> [down]` is
//! one worker; start several by hand, on several machines, to see the same thing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use speedup_cache::{Cache, RedisConfig};

/// Numbers per worker; the two ranges overlap by half.
const PER_WORKER: u64 = 400;
/// Large enough that trial division takes about a millisecond for a prime.
const BASE: u64 = 1_000_000_000_000;

/// The prime factors of `n`, smallest first: the smallest factor by trial division, the
/// rest through the cache (so cofactors shared between numbers are computed once).
fn factors(cache: &Cache<u64, Vec<u64>>, n: u64) -> Vec<u64> {
    let smallest = (2..).take_while(|d| d * d <= n).find(|d| n.is_multiple_of(*d)).unwrap_or(n);
    if smallest == n {
        return vec![n];
    }
    let mut all = vec![smallest];
    all.extend(cache.get(n / smallest));
    all
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_string())
}

fn config(name: &str) -> RedisConfig {
    RedisConfig::new(&redis_url(), name)
        .unwrap_or_else(|e| panic!("{e}"))
        // Leave nothing behind in a shared Redis for long.
        .value_ttl(Duration::from_secs(600))
}

fn worker(name: &str, from: u64, to: u64, downwards: bool) {
    let cache = Cache::builder().redis(config(name)).build(factors);
    let started = Instant::now();
    let numbers: Box<dyn Iterator<Item = u64>> =
        if downwards { Box::new((from..to).rev()) } else { Box::new(from..to) };
    for n in numbers {
        let f = cache.get(n);
        assert_eq!(f.iter().product::<u64>(), n, "{n} = {f:?}");
    }
    let stats = cache.redis_stats().unwrap_or_default();
    assert_eq!(stats.errors, 0, "Redis at {} failed: {stats:?}", redis_url());
    println!(
        "numbers {from}..{to}: computed {} keys, got {} from the other worker, in {:.2?}",
        stats.computed,
        stats.fetched,
        started.elapsed()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, name, from, to, rest @ ..] = args.as_slice()
        && role == "worker"
    {
        let parse = |s: &str| s.parse::<u64>().unwrap_or_else(|e| panic!("bad number {s:?}: {e}"));
        worker(name, parse(from), parse(to), rest.first().is_some_and(|d| d == "down"));
        return;
    }

    let mut probe = redis::Client::open(redis_url())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .unwrap_or_else(|e| panic!("no Redis at {} ({e}); start redis-server or set REDIS_URL", redis_url()));
    // A fresh name per run, so that this run computes rather than finding the last one's values.
    let name = format!("cluster-factor-{}", std::process::id());
    let ranges = [(BASE, BASE + PER_WORKER), (BASE + PER_WORKER / 2, BASE + PER_WORKER * 3 / 2)];
    let exe = std::env::current_exe().expect("the example's own path");
    // The first worker walks up, the second down: they meet inside the overlap.
    let workers: Vec<_> = ranges
        .iter()
        .zip(["up", "down"])
        .map(|((from, to), direction)| {
            Command::new(&exe)
                .args(["worker", &name, &from.to_string(), &to.to_string(), direction])
                .stdout(Stdio::piped())
                .spawn()
                .expect("starting a worker")
        })
        .collect();
    let mut computed = 0;
    for (i, child) in workers.into_iter().enumerate() {
        let output = child.wait_with_output().expect("a worker's report");
        assert!(output.status.success(), "worker {} failed", i + 1);
        let report = String::from_utf8_lossy(&output.stdout);
        print!("worker {}: {report}", i + 1);
        computed += report
            .split_once("computed ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .expect("a count in the report");
    }
    let pattern = format!("speedup:{name}:*:v:*");
    let stored: Vec<Vec<u8>> = redis::cmd("KEYS").arg(&pattern).query(&mut probe).expect("listing the keys");
    println!("distinct keys in Redis: {}; computed by the two workers together: {computed}", stored.len());
    assert_eq!(computed, stored.len() as u64, "each key is computed exactly once");
    println!("each key was computed exactly once");
}

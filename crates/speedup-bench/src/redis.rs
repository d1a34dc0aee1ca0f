//! speedup-cache's Redis tier: a hit from Redis against recomputing a ~1 ms function, and a
//! cold run of two worker processes sharing one Redis against one process alone.
//!
//! Needs `redis-server` (it starts its own on a free loopback port); without it, this
//! group is skipped with a message.

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use speedup_cache::{Cache, RedisConfig};

use crate::harness::{Config, rate, report, timed};

/// CPU-bound work taking `iters` rounds (calibrated to about 1 ms).
fn work(n: u64, iters: u64) -> u64 {
    let mut x = n ^ 0x9E37_79B9_7F4A_7C15;
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

/// Rounds of [`work`] that take about one millisecond on this machine.
fn calibrate() -> u64 {
    let probe = 1_000_000;
    let (_, took) = timed(|| work(1, probe));
    (probe as f64 / took.as_secs_f64() / 1000.0) as u64
}

fn cache(url: &str, name: &str, iters: u64) -> Cache<u64, u64> {
    let config = RedisConfig::new(url, name).expect("a valid config");
    Cache::builder().redis(config).build(move |_: &Cache<u64, u64>, n: u64| work(n, iters))
}

/// Child process: `--child redis <url> <name> <keys> <offset> <iters>`; gets every key,
/// starting at `offset` and wrapping around.
pub(crate) fn child(args: &[String]) {
    let [url, name, keys, offset, iters] = args else { panic!("bad child arguments {args:?}") };
    let (keys, offset, iters): (u64, u64, u64) =
        (keys.parse().unwrap(), offset.parse().unwrap(), iters.parse().unwrap());
    let cache = cache(url, name, iters);
    for k in (offset..keys).chain(0..offset) {
        black_box(cache.get(k));
    }
    let stats = cache.redis_stats().unwrap_or_default();
    assert_eq!(stats.errors, 0, "{stats:?}");
}

fn bench_hits(c: &Config, url: &str, iters: u64) {
    let keys = c.size(2000) as u64;
    let filler = cache(url, "bench-hits", iters);
    for k in 0..keys {
        filler.get(k);
    }
    let label = format!("get {keys} keys: Redis-tier hit vs recomputing ~1 ms");
    let ours = || {
        // A fresh cache each run: nothing local, everything from Redis.
        let reader = cache(url, "bench-hits", iters);
        let (_, took) = timed(|| {
            for k in 0..keys {
                black_box(reader.get(k));
            }
        });
        assert_eq!(reader.redis_stats().unwrap_or_default().fetched, keys);
        (keys, took)
    };
    // The floor: one plain GET round trip per key with the same client, no validation.
    let names: Vec<Vec<u8>> = (0..keys).map(|k| filler.redis_key(&k).unwrap_or_default()).collect();
    let mut conn = redis::Client::open(url).and_then(|c| c.get_connection()).expect("a Redis connection");
    let mut plain_get = || {
        let (_, took) = timed(|| {
            for name in &names {
                let bytes: Vec<u8> = redis::cmd("GET").arg(name).query(&mut conn).expect("GET");
                black_box(bytes);
            }
        });
        (keys, took)
    };
    // Loopback latency on a VM drifts within seconds: alternate the two, run by run.
    let (r_ours, r_get) = interleaved(c.runs, ours, &mut plain_get);
    report("redis", &label, "speedup-cache", r_ours, "keys/s", c.runs, true);
    report("redis", &label, "redis-rs GET (1 round trip)", r_get, "keys/s", c.runs, true);
    let sample = keys.min(200);
    let r = rate(c.runs, || {
        let (sum, took) = timed(|| (0..sample).map(|k| work(k, iters)).fold(0, u64::wrapping_add));
        black_box(sum);
        (sample, took)
    });
    report("redis", &label, "recompute", r, "keys/s", c.runs, true);
}

/// [`rate`] of two workloads whose runs alternate, so that drift hits both alike.
fn interleaved(
    runs: usize,
    mut a: impl FnMut() -> (u64, std::time::Duration),
    mut b: impl FnMut() -> (u64, std::time::Duration),
) -> ((f64, f64, f64), (f64, f64, f64)) {
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ra.push(a());
        rb.push(b());
    }
    let replay = |results: Vec<(u64, std::time::Duration)>| {
        let mut results = results.into_iter();
        rate(runs, || results.next().expect("one result per run"))
    };
    (replay(ra), replay(rb))
}

fn bench_cold_workers(c: &Config, url: &str, iters: u64) {
    let keys = c.size(2000) as u64;
    let label = format!("cold run, {keys} keys of ~1 ms: 2 worker processes vs 1");
    let mut round = 0;
    let mut run = |workers: u64| {
        round += 1;
        let name = format!("bench-cold-{}-{round}", std::process::id());
        let start = Instant::now();
        let children: Vec<_> = (0..workers)
            .map(|w| {
                Command::new(std::env::current_exe().unwrap())
                    .args(["--child", "redis", url, &name])
                    .args([keys, w * keys / workers, iters].map(|n| n.to_string()))
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        (keys, start.elapsed())
    };
    let two = rate(c.runs, || run(2));
    report("redis", &label, "speedup-cache", two, "keys/s", c.runs, true);
    let one = rate(c.runs, || run(1));
    report("redis", &label, "1 process", one, "keys/s", c.runs, true);
    // Context, not a peer: the same work with no Redis at all (a plain in-process Cache).
    let alone = rate(c.runs, || {
        let cache = Cache::new(move |_: &Cache<u64, u64>, n: u64| work(n, iters));
        let (sum, took) = timed(|| (0..keys).map(|k| cache.get(k)).fold(0, u64::wrapping_add));
        black_box(sum);
        (keys, took)
    });
    report("redis", &label, "1 process, no Redis", alone, "keys/s", c.runs, true);
}

pub(crate) fn run(c: &Config) {
    let Some(server) = speedup_test_support::RedisServer::start() else {
        eprintln!(
            "speedup-cache Redis tier: skipped (redis-server is not installed; apt-get install redis-server)"
        );
        return;
    };
    let iters = calibrate();
    eprintln!("speedup-cache Redis tier ({} runs each; ~1 ms = {iters} rounds of work)", c.runs);
    bench_hits(c, &server.url(), iters);
    bench_cold_workers(c, &server.url(), iters);
}

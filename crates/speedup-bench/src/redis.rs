//! speedup-cache's Redis tier: a hit from Redis against recomputing a ~1 ms function, and a
//! cold run of two worker processes sharing one Redis against one process alone.
//!
//! Needs `redis-server` (it starts its own on a free loopback port); without it, this
//! group is skipped with a message.

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use speedup_cache::{Cache, RedisConfig};

use crate::harness::{Config, Workload, rate, report, timed};
use crate::memory::{self, Rss};

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

/// Child process: `--child redis <url> <name> <keys> <offset> <iters> [peak]`; gets every
/// key, starting at `offset` and wrapping around. With `peak` (the workers of a memory
/// child), it measures its own peak memory and prints it for [`bench_cold_workers`].
pub(crate) fn child(args: &[String]) {
    let [url, name, keys, offset, iters, rest @ ..] = args else { panic!("bad child arguments {args:?}") };
    let (keys, offset, iters): (u64, u64, u64) =
        (keys.parse().unwrap(), offset.parse().unwrap(), iters.parse().unwrap());
    let worker = || {
        let cache = cache(url, name, iters);
        for k in (offset..keys).chain(0..offset) {
            black_box(cache.get(k));
        }
        let stats = cache.redis_stats().unwrap_or_default();
        assert_eq!(stats.errors, 0, "{stats:?}");
        cache
    };
    if rest.first().is_some_and(|a| a == "peak") {
        println!("{}", memory::peak(worker).1);
    } else {
        worker();
    }
}

/// What every memory child of the group needs from the benchmark run: the server's URL and
/// the calibrated work (see [`peak_child`]).
fn child_args(url: &str, iters: u64) -> Vec<String> {
    vec![url.to_string(), iters.to_string()]
}

/// The floor of the hit workload: a plain GET per key with the same client.
const GET: &str = "redis-rs GET (1 round trip)";

fn bench_hits(c: &Config, url: &str, iters: u64) {
    let keys = c.size(2000) as u64;
    let label = format!("get {keys} keys: Redis-tier hit vs recomputing ~1 ms");
    let Some(w) = Workload::new(c, "redis", "hits", label.clone()) else { return };
    let mut w = w.with_args(child_args(url, iters));
    // The benchmark run puts the keys in Redis, where its memory children find them. Only
    // the GET floor needs their names: a memory child for another implementation makes no
    // cache before the measurement (its code would then be in memory before it starts).
    let filler = w.runs(GET).then(|| cache(url, "bench-hits", iters));
    if let Some(filler) = filler.as_ref().filter(|_| !w.in_child()) {
        for k in 0..keys {
            filler.get(k);
        }
    }
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
    let names: Vec<Vec<u8>> = filler
        .iter()
        .flat_map(|filler| (0..keys).map(|k| filler.redis_key(&k).unwrap_or_default()))
        .collect();
    // Connected in the first run, before its clock starts: a memory child then counts the
    // connection, as it counts the one each run of ours makes.
    let mut conn = None;
    let mut plain_get = || {
        let conn = conn.get_or_insert_with(|| {
            redis::Client::open(url).and_then(|c| c.get_connection()).expect("a Redis connection")
        });
        let (_, took) = timed(|| {
            for name in &names {
                let bytes: Vec<u8> = redis::cmd("GET").arg(name).query(conn).expect("GET");
                black_box(bytes);
            }
        });
        (keys, took)
    };
    w.peak("speedup-cache", ours);
    w.peak(GET, &mut plain_get);
    if !w.in_child() {
        // Loopback latency on a VM drifts within seconds: alternate the two, run by run.
        let (r_ours, r_get) = interleaved(c.runs, ours, &mut plain_get);
        report("redis", &label, "speedup-cache", r_ours, "keys/s", c.runs, true);
        report("redis", &label, GET, r_get, "keys/s", c.runs, true);
    }
    let sample = keys.min(200);
    w.rate("recompute", "keys/s", || {
        let (sum, took) = timed(|| (0..sample).map(|k| work(k, iters)).fold(0, u64::wrapping_add));
        black_box(sum);
        (sample, took)
    });
    w.memory();
}

/// [`rate`] of two workloads whose runs alternate, so that drift hits both alike.
fn interleaved(
    runs: usize,
    mut a: impl FnMut() -> (u64, Duration),
    mut b: impl FnMut() -> (u64, Duration),
) -> ((f64, f64, f64), (f64, f64, f64)) {
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ra.push(a());
        rb.push(b());
    }
    let replay = |results: Vec<(u64, Duration)>| {
        let mut results = results.into_iter();
        rate(runs, || results.next().expect("one result per run"))
    };
    (replay(ra), replay(rb))
}

fn bench_cold_workers(c: &Config, url: &str, iters: u64) {
    let keys = c.size(2000) as u64;
    let label = format!("cold run, {keys} keys of ~1 ms: 2 worker processes vs 1");
    let Some(w) = Workload::new(c, "redis", "cold", label.clone()) else { return };
    let mut w = w.with_args(child_args(url, iters));
    let mut round = 0;
    // With `measure`, each worker measures its own peak memory and the sum is returned
    // (the workload's memory is theirs, not this process's); zero otherwise.
    let mut run = |workers: u64, measure: bool| {
        round += 1;
        let name = format!("bench-cold-{}-{round}", std::process::id());
        let start = Instant::now();
        let children: Vec<_> = (0..workers)
            .map(|w| {
                Command::new(std::env::current_exe().unwrap())
                    .args(["--child", "redis", url, &name])
                    .args([keys, w * keys / workers, iters].map(|n| n.to_string()))
                    .args(measure.then_some("peak"))
                    .stdout(if measure { Stdio::piped() } else { Stdio::inherit() })
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut peaks = Rss::default();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            if measure {
                peaks = peaks + Rss::parse(&String::from_utf8_lossy(&out.stdout));
            }
        }
        ((keys, start.elapsed()), peaks)
    };
    w.peak_from("speedup-cache", || run(2, true).1);
    w.peak_from("1 process", || run(1, true).1);
    if !w.in_child() {
        let two = rate(c.runs, || run(2, false).0);
        report("redis", &label, "speedup-cache", two, "keys/s", c.runs, true);
        let one = rate(c.runs, || run(1, false).0);
        report("redis", &label, "1 process", one, "keys/s", c.runs, true);
    }
    // Context, not a peer: the same work with no Redis at all (a plain in-process Cache).
    w.rate("1 process, no Redis", "keys/s", || {
        let cache = Cache::new(move |_: &Cache<u64, u64>, n: u64| work(n, iters));
        let (sum, took) = timed(|| (0..keys).map(|k| cache.get(k)).fold(0, u64::wrapping_add));
        black_box(sum);
        (keys, took)
    });
    w.memory();
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
    workloads(c, &server.url(), iters);
}

/// A memory child of this group: it runs against the benchmark run's server, with the
/// benchmark run's calibration (see [`child_args`]), so that it measures the same workload.
pub(crate) fn peak_child(c: &Config) {
    let args = c.peak.as_ref().map_or(&[][..], |t| t.args.as_slice());
    let [url, iters] = args else { panic!("a Redis memory child needs URL ITERS, not {args:?}") };
    workloads(c, url, iters.parse().expect("ITERS, a number"));
}

/// The workloads (all report memory); in a memory child only its own runs (see [`Workload`]).
fn workloads(c: &Config, url: &str, iters: u64) {
    bench_hits(c, url, iters);
    bench_cold_workers(c, url, iters);
}

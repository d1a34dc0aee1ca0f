//! The Redis tier against a real `redis-server` that each test starts on a free loopback
//! port (see `speedup_test_support::RedisServer`; a missing server fails the test in CI).
#![cfg(feature = "redis")]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::Commands;
use speedup_cache::{Cache, Error, FailMode, RedisConfig};
use speedup_test_support::{Recorded, Recorder, RedisServer, free_port, panic_message, within};

/// Counts computations in Redis itself (`INCR count:<n>`), so that workers in other
/// processes add to the same counters.
fn count_in_redis(url: &str, n: u64) {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: i64 = conn.incr(format!("count:{n}"), 1).unwrap();
}

fn counts(server: &RedisServer, keys: impl IntoIterator<Item = u64>) -> Vec<(u64, i64)> {
    let mut conn = server.connection();
    keys.into_iter()
        .map(|n| (n, conn.get::<_, Option<i64>>(format!("count:{n}")).unwrap().unwrap_or(0)))
        .collect()
}

/// The test function: the sum of the divisors of `n`, computed slowly enough that workers
/// overlap, and counted in Redis.
fn divisor_sums(url: &str, config: RedisConfig, delay: Duration) -> Cache<u64, u64> {
    let url = url.to_string();
    Cache::builder().redis(config).build(move |_: &Cache<u64, u64>, n: u64| {
        count_in_redis(&url, n);
        std::thread::sleep(delay);
        (1..=n).filter(|d| n.is_multiple_of(*d)).sum()
    })
}

fn sigma(n: u64) -> u64 {
    (1..=n).filter(|d| n.is_multiple_of(*d)).sum()
}

#[test]
fn values_computed_by_one_cache_are_fetched_by_another() {
    let Some(server) = RedisServer::start() else { return };
    let config = RedisConfig::new(&server.url(), "shared").unwrap();
    let first = divisor_sums(&server.url(), config.clone(), Duration::ZERO);
    for n in 1..=100 {
        assert_eq!(first.get(n), sigma(n));
    }
    let stats = first.redis_stats().unwrap();
    assert_eq!((stats.computed, stats.fetched, stats.errors), (100, 0, 0));

    // A fresh cache (a restarted worker) finds everything in Redis.
    let calls = Arc::new(AtomicUsize::new(0));
    let calls2 = Arc::clone(&calls);
    let second = Cache::builder().redis(config).build(move |_: &Cache<u64, u64>, n: u64| {
        calls2.fetch_add(1, Ordering::SeqCst);
        sigma(n)
    });
    for n in 1..=100 {
        assert_eq!(second.get(n), sigma(n));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing was recomputed");
    assert_eq!(second.redis_stats().unwrap().fetched, 100);
    assert!(counts(&server, 1..=100).iter().all(|&(_, c)| c == 1));
}

#[test]
fn names_types_and_versions_never_share_values() {
    let Some(server) = RedisServer::start() else { return };
    let url = server.url();
    let base = divisor_sums(&url, RedisConfig::new(&url, "ns").unwrap(), Duration::ZERO);
    assert_eq!(base.get(12), 28);
    let v2 = divisor_sums(&url, RedisConfig::new(&url, "ns").unwrap().version(2), Duration::ZERO);
    assert_eq!(v2.get(12), 28);
    let other_name = divisor_sums(&url, RedisConfig::new(&url, "ns2").unwrap(), Duration::ZERO);
    assert_eq!(other_name.get(12), 28);
    let other_type = Cache::builder()
        .redis(RedisConfig::new(&url, "ns").unwrap())
        .build(|_: &Cache<u64, u32>, n: u64| sigma(n) as u32);
    assert_eq!(other_type.get(12), 28);
    for cache in [&base, &v2, &other_name] {
        assert_eq!(cache.redis_stats().unwrap().computed, 1);
    }
    assert_eq!(other_type.redis_stats().unwrap().computed, 1);
    assert_eq!(counts(&server, [12]), [(12, 3)], "three of the four computed; the u32 cache does not count");
    let keys = [base.redis_key(&12), v2.redis_key(&12), other_name.redis_key(&12), other_type.redis_key(&12)];
    for (i, a) in keys.iter().enumerate() {
        assert!(a.as_ref().unwrap().starts_with(b"speedup:ns"));
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn workers_in_one_process_compute_each_key_once() {
    let Some(server) = RedisServer::start() else { return };
    let url = server.url();
    // Four independent caches (four workers) over overlapping ranges, two threads each.
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            (w, divisor_sums(&url, RedisConfig::new(&url, "overlap").unwrap(), Duration::from_millis(2)))
        })
        .collect();
    within(120, move || {
        std::thread::scope(|s| {
            for (w, cache) in &workers {
                for t in 0..2u64 {
                    s.spawn(move || {
                        for n in (w * 50 + 1..=w * 50 + 200).filter(|n| n % 2 == t) {
                            assert_eq!(cache.get(n), sigma(n));
                        }
                    });
                }
            }
        });
        let mut computed = 0;
        for (_, cache) in &workers {
            let stats = cache.redis_stats().unwrap();
            assert_eq!(stats.computed + stats.fetched, 200, "{stats:?}");
            assert_eq!((stats.errors, stats.lost_leases, stats.unshared), (0, 0, 0), "{stats:?}");
            computed += stats.computed;
        }
        assert_eq!(computed, 350, "each of the 350 distinct keys computed by exactly one worker");
    });
    let counts = counts(&server, 1..=350);
    assert!(
        counts.iter().all(|&(_, c)| c == 1),
        "{:?}",
        counts.iter().filter(|c| c.1 != 1).collect::<Vec<_>>()
    );
}

/// Runs this test binary again as a worker process (see `worker_process`).
fn spawn_worker(url: &str, role: &str, from: u64, to: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["worker_process", "--exact", "--nocapture", "--test-threads=1"])
        .env("SPEEDUP_REDIS_WORKER", role)
        .env("SPEEDUP_REDIS_URL", url)
        .env("SPEEDUP_REDIS_RANGE", format!("{from} {to}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Not a test on its own: the body of the worker processes the tests below start.
#[test]
fn worker_process() {
    let Ok(role) = std::env::var("SPEEDUP_REDIS_WORKER") else { return };
    let url = std::env::var("SPEEDUP_REDIS_URL").unwrap();
    let range = std::env::var("SPEEDUP_REDIS_RANGE").unwrap();
    let (from, to) = range.split_once(' ').unwrap();
    let (from, to): (u64, u64) = (from.parse().unwrap(), to.parse().unwrap());
    match role.as_str() {
        "range" => {
            // The crash test below sets its own name and a short lease.
            let name = std::env::var("SPEEDUP_REDIS_NAME").unwrap_or_else(|_| "processes".into());
            let lease_ms = std::env::var("SPEEDUP_REDIS_LEASE_MS").map_or(10_000, |ms| ms.parse().unwrap());
            let config = RedisConfig::new(&url, &name).unwrap().lease_ttl(Duration::from_millis(lease_ms));
            let cache = divisor_sums(&url, config, Duration::from_millis(2));
            std::thread::scope(|s| {
                for t in 0..2 {
                    let cache = &cache;
                    s.spawn(move || {
                        for n in (from..to).filter(|n| n % 2 == t) {
                            assert_eq!(cache.get(n), sigma(n));
                        }
                    });
                }
            });
            let stats = cache.redis_stats().unwrap();
            println!("WORKER computed={} fetched={}", stats.computed, stats.fetched);
        }
        "hang" => {
            // Takes the lease on `from`, says so through the counter, and never finishes.
            let config = RedisConfig::new(&url, "takeover").unwrap().lease_ttl(Duration::from_secs(1));
            let cache = divisor_sums(&url, config, Duration::from_secs(3600));
            cache.get(from);
        }
        other => panic!("unknown worker role {other}"),
    }
}

#[test]
fn two_processes_compute_overlapping_keys_once() {
    let Some(server) = RedisServer::start() else { return };
    let a = spawn_worker(&server.url(), "range", 1, 401);
    let b = spawn_worker(&server.url(), "range", 201, 601);
    let mut total = 0;
    for child in [a, b] {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let stdout = String::from_utf8(output.stdout).unwrap();
        // The harness prints "test worker_process ... " on the same line first.
        let line = stdout.lines().find_map(|l| l.split_once("WORKER ")).expect("the worker's report").1;
        let field = |name: &str| -> u64 {
            line.split(' ').find_map(|f| f.strip_prefix(name)).unwrap().parse().unwrap()
        };
        assert_eq!(field("computed=") + field("fetched="), 400, "{line}");
        total += field("computed=");
    }
    assert_eq!(total, 600, "600 distinct keys, each computed by one of the two processes");
    let counts = counts(&server, 1..601);
    assert!(
        counts.iter().all(|&(_, c)| c == 1),
        "{:?}",
        counts.iter().filter(|c| c.1 != 1).collect::<Vec<_>>()
    );
}

/// Workers SIGKILLed at random points of a shared run: the survivors and the restarted
/// workers finish it, every value in Redis is right, and no key is computed more than once
/// beyond the at most two keys (one per thread) a killed worker had in flight.
/// `SPEEDUP_REDIS_KILL_ROUNDS` sets the rounds (default 3; `cargo xtask soak` runs 30).
#[test]
fn workers_killed_at_random_leave_every_key_right() {
    let Some(server) = RedisServer::start() else { return };
    let url = server.url();
    let rounds: u64 = std::env::var("SPEEDUP_REDIS_KILL_ROUNDS").map_or(3, |r| r.parse().unwrap());
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let ranges = [(1, 401), (201, 601)];
    let mut killed_mid_run = 0;
    for round in 0..rounds {
        let _: () = redis::cmd("FLUSHALL").query(&mut server.connection()).unwrap();
        let spawn = |(from, to): (u64, u64)| {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command
                .args(["worker_process", "--exact", "--nocapture", "--test-threads=1"])
                .env("SPEEDUP_REDIS_WORKER", "range")
                .env("SPEEDUP_REDIS_URL", &url)
                .env("SPEEDUP_REDIS_RANGE", format!("{from} {to}"))
                .env("SPEEDUP_REDIS_NAME", "crash")
                .env("SPEEDUP_REDIS_LEASE_MS", "300")
                .stdout(Stdio::null());
            command.spawn().unwrap()
        };
        let mut workers: Vec<_> = ranges.iter().map(|&r| spawn(r)).collect();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let victim = (round % 2) as usize;
        std::thread::sleep(Duration::from_millis(20 + seed % 200));
        if workers[victim].try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        workers[victim].kill().unwrap();
        workers[victim].wait().unwrap();
        workers[victim] = spawn(ranges[victim]);
        for mut worker in workers {
            let status = worker.wait().unwrap();
            assert!(status.success(), "round {round}: a worker failed ({status})");
        }
        let reader = Cache::builder()
            .redis(RedisConfig::new(&url, "crash").unwrap())
            .build(|_: &Cache<u64, u64>, _: u64| panic!("every value must be in Redis"));
        for n in 1..601 {
            assert_eq!(reader.get(n), sigma(n), "round {round}: key {n}");
        }
        let counts = counts(&server, 1..601);
        let total: i64 = counts.iter().map(|c| c.1).sum();
        assert!(counts.iter().all(|&(_, c)| c >= 1));
        assert!(total - 600 <= 2, "round {round}: {} recomputations after one kill", total - 600);
    }
    eprintln!("{killed_mid_run} of {rounds} kills hit a running worker");
    assert!(killed_mid_run >= 1, "no worker was killed while it ran: the test tested nothing");
}

#[test]
fn a_killed_worker_is_taken_over_after_the_lease_ttl() {
    let Some(server) = RedisServer::start() else { return };
    let url = server.url();
    let mut hung = spawn_worker(&url, "hang", 7, 8);
    // Wait until the worker holds the lease (its computation has started).
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts(&server, [7])[0].1 == 0 {
        assert!(Instant::now() < deadline, "the worker process never started computing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let config = RedisConfig::new(&url, "takeover").unwrap().lease_ttl(Duration::from_secs(1));
    let cache = divisor_sums(&url, config, Duration::ZERO);
    let waiter = {
        let cache = cache.clone();
        std::thread::spawn(move || cache.get(7))
    };
    // The worker keeps its lease alive while it lives: the waiter must still be waiting
    // after more than two lease TTLs.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(!waiter.is_finished(), "a live worker's lease was taken");
    assert_eq!(cache.redis_stats().unwrap().waited, 1);
    hung.kill().unwrap();
    hung.wait().unwrap();
    let value = within(30, move || waiter.join().unwrap());
    assert_eq!(value, 8);
    let stats = cache.redis_stats().unwrap();
    assert_eq!((stats.waited, stats.taken_over, stats.computed), (1, 1, 1), "{stats:?}");
    assert_eq!(counts(&server, [7]), [(7, 2)], "the dead worker's attempt and the takeover");
}

#[test]
fn leases_are_refreshed_while_a_long_computation_runs() {
    let Some(server) = RedisServer::start() else { return };
    let url = server.url();
    let config = RedisConfig::new(&url, "refresh").unwrap().lease_ttl(Duration::from_millis(500));
    let slow = divisor_sums(&url, config.clone(), Duration::from_millis(2500));
    let other = divisor_sums(&url, config, Duration::ZERO);
    let computing = {
        let slow = slow.clone();
        std::thread::spawn(move || slow.get(10))
    };
    while counts(&server, [10])[0].1 == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let value = within(30, move || other.get(10));
    assert_eq!(value, 18);
    assert_eq!(computing.join().unwrap(), 18);
    assert_eq!(counts(&server, [10]), [(10, 1)], "5 lease TTLs long, yet computed once");
    assert_eq!(slow.redis_stats().unwrap().lost_leases, 0);
}

#[test]
fn a_lease_lost_mid_computation_is_counted_and_the_value_still_lands() {
    let Some(server) = RedisServer::start() else { return };
    let url = server.url();
    let config = RedisConfig::new(&url, "lost").unwrap();
    let slow = divisor_sums(&url, config.clone(), Duration::from_millis(800));
    let computing = {
        let slow = slow.clone();
        std::thread::spawn(move || slow.get(12))
    };
    let mut conn = server.connection();
    let lease = loop {
        let leases: Vec<Vec<u8>> = conn.keys("speedup:lost:*:l:*").unwrap();
        if let Some(lease) = leases.into_iter().next() {
            break lease;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // As if the holder had stalled past its TTL: the lease vanishes, another worker takes it.
    let _: () = conn.del(&lease).unwrap();
    let other = divisor_sums(&url, config, Duration::ZERO);
    assert_eq!(other.get(12), 28);
    assert_eq!(other.redis_stats().unwrap().computed, 1);
    assert_eq!(within(20, move || computing.join().unwrap()), 28);
    let stats = slow.redis_stats().unwrap();
    assert_eq!((stats.computed, stats.lost_leases), (1, 1), "{stats:?}");
    assert_eq!(counts(&server, [12]), [(12, 2)]);
    let stored: Vec<u8> = conn.get(slow.redis_key(&12).unwrap()).unwrap();
    assert!(!stored.is_empty());
    assert!(conn.keys::<_, Vec<Vec<u8>>>("speedup:lost:*:l:*").unwrap().is_empty(), "no lease left");
}

#[test]
fn waiters_wake_on_the_announcement_not_the_poll() {
    let Some(server) = RedisServer::start() else { return };
    let url = server.url();
    // Without the announcement the waiter would sleep a minute (poll and lease TTL).
    let config = RedisConfig::new(&url, "announce")
        .unwrap()
        .lease_ttl(Duration::from_secs(60))
        .poll_interval(Duration::from_secs(60));
    let slow = divisor_sums(&url, config.clone(), Duration::from_millis(500));
    let other = divisor_sums(&url, config, Duration::ZERO);
    let computing = {
        let slow = slow.clone();
        std::thread::spawn(move || slow.get(6))
    };
    while counts(&server, [6])[0].1 == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let value = within(20, move || {
        let v = other.get(6);
        (v, other.redis_stats().unwrap())
    });
    assert_eq!(value.0, 12);
    assert_eq!((value.1.waited, value.1.fetched), (1, 1));
    computing.join().unwrap();
}

#[test]
fn a_failed_computation_releases_its_lease_at_once() {
    let Some(server) = RedisServer::start() else { return };
    let url = server.url();
    let config = RedisConfig::new(&url, "failure")
        .unwrap()
        .lease_ttl(Duration::from_secs(60))
        .poll_interval(Duration::from_secs(60));
    let failing = {
        let url = url.clone();
        Cache::builder().redis(config.clone()).build(move |_: &Cache<u64, u64>, n: u64| {
            count_in_redis(&url, n);
            std::thread::sleep(Duration::from_millis(300));
            panic!("no value for {n}")
        })
    };
    let other = divisor_sums(&url, config, Duration::ZERO);
    let attempt = {
        let failing = failing.clone();
        std::thread::spawn(move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| failing.get(5))))
    };
    while counts(&server, [5])[0].1 == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The waiter takes over as soon as the failure releases the lease, not after 60 s.
    let (value, stats) = within(20, move || (other.get(5), other.redis_stats().unwrap()));
    assert_eq!(value, 6);
    assert_eq!((stats.waited, stats.taken_over, stats.computed), (1, 1, 1));
    let panic = attempt.join().unwrap().unwrap_err();
    assert!(panic_message(&*panic).contains("no value for 5"));
    let lease_keys: Vec<Vec<u8>> = server.connection().keys("speedup:failure:*:l:*").unwrap();
    assert!(lease_keys.is_empty(), "no lease left behind");
}

#[test]
fn redis_stopped_mid_run_fails_open_and_comes_back() {
    let Some(mut server) = RedisServer::start() else { return };
    let url = server.url();
    let config = RedisConfig::new(&url, "outage")
        .unwrap()
        .timeout(Duration::from_millis(500))
        .retry_after(Duration::from_millis(200));
    let cache = divisor_sums(&url, config, Duration::ZERO);
    // The function itself counts in Redis; while Redis is down it must not.
    let offline = Cache::builder()
        .redis(RedisConfig::new(&url, "outage").unwrap().retry_after(Duration::from_millis(200)))
        .build(|_: &Cache<u64, u64>, n: u64| sigma(n));
    for n in 1..=20 {
        assert_eq!(cache.get(n), sigma(n));
    }
    server.stop();
    within(60, move || {
        for n in 21..=40 {
            assert_eq!(offline.get(n), sigma(n), "computed locally while Redis is down");
        }
        let stats = offline.redis_stats().unwrap();
        assert_eq!(stats.unshared, 20, "{stats:?}");
        assert!(stats.errors >= 1, "{stats:?}");
        offline
    });
    server.restart();
    std::thread::sleep(Duration::from_millis(300)); // past retry_after
    assert_eq!(cache.get(45), sigma(45));
    let key = cache.redis_key(&45).unwrap();
    assert!(server.connection().exists::<_, bool>(key).unwrap(), "the tier is used again after the outage");
}

#[test]
fn a_worker_waiting_on_a_lease_when_redis_stops_computes_locally() {
    let Some(mut server) = RedisServer::start() else { return };
    let url = server.url();
    let config = RedisConfig::new(&url, "waiting")
        .unwrap()
        .lease_ttl(Duration::from_secs(60))
        .poll_interval(Duration::from_millis(200))
        .timeout(Duration::from_millis(500));
    let holder = Cache::builder().redis(config.clone()).build(|_: &Cache<u64, u64>, n: u64| {
        std::thread::sleep(Duration::from_secs(2));
        sigma(n)
    });
    let waiter = Cache::builder().redis(config).build(|_: &Cache<u64, u64>, n: u64| sigma(n));
    let holding = {
        let holder = holder.clone();
        std::thread::spawn(move || holder.get(9))
    };
    let mut conn = server.connection();
    while conn.keys::<_, Vec<Vec<u8>>>("speedup:waiting:*:l:*").unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let waiting = {
        let waiter = waiter.clone();
        std::thread::spawn(move || waiter.get(9))
    };
    std::thread::sleep(Duration::from_millis(300));
    server.stop();
    // The 60 s lease is gone with the server: the waiter computes the key itself.
    let value = within(20, move || waiting.join().unwrap());
    assert_eq!(value, 13);
    let stats = waiter.redis_stats().unwrap();
    assert_eq!((stats.waited, stats.unshared), (1, 1), "{stats:?}");
    assert_eq!(within(20, move || holding.join().unwrap()), 13, "the holder's value is kept locally");
    assert!(holder.redis_stats().unwrap().errors >= 1);
}

#[test]
fn a_frozen_redis_times_out_instead_of_hanging() {
    let Some(server) = RedisServer::start() else { return };
    let config = RedisConfig::new(&server.url(), "frozen").unwrap().timeout(Duration::from_millis(300));
    let cache = Cache::builder().redis(config.clone()).build(|_: &Cache<u64, u64>, n: u64| sigma(n));
    assert_eq!(cache.get(2), 3);
    server.pause();
    let stats = within(30, move || {
        assert_eq!(cache.get(3), 4);
        let closed = Cache::builder()
            .redis(config.fail_mode(FailMode::Closed))
            .build(|_: &Cache<u64, u64>, n: u64| sigma(n));
        let error = closed.try_get(3).unwrap_err();
        assert!(
            matches!(&error, Error::Unavailable { message, .. } if message.contains("127.0.0.1")),
            "{error}"
        );
        cache.redis_stats().unwrap()
    });
    server.resume();
    assert_eq!((stats.unshared, stats.fetched, stats.computed), (1, 0, 1), "{stats:?}");
}

#[test]
fn a_redis_that_refuses_writes_is_an_outage_not_a_panic() {
    let Some(server) = RedisServer::start() else { return };
    let mut conn = server.connection();
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg("noeviction").query(&mut conn).unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1").query(&mut conn).unwrap();
    let config = RedisConfig::new(&server.url(), "full").unwrap();
    let open = Cache::builder().redis(config.clone()).build(|_: &Cache<u64, u64>, n: u64| sigma(n));
    assert_eq!(open.get(8), 15, "computed locally");
    assert_eq!(open.redis_stats().unwrap().unshared, 1);
    let closed = Cache::builder()
        .redis(config.fail_mode(FailMode::Closed))
        .build(|_: &Cache<u64, u64>, n: u64| sigma(n));
    let error = closed.try_get(8).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("refusing commands") && text.contains("OOM"), "{text}");
}

#[test]
fn redis_stopped_fails_closed_when_asked_to() {
    let Some(mut server) = RedisServer::start() else { return };
    let url = server.url();
    let config = RedisConfig::new(&url, "closed").unwrap().fail_mode(FailMode::Closed);
    let cache = Cache::builder().redis(config).build(|_: &Cache<u64, u64>, n: u64| sigma(n));
    assert_eq!(cache.try_get(4), Ok(7));
    server.stop();
    assert_eq!(cache.try_get(4), Ok(7), "cached values are still served");
    let error = cache.try_get(5).unwrap_err();
    assert!(matches!(&error, Error::Unavailable { key, .. } if key == "5"), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("127.0.0.1") && text.contains("unreachable"), "{text}");
    assert!(!cache.contains_key(&5), "an unavailable tier is not cached");
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get(5))).unwrap_err();
    assert!(panic_message(&*panic).contains("unavailable"));
}

#[test]
fn a_cache_built_while_redis_is_down_works_locally() {
    let url = format!("redis://127.0.0.1:{}/", free_port());
    let config = RedisConfig::new(&url, "nowhere").unwrap().timeout(Duration::from_millis(300));
    let open = Cache::builder().redis(config.clone()).build(|_: &Cache<u64, u64>, n: u64| n + 1);
    assert_eq!(open.get(1), 2);
    assert_eq!(open.redis_stats().unwrap().unshared, 1);
    let closed =
        Cache::builder().redis(config.fail_mode(FailMode::Closed)).build(|_: &Cache<u64, u64>, n: u64| n + 1);
    assert!(matches!(closed.try_get(1), Err(Error::Unavailable { .. })));
}

#[test]
fn corrupt_or_foreign_values_are_errors_not_garbage() {
    let Some(server) = RedisServer::start() else { return };
    let url = server.url();
    let config = RedisConfig::new(&url, "corrupt").unwrap();
    let writer = Cache::builder().redis(config.clone()).build(|_: &Cache<u64, Vec<u64>>, n: u64| vec![n; 3]);
    assert_eq!(writer.get(1), vec![1, 1, 1]);
    let key = writer.redis_key(&1).unwrap();
    let mut conn = server.connection();
    let good: Vec<u8> = conn.get(&key).unwrap();

    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 0x40;
    let mut foreign_header = good.clone();
    foreign_header[8] ^= 1;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage", b"hello, world: this is not a value of ours".to_vec(), "SPC2"),
        ("truncated", good[..12].to_vec(), "too short"),
        ("a flipped bit", flipped, "checksum"),
        ("written for other types", foreign_header, "other key/value types"),
    ];
    for (what, bytes, expected) in cases {
        let _: () = conn.set(&key, bytes).unwrap();
        let reader =
            Cache::builder().redis(config.clone()).build(|_: &Cache<u64, Vec<u64>>, n: u64| vec![n; 3]);
        let error = reader.try_get(1).unwrap_err();
        let Error::Corrupt { key: k, message } = &error else { panic!("{what}: {error:?}") };
        assert_eq!(k, "1");
        assert!(message.contains(expected), "{what}: {message}");
        assert!(message.contains("speedup:corrupt:"), "names the Redis key: {message}");
        assert!(!reader.contains_key(&1), "{what}: not cached");
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.get(1))).unwrap_err();
        assert!(panic_message(&*panic).contains("invalid value"), "{what}");
    }
    // Another Redis type at the key.
    let _: () = conn.del(&key).unwrap();
    let _: () = conn.rpush(&key, "x").unwrap();
    let reader = Cache::builder().redis(config.clone()).build(|_: &Cache<u64, Vec<u64>>, n: u64| vec![n; 3]);
    let error = reader.try_get(1).unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { message, .. } if message.contains("another Redis type")),
        "{error:?}"
    );
    // A reader that has been finding values (and so starts with a plain GET) sees the same.
    let warm = Cache::builder().redis(config.clone()).build(|_: &Cache<u64, Vec<u64>>, n: u64| vec![n; 3]);
    for n in 10..60 {
        writer.get(n);
        assert_eq!(warm.get(n), vec![n; 3]);
    }
    assert_eq!(warm.redis_stats().unwrap().fetched, 50);
    let error = warm.try_get(1).unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { message, .. } if message.contains("another Redis type")),
        "{error:?}"
    );
    let _: () = conn.del(&key).unwrap();
    let _: () = conn.set(&key, &good[..good.len() - 1]).unwrap();
    let error = warm.try_get(1).unwrap_err();
    assert!(matches!(&error, Error::Corrupt { message, .. } if message.contains("checksum")), "{error:?}");
    // Deleting the key repairs it: the value is computed and written again.
    let _: () = conn.del(&key).unwrap();
    assert_eq!(reader.try_get(1), Ok(vec![1, 1, 1]));
    assert_eq!(conn.get::<_, Vec<u8>>(&key).unwrap(), good);
}

#[test]
fn values_expire_with_their_ttl() {
    let Some(server) = RedisServer::start() else { return };
    let config = RedisConfig::new(&server.url(), "ttl").unwrap().value_ttl(Duration::from_millis(300));
    let cache = Cache::builder().redis(config).build(|_: &Cache<u64, u64>, n: u64| n * 2);
    assert_eq!(cache.get(3), 6);
    let key = cache.redis_key(&3).unwrap();
    let mut conn = server.connection();
    let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
    assert!((1..=300).contains(&pttl), "{pttl}");
    std::thread::sleep(Duration::from_millis(600));
    assert!(!conn.exists::<_, bool>(&key).unwrap());
}

#[test]
fn the_cluster_example_computes_each_key_once() {
    let Some(server) = RedisServer::start() else { return };
    // Cargo builds examples next to the test binaries (target/<profile>/examples) when it
    // builds the whole package, as `cargo test --all-features` in CI does.
    let exe = std::env::current_exe().unwrap();
    let example = exe.parent().unwrap().parent().unwrap().join("examples").join("cluster_factor");
    if !example.exists() {
        let required =
            std::env::var_os("CI").is_some() || std::env::var_os("SPEEDUP_REQUIRE_REDIS").is_some();
        assert!(!required, "{} was not built", example.display());
        eprintln!("skipped: {} not built (run cargo test with --all-features)", example.display());
        return;
    }
    let output = Command::new(&example).env("REDIS_URL", server.url()).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let reports: Vec<&str> = stdout.lines().filter(|l| l.starts_with("worker ")).collect();
    assert_eq!(reports.len(), 2, "{stdout}");
    let number = |line: &str, after: &str| -> u64 {
        line.split_once(after).unwrap().1.split(' ').next().unwrap().parse().unwrap()
    };
    let computed: u64 = reports.iter().map(|l| number(l, "computed ")).sum();
    let fetched: u64 = reports.iter().map(|l| number(l, "got ")).sum();
    assert!(fetched >= 1, "the overlapping numbers come from the other worker: {stdout}");
    let mut conn = server.connection();
    let stored: Vec<Vec<u8>> = conn.keys("speedup:cluster-factor-*:*:v:*").unwrap();
    assert_eq!(computed, stored.len() as u64, "{stdout}");
    assert!(stdout.contains("each key was computed exactly once"), "{stdout}");
}

#[cfg(feature = "tokio")]
mod async_cache {
    use futures::future::join_all;
    use speedup_cache::AsyncCache;

    use super::*;

    fn async_sums(url: &str, config: RedisConfig) -> AsyncCache<u64, u64> {
        let url = url.to_string();
        AsyncCache::with_redis(config, move |_: AsyncCache<u64, u64>, n: u64| {
            let url = url.clone();
            async move {
                tokio::task::spawn_blocking(move || count_in_redis(&url, n)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
                sigma(n)
            }
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_and_sync_workers_compute_each_key_once() {
        let Some(server) = RedisServer::start() else { return };
        let url = server.url();
        let config = RedisConfig::new(&url, "mixed").unwrap();
        let a = async_sums(&url, config.clone());
        let b = async_sums(&url, config.clone());
        // A sync worker on the same name and types shares the same values.
        let sync = divisor_sums(&url, config, Duration::from_millis(2));
        let sync_run = tokio::task::spawn_blocking(move || {
            for n in (100..300).rev() {
                assert_eq!(sync.get(n), sigma(n));
            }
            sync.redis_stats().unwrap()
        });
        let (ra, rb) =
            tokio::join!(join_all((1..200).map(|n| a.get(n))), join_all((100..300).map(|n| b.get(n))));
        assert!(ra.iter().zip(1..).all(|(v, n)| *v == sigma(n)));
        assert!(rb.iter().zip(100..).all(|(v, n)| *v == sigma(n)));
        let s = sync_run.await.unwrap();
        let (sa, sb) = (a.redis_stats().unwrap(), b.redis_stats().unwrap());
        assert_eq!(sa.computed + sa.fetched, 199, "{sa:?}");
        assert_eq!(sb.computed + sb.fetched, 200, "{sb:?}");
        assert_eq!(s.computed + s.fetched, 200, "{s:?}");
        assert_eq!(sa.computed + sb.computed + s.computed, 299, "each distinct key computed once");
        let counts = counts(&server, 1..300);
        assert!(
            counts.iter().all(|&(_, c)| c == 1),
            "{:?}",
            counts.iter().filter(|c| c.1 != 1).collect::<Vec<_>>()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_async_cache_fails_closed_with_a_message() {
        let url = format!("redis://127.0.0.1:{}/", free_port());
        let config = RedisConfig::new(&url, "nowhere").unwrap().fail_mode(FailMode::Closed);
        let cache = AsyncCache::with_redis(config, |_: AsyncCache<u64, u64>, n: u64| async move { n });
        let handle = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get(1).await }
        });
        let panic = handle.await.unwrap_err().into_panic();
        assert!(panic_message(&*panic).contains("unavailable"));
        assert!(!cache.contains_key(&1));
        let open = AsyncCache::with_redis(
            RedisConfig::new(&url, "nowhere").unwrap(),
            |_: AsyncCache<u64, u64>, n: u64| async move { n + 1 },
        );
        assert_eq!(open.get(1).await, 2, "fail open: computed locally");
        assert_eq!(open.redis_stats().unwrap().unshared, 1);
    }
}

#[test]
fn an_outage_is_logged_once_and_so_is_the_recovery() {
    let Some(mut server) = RedisServer::start() else { return };
    let recorder = Recorder::default();
    let all_events = recorder.clone();
    // Process-wide (the only test here that records): other tests' events are told apart
    // by their server's port.
    tracing::subscriber::set_global_default(recorder).expect("no other global subscriber");
    let port = server.url().rsplit(':').next().unwrap().trim_end_matches('/').to_string();
    let ours = move || -> Vec<(tracing::Level, String)> {
        let on_our_server =
            |r: &Recorded| r.fields.iter().any(|(name, value)| name == "addr" && value.contains(&port));
        all_events.recorded().into_iter().filter(on_our_server).map(|r| (r.level, r.message)).collect()
    };
    {
        let config =
            RedisConfig::new(&server.url(), "logged").unwrap().retry_after(Duration::from_millis(100));
        let cache = Cache::builder().redis(config).build(|_: &Cache<u64, u64>, n: u64| n * 3);
        assert_eq!(cache.get(1), 3);
        server.stop();
        for n in 2..40 {
            assert_eq!(cache.get(n), n * 3);
            std::thread::sleep(Duration::from_millis(10)); // outlast retry_after a few times
        }
        server.restart();
        // Keep asking until the recovery is seen (a restart under load can take a while),
        // under a deadline; each get also checks the value.
        let recovered =
            || ours().iter().any(|(l, m)| *l == tracing::Level::INFO && m.contains("Redis answers again"));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut n = 100;
        while !recovered() {
            assert!(std::time::Instant::now() < deadline, "the recovery was never logged");
            assert_eq!(cache.get(n), n * 3);
            n += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(cache.get(n), n * 3);
    }
    let events = ours();
    let count = |level: tracing::Level, text: &str| {
        events.iter().filter(|(l, m)| *l == level && m.contains(text)).count()
    };
    assert_eq!(count(tracing::Level::WARN, "Redis is unreachable"), 1, "{events:?}");
    assert_eq!(count(tracing::Level::INFO, "Redis answers again"), 1, "{events:?}");
}

#[cfg(feature = "persist")]
#[test]
fn values_from_redis_are_kept_on_disk_for_a_restart_without_redis() {
    use std::sync::RwLock;

    use speedup_paged::{DiskDict, Options};

    let Some(mut server) = RedisServer::start() else { return };
    let url = server.url();
    let config = RedisConfig::new(&url, "disk").unwrap().retry_after(Duration::from_secs(60));
    let producer = Cache::builder().redis(config.clone()).build(|_: &Cache<u64, u64>, n: u64| sigma(n));
    for n in 1..=50 {
        producer.get(n);
    }
    let dir = tempfile::tempdir().unwrap();
    let open_worker = |calls: Arc<AtomicUsize>| {
        let dict: DiskDict<u64, u64> =
            DiskDict::open_with("memo", &Options::new().location(dir.path())).unwrap();
        Cache::builder().backing(RwLock::new(dict)).redis(config.clone()).build(
            move |_: &Cache<u64, u64>, n: u64| {
                calls.fetch_add(1, Ordering::SeqCst);
                sigma(n)
            },
        )
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let worker = open_worker(Arc::clone(&calls));
    for n in 1..=50 {
        assert_eq!(worker.get(n), sigma(n));
    }
    assert_eq!((calls.load(Ordering::SeqCst), worker.redis_stats().unwrap().fetched), (0, 50));
    worker.flush().unwrap();
    drop(worker);

    server.stop();
    let worker = open_worker(Arc::clone(&calls));
    for n in 1..=50 {
        assert_eq!(worker.get(n), sigma(n));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "everything came from disk");
    assert_eq!(worker.redis_stats().unwrap().errors, 0, "Redis was not even asked");
}

/// The lease key of a value key (`...:v:<key>` -> `...:l:<key>`).
fn lease_key(value_key: &[u8]) -> Vec<u8> {
    let at = value_key.windows(3).position(|w| w == b":v:").expect("a value key") + 1;
    let mut lease = value_key.to_vec();
    lease[at] = b'l';
    lease
}

/// A lease key that never expires (`SET <lease key> foreign-token`: speedup-cache never
/// writes one) is an error naming that key, at once, not an endless loop of scripts.
#[test]
fn a_lease_without_an_expiry_is_an_error_naming_it() {
    let Some(server) = RedisServer::start() else { return };
    let config = RedisConfig::new(&server.url(), "unexpiring").unwrap();
    let cache = Cache::builder().redis(config).build(|_: &Cache<u64, u64>, n: u64| sigma(n));
    let lease = lease_key(&cache.redis_key(&5).unwrap());
    let mut conn = server.connection();
    let _: () = conn.set(&lease, "foreign-token").unwrap();
    let (cache, error, took) = within(30, move || {
        let start = Instant::now();
        let error = cache.try_get(5).unwrap_err();
        (cache, error, start.elapsed())
    });
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let Error::Corrupt { key, message } = &error else { panic!("{error:?}") };
    assert_eq!(key, "5");
    assert!(message.contains("never expires"), "{message}");
    assert!(message.contains(&format!("\"{}\"", lease.escape_ascii())), "names the lease key: {message}");
    // Deleting the named key repairs it.
    let _: () = conn.del(&lease).unwrap();
    assert_eq!(cache.try_get(5), Ok(sigma(5)));
}

/// A valid value copied under another key's name is not that key's value: the frame
/// carries a hash of the key it was written for.
#[test]
fn a_value_copied_to_another_key_is_corrupt() {
    let Some(server) = RedisServer::start() else { return };
    let config = RedisConfig::new(&server.url(), "copied").unwrap();
    let writer = Cache::builder().redis(config.clone()).build(|_: &Cache<u64, u64>, n: u64| n + 4799);
    assert_eq!(writer.get(208), 5007);
    let (from, to) = (writer.redis_key(&208).unwrap(), writer.redis_key(&209).unwrap());
    let mut conn = server.connection();
    let bytes: Vec<u8> = conn.get(&from).unwrap();
    let _: () = conn.set(&to, bytes).unwrap();
    let reader = Cache::builder().redis(config).build(|_: &Cache<u64, u64>, n: u64| n + 4799);
    let error = reader.try_get(209).unwrap_err();
    let Error::Corrupt { key, message } = &error else { panic!("{error:?}") };
    assert_eq!(key, "209");
    assert!(message.contains("another key"), "{message}");
    assert!(message.contains(&format!("\"{}\"", to.escape_ascii())), "names the key holding it: {message}");
    assert_eq!(reader.try_get(208), Ok(5007), "the original stays readable");
}

/// Another Redis type at the *lease* key: the error names the lease key, the one to delete.
#[test]
fn a_wrong_type_at_the_lease_key_names_the_lease_key() {
    let Some(server) = RedisServer::start() else { return };
    let config = RedisConfig::new(&server.url(), "wrongtype").unwrap();
    let cache = Cache::builder().redis(config).build(|_: &Cache<u64, u64>, n: u64| sigma(n));
    let value = cache.redis_key(&7).unwrap();
    let lease = lease_key(&value);
    let mut conn = server.connection();
    let _: () = conn.rpush(&lease, "x").unwrap();
    let error = cache.try_get(7).unwrap_err();
    let Error::Corrupt { message, .. } = &error else { panic!("{error:?}") };
    assert!(message.contains(&format!("\"{}\"", lease.escape_ascii())), "names the lease key: {message}");
    assert!(!message.contains(&format!("\"{}\"", value.escape_ascii())), "not the value key: {message}");
    let _: () = conn.del(&lease).unwrap();
    assert_eq!(cache.try_get(7), Ok(sigma(7)), "deleting the named key repairs it");
}

/// `RedisConfig::timeout` bounds a call to a frozen server, reconnection included (the
/// issue measured 6 s for a 2 s timeout: the retry on a fresh connection got a full
/// timeout of its own).
#[test]
fn the_timeout_bounds_a_call_to_a_frozen_server() {
    let Some(server) = RedisServer::start() else { return };
    let timeout = Duration::from_millis(400);
    let config =
        RedisConfig::new(&server.url(), "bounded").unwrap().timeout(timeout).retry_after(Duration::ZERO);
    let cache = Cache::builder().redis(config).build(|_: &Cache<u64, u64>, n: u64| sigma(n));
    assert_eq!(cache.get(2), 3); // a pooled connection exists
    server.pause();
    let took = within(30, move || {
        let start = Instant::now();
        assert_eq!(cache.get(3), 4, "fails open: computed locally");
        start.elapsed()
    });
    server.resume();
    // One timeout, plus scheduling slack on a busy machine; two would be 800 ms.
    assert!(took < timeout + Duration::from_millis(300), "one get took {took:?} with a {timeout:?} timeout");
}

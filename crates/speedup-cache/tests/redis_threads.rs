//! A cache's Redis threads (listener and lease refresher) end soon after the cache is
//! dropped: building many short-lived caches does not pile up threads. Its own test binary,
//! so that no other test's threads are counted.
#![cfg(feature = "redis")]

use std::time::{Duration, Instant};

use speedup_cache::{Cache, RedisConfig};
use speedup_test_support::RedisServer;

fn redis_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("speedup-cache-r")) // comm keeps 15 bytes
        .count()
}

#[test]
fn dropped_caches_leave_no_threads_behind() {
    let Some(server) = RedisServer::start() else { return };
    assert_eq!(redis_threads(), 0);
    for i in 0..20u64 {
        let cache = Cache::builder()
            .redis(RedisConfig::new(&server.url(), "threads").unwrap())
            .build(|_: &Cache<u64, u64>, n: u64| n + 1);
        assert_eq!(cache.get(i), i + 1);
    }
    assert!(redis_threads() > 0, "each cache started its threads");
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis_threads() > 0 {
        assert!(Instant::now() < deadline, "{} Redis threads still running", redis_threads());
        std::thread::sleep(Duration::from_millis(50));
    }
}

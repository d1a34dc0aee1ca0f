//! `capacity(n)` keeps at most `n` values on any core count, and evicted values are dropped
//! outside every lock (a value whose `Drop` uses the cache does not hang it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use speedup_cache::Cache;
use speedup_test_support::within;

/// A value that counts how many of its kind are alive.
#[derive(Debug)]
struct Counted {
    n: u64,
    alive: Arc<AtomicUsize>,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.alive.fetch_add(1, Ordering::SeqCst);
        Counted { n: self.n, alive: Arc::clone(&self.alive) }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn capacity_n_keeps_at_most_n_values() {
    for capacity in [1usize, 2, 10, 100] {
        let alive = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&alive);
        let cache = Cache::builder().capacity(capacity).build(move |_: &Cache<u64, Counted>, n: u64| {
            counter.fetch_add(1, Ordering::SeqCst);
            Counted { n, alive: Arc::clone(&counter) }
        });
        for k in 0..2_000u64 {
            assert_eq!(cache.get(k).n, k);
            assert!(cache.len() <= capacity, "capacity {capacity}: {} values after key {k}", cache.len());
            // Every value the cache holds is alive; the caller's copy was dropped above.
            let held = alive.load(Ordering::SeqCst);
            assert!(held <= capacity, "capacity {capacity}: {held} values alive after key {k}");
        }
        assert_eq!(cache.get(1_999).n, 1_999, "the newest key is kept");
    }
}

#[test]
fn capacity_holds_with_many_threads() {
    let capacity = 16;
    let alive = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&alive);
    let cache = Cache::builder().capacity(capacity).build(move |_: &Cache<u64, Counted>, n: u64| {
        counter.fetch_add(1, Ordering::SeqCst);
        Counted { n, alive: Arc::clone(&counter) }
    });
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for i in 0..3_000u64 {
                    let k = (i * 31 + t * 7) % 500;
                    assert_eq!(cache.get(k).n, k);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(cache.len() <= capacity, "{} values", cache.len());
    assert_eq!(alive.load(Ordering::SeqCst), cache.len(), "len counts exactly the values held");
}

/// A value whose `Drop` reads the cache: evicting it under a shard lock would deadlock.
#[derive(Debug, Clone)]
struct Reentrant(u64);

static REENTRANT: OnceLock<Cache<u64, Reentrant>> = OnceLock::new();

impl Drop for Reentrant {
    fn drop(&mut self) {
        if let Some(cache) = REENTRANT.get() {
            let _ = cache.contains_key(&self.0);
            let _ = cache.len();
            let _ = cache.contains_key(&0);
        }
    }
}

#[test]
fn an_evicted_value_may_use_the_cache_in_its_drop() {
    within(30, || {
        let cache = REENTRANT.get_or_init(|| {
            Cache::builder().capacity(3).build(|_: &Cache<u64, Reentrant>, n: u64| Reentrant(n))
        });
        for k in 0..1_000u64 {
            assert_eq!(cache.get(k).0, k);
        }
        assert!(cache.len() <= 3);
    });
}

//! The shards' reader-biased lock under fire: hits racing the writes of misses and
//! evictions into the same shards, readers that leave by panicking, and more threads than
//! reader slots.
//!
//! A hit reads its shard without touching the shard's lock word while the lock is biased
//! (`src/biased.rs`); a writer revokes the bias and waits for those readers. A reader
//! inside during a write would probe a table being rehashed or a value being dropped: the
//! values here are vectors whose every element names the key, checked on every hit.
//! `SPEEDUP_SHARD_ROUNDS` sets the rounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use speedup_cache::Cache;
use speedup_test_support::within;

fn rounds(default: usize) -> usize {
    std::env::var("SPEEDUP_SHARD_ROUNDS")
        .map_or(default, |r| r.parse().expect("SPEEDUP_SHARD_ROUNDS: a number"))
}

/// The value of `key`: `key % 40 + 1` copies of it (a heap allocation of varying size).
fn value_of(key: u64) -> Vec<u64> {
    vec![key; (key % 40) as usize + 1]
}

/// Two threads hit a hot set (long enough between writes for the bias to come back) while
/// a third asks for new keys, whose inserts and the evictions they cause write to the same
/// shards. Every hit must be the key's own vector.
#[test]
fn hits_race_inserts_and_evictions_in_the_same_shards() {
    let rounds = rounds(4);
    for round in 0..rounds {
        let (hits, misses) = within(60, move || {
            let computed = Arc::new(AtomicU64::new(0));
            let counted = Arc::clone(&computed);
            let cache = Cache::builder().capacity(3_000).build(move |_: &Cache<u64, Vec<u64>>, k: u64| {
                counted.fetch_add(1, Ordering::Relaxed);
                value_of(k)
            });
            let hot = 0..1_000u64;
            for k in hot.clone() {
                cache.get(k);
            }
            let stop = Arc::new(AtomicBool::new(false));
            let readers: Vec<_> = (0..2u64)
                .map(|t| {
                    let (cache, stop, hot) = (cache.clone(), Arc::clone(&stop), hot.clone());
                    std::thread::spawn(move || {
                        let mut hits = 0u64;
                        let mut x = t + 1;
                        while !stop.load(Ordering::Relaxed) {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let k = hot.start + x % (hot.end - hot.start);
                            let v = cache.get(k);
                            assert_eq!(v, value_of(k), "round {round}: key {k} read a wrong value");
                            hits += 1;
                        }
                        hits
                    })
                })
                .collect();
            // New keys in bursts, with pauses in which the readers re-arm the bias.
            let mut next = 1_000_000u64;
            for burst in 0..200 {
                for _ in 0..(burst % 7) * 10 + 1 {
                    assert_eq!(cache.get(next), value_of(next));
                    next += 1;
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            stop.store(true, Ordering::Relaxed);
            let hits: u64 = readers.into_iter().map(|r| r.join().expect("a reader panicked")).sum();
            assert!(cache.len() <= 3_000, "round {round}: the capacity was exceeded");
            (hits, computed.load(Ordering::Relaxed))
        });
        eprintln!("round {round}: {hits} hits beside {misses} computations");
    }
}

/// A value whose `Clone` panics on a hit: the hit's reader leaves the shard as it unwinds,
/// so later writes to that shard (more keys, in every shard) still go through.
#[test]
fn a_clone_that_panics_on_a_hit_leaves_the_shard_usable() {
    #[derive(Debug)]
    struct Fragile(u64);
    impl Clone for Fragile {
        fn clone(&self) -> Self {
            assert!(!PANIC.load(Ordering::Relaxed), "Fragile::clone panics on purpose");
            Fragile(self.0)
        }
    }
    static PANIC: AtomicBool = AtomicBool::new(false);
    within(60, || {
        let cache = Cache::new(|_: &Cache<u64, Fragile>, k: u64| Fragile(k));
        // Enough hits on every shard that the biased path is on when the panics come.
        for _ in 0..3 {
            for k in 0..200_000 {
                cache.get(k);
            }
        }
        PANIC.store(true, Ordering::Relaxed);
        for k in 0..2_000 {
            let hit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get(k)));
            assert!(hit.is_err());
        }
        PANIC.store(false, Ordering::Relaxed);
        // Writes into every shard: a reader left announced would make them wait for ever.
        for k in 1_000_000..1_050_000 {
            assert_eq!(cache.get(k).0, k);
        }
    });
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// More threads than reader slots (40 on a table of at least 32), in waves that end and
/// start anew (thread numbers are given back and reused), on six caches at once whose
/// small capacities keep evicting while the hits run. (From the hostile review.)
#[test]
fn waves_of_more_threads_than_slots_on_six_caches() {
    let waves = rounds(3);
    within(120, move || {
        let caches: Vec<Cache<u64, Vec<u64>>> = (0..6)
            .map(|i| {
                Cache::builder().capacity(200 + i * 300).build(|_: &Cache<u64, Vec<u64>>, k: u64| value_of(k))
            })
            .collect();
        for wave in 0..waves as u64 {
            let threads: Vec<_> = (0..40u64)
                .map(|t| {
                    let caches = caches.clone();
                    std::thread::spawn(move || {
                        let mut x = wave * 131 + t + 1;
                        for i in 0..5_000u64 {
                            let cache = &caches[(xorshift(&mut x) % 6) as usize];
                            // Mostly a hot set; every 50th a fresh key (a write and an eviction).
                            let k = if i % 50 == 0 {
                                1_000_000 + xorshift(&mut x) % 100_000
                            } else {
                                xorshift(&mut x) % 300
                            };
                            assert_eq!(cache.get(k), value_of(k), "wave {wave}: key {k} read a wrong value");
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("a thread of the wave panicked");
            }
            for (i, cache) in caches.iter().enumerate() {
                assert!(cache.len() <= 200 + i * 300, "wave {wave}: cache {i} holds {}", cache.len());
            }
        }
    });
}

/// A key whose `Eq` panics during hits, from two threads: nothing stays announced, and
/// writes to every shard go through afterwards. (From the hostile review.)
#[test]
fn an_eq_that_panics_on_a_hit_leaves_the_shard_usable() {
    static PANIC: AtomicBool = AtomicBool::new(false);
    #[derive(Clone, Debug)]
    struct Key(u64);
    impl PartialEq for Key {
        fn eq(&self, other: &Self) -> bool {
            assert!(!PANIC.load(Ordering::Relaxed), "Key::eq panics on purpose");
            self.0 == other.0
        }
    }
    impl Eq for Key {}
    impl std::hash::Hash for Key {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            self.0.hash(state);
        }
    }
    within(60, || {
        let cache = Cache::new(|_: &Cache<Key, u64>, k: Key| k.0);
        for _ in 0..3 {
            for k in 0..100_000 {
                cache.get(Key(k));
            }
        }
        PANIC.store(true, Ordering::Relaxed);
        let hit_all = |cache: &Cache<Key, u64>| {
            for k in 0..2_000 {
                let hit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get(Key(k))));
                assert!(hit.is_err());
            }
        };
        let other = std::thread::spawn({
            let cache = cache.clone();
            move || hit_all(&cache)
        });
        hit_all(&cache);
        other.join().unwrap();
        PANIC.store(false, Ordering::Relaxed);
        for k in 1_000_000..1_050_000 {
            assert_eq!(cache.get(Key(k)), k);
        }
    });
}

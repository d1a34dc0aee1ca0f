//! Hostile probes of AsyncCache (temporary).
#![cfg(feature = "tokio")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use speedup_cache::AsyncCache;

fn mt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}
fn ct() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Runs `f` on a thread of its own; Err if it did not finish in `secs`.
fn deadline<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> Result<T, &'static str> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err("panicked"),
        Err(_) => Err("HUNG"),
    }
}

// ---------- batch_async: user iterator under the table lock ----------
#[test]
fn probe_batch_async_lazy_iterator_touching_cache() {
    let r = deadline(10, || {
        mt().block_on(async {
            let cache = AsyncCache::new(|_: AsyncCache<u64, u64>, k: u64| async move { k + 1 });
            cache.get(1).await;
            let c2 = cache.clone();
            // Skip what is already cached: the iterator asks the cache.
            cache.batch_async((0..4u64).filter(move |k| !c2.contains_key(k)));
            cache.get(3).await
        })
    });
    assert_eq!(r, Ok(4), "batch_async with an iterator that reads the cache");
}

// ---------- V::clone under the table lock ----------
static GLOBAL: OnceLock<AsyncCache<u64, Probe>> = OnceLock::new();
#[derive(Debug)]
struct Probe(u64);
impl Clone for Probe {
    fn clone(&self) -> Self {
        if let Some(c) = GLOBAL.get() {
            let _ = c.len();
        }
        Probe(self.0)
    }
}

#[test]
fn probe_value_clone_touching_cache() {
    let r = deadline(10, || {
        mt().block_on(async {
            let cache = GLOBAL
                .get_or_init(|| AsyncCache::new(|_: AsyncCache<u64, Probe>, k: u64| async move { Probe(k) }));
            cache.get(1).await;
            cache.get(1).await.0 // hit: clones under the lock
        })
    });
    assert_eq!(r, Ok(1));
}

static SGLOBAL: OnceLock<speedup_cache::Cache<u64, SProbe>> = OnceLock::new();
#[derive(Debug)]
struct SProbe(u64);
impl Clone for SProbe {
    fn clone(&self) -> Self {
        if let Some(c) = SGLOBAL.get() {
            let _ = c.len();
            let _ = c.contains_key(&self.0);
        }
        SProbe(self.0)
    }
}
#[test]
fn probe_sync_value_clone_touching_cache() {
    let r = deadline(10, || {
        let cache = SGLOBAL.get_or_init(|| {
            speedup_cache::Cache::new(|_: &speedup_cache::Cache<u64, SProbe>, k: u64| SProbe(k))
        });
        cache.get(1);
        cache.get(1).0
    });
    assert_eq!(r, Ok(1));
}

// ---------- panicking Drop of an evicted value ----------
#[derive(Clone, Debug)]
struct Bomb(u64, Arc<()>);
impl Drop for Bomb {
    fn drop(&mut self) {
        // The last copy of key 0's value explodes.
        if self.0 == 0 && Arc::strong_count(&self.1) == 1 {
            panic!("drop of 0 exploded");
        }
    }
}
#[test]
fn probe_panicking_drop_of_evicted_value_blames_other_key() {
    let r = deadline(20, || {
        mt().block_on(async {
            let cache = AsyncCache::builder()
                .capacity(1)
                .build(|_: AsyncCache<u64, Bomb>, k: u64| async move { Bomb(k, Arc::new(())) });
            drop(cache.get(0).await);
            let c = cache.clone();
            let got = tokio::spawn(async move { c.get(1).await.0 }).await;
            let msg = match &got {
                Ok(_) => String::new(),
                Err(e) if e.is_panic() => "panic".into(),
                Err(e) => format!("{e}"),
            };
            (got.is_ok(), msg, cache.contains_key(&1), cache.len())
        })
    });
    eprintln!("panicking drop: {r:?}");
    let (ok, _, cached, _) = r.unwrap();
    assert!(ok || !cached, "get(1) failed although 1 was computed and cached");
}

// ---------- capacity stress ----------
fn capacity_stress(rt: tokio::runtime::Runtime, cap0: usize, rounds: usize) {
    let cap = cap0.max(1);
    let _ = cap0;
    let calls = Arc::new(AtomicUsize::new(0));
    let live = Arc::new(AtomicUsize::new(0));
    #[derive(Debug)]
    struct V(u64, Arc<AtomicUsize>);
    impl Clone for V {
        fn clone(&self) -> Self {
            self.1.fetch_add(1, Ordering::SeqCst);
            V(self.0, Arc::clone(&self.1))
        }
    }
    impl Drop for V {
        fn drop(&mut self) {
            self.1.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let (cc, lv) = (Arc::clone(&calls), Arc::clone(&live));
    let cache = AsyncCache::builder().capacity(cap0).build(move |c: AsyncCache<u64, V>, k: u64| {
        cc.fetch_add(1, Ordering::SeqCst);
        let lv = Arc::clone(&lv);
        async move {
            tokio::task::yield_now().await;
            let below = if k > 0 && k % 3 != 0 { c.get(k - 1).await.0 } else { 0 };
            if k % 5 == 0 {
                c.apply_async(k + 1);
            }
            if k % 7 == 0 {
                c.batch_async([k + 2, k + 2, k + 3]);
            }
            lv.fetch_add(1, Ordering::SeqCst);
            V(k * 1000 + below, lv)
        }
    });
    let expect = |k: u64| -> u64 {
        let mut k = k;
        let mut total = 0;
        let mut mul = 1000;
        let _ = &mut mul;
        // value(k) = k*1000 + value(k-1)%...: compute recursively
        fn val(k: u64) -> u64 {
            if k > 0 && k % 3 != 0 { k * 1000 + val(k - 1) } else { k * 1000 }
        }
        total += val(k);
        k = 0;
        let _ = k;
        total
    };
    rt.block_on(async {
        let cache2 = cache.clone();
        let watcher = tokio::spawn(async move {
            let mut max = 0;
            for _ in 0..20000 {
                max = max.max(cache2.len());
                tokio::task::yield_now().await;
            }
            max
        });
        for round in 0..rounds {
            let mut handles = Vec::new();
            for t in 0..16u64 {
                let c = cache.clone();
                handles.push(tokio::spawn(async move {
                    let mut seen = Vec::new();
                    for i in 0..20u64 {
                        let k = (t * 7 + i * 13 + round as u64) % 30;
                        let v = c.get(k).await;
                        seen.push((k, v.0));
                        assert!(c.len() <= cap, "len {} > cap {}", c.len(), cap);
                    }
                    seen
                }));
            }
            for h in handles {
                for (k, v) in tokio::time::timeout(Duration::from_secs(30), h).await.expect("hung").unwrap() {
                    assert_eq!(v, expect(k), "key {k}");
                }
            }
        }
        // let stragglers (apply_async) finish
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = cache.len();
        let present = (0..40u64).filter(|k| cache.contains_key(k)).count();
        assert!(n <= cap, "len {n} > {cap}");
        assert_eq!(n, present, "len() drifted from contents");
        let max = watcher.await.unwrap();
        assert!(max <= cap, "watcher saw {max}");
    });
    drop(rt);
    drop(cache);
    assert_eq!(live.load(Ordering::SeqCst), 0, "values leaked or double-dropped");
    eprintln!("cap {cap}: calls {}", calls.load(Ordering::SeqCst));
}

#[test]
fn probe_capacity_stress_mt() {
    for cap in [0usize, 1, 2, 5] {
        deadline(120, move || capacity_stress(mt(), cap, 20)).unwrap();
    }
}
#[test]
fn probe_capacity_stress_ct() {
    for cap in [0usize, 1, 3] {
        deadline(120, move || capacity_stress(ct(), cap, 20)).unwrap();
    }
}

// ---------- capacity 1, recursive fib, both flavors ----------
#[test]
fn probe_capacity1_fib() {
    for flavor in 0..2 {
        let r = deadline(60, move || {
            let rt = if flavor == 0 { ct() } else { mt() };
            rt.block_on(async {
                let fib =
                    AsyncCache::builder().capacity(1).build(|f: AsyncCache<u64, u64>, n: u64| async move {
                        if n < 2 {
                            return n;
                        }
                        f.batch_async([n - 1, n - 2]);
                        let (a, b) = tokio::join!(f.get(n - 1), f.get(n - 2));
                        a + b
                    });
                let v = fib.get(18).await;
                (v, fib.len())
            })
        });
        assert_eq!(r, Ok((2584, 1)), "flavor {flavor}");
    }
}

// ---------- Drop that uses the cache ----------
#[test]
fn probe_drop_uses_cache_rounds() {
    static C: OnceLock<AsyncCache<u64, D>> = OnceLock::new();
    #[derive(Clone, Debug)]
    struct D(u64, Arc<()>);
    impl Drop for D {
        fn drop(&mut self) {
            if Arc::strong_count(&self.1) == 1 {
                if let Some(c) = C.get() {
                    let _ = c.len();
                    let _ = c.contains_key(&self.0);
                    if tokio::runtime::Handle::try_current().is_ok() {
                        c.apply_async(self.0 + 1);
                        c.batch_async([self.0 + 2, self.0 + 3]);
                    }
                }
            }
        }
    }
    let r = deadline(60, || {
        let rt = mt();
        rt.block_on(async {
            let c = C.get_or_init(|| {
                AsyncCache::builder()
                    .capacity(1)
                    .build(|_: AsyncCache<u64, D>, k: u64| async move { D(k % 50, Arc::new(())) })
            });
            for i in 0..2000u64 {
                let _ = c.get(i % 50).await;
            }
            c.len()
        })
    });
    assert_eq!(r, Ok(1));
}

// ---------- apply_async cycle ----------
#[test]
fn probe_apply_async_cycle() {
    let r = deadline(20, || {
        mt().block_on(async {
            let cache = AsyncCache::new(|c: AsyncCache<u64, u64>, k: u64| async move {
                match k {
                    0 => {
                        c.apply_async(1);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        c.get(1).await + 1
                    }
                    1 => c.get(0).await + 1,
                    _ => 0,
                }
            });
            let c = cache.clone();
            let r = tokio::spawn(async move { c.get(0).await }).await;
            let c = cache.clone();
            let r1 = tokio::spawn(async move { c.get(1).await }).await;
            let m = |r: Result<u64, tokio::task::JoinError>| match r {
                Ok(v) => format!("ok {v}"),
                Err(e) => {
                    let p = e.into_panic();
                    p.downcast_ref::<String>().cloned().unwrap_or_default()
                }
            };
            (m(r), m(r1))
        })
    });
    eprintln!("apply_async cycle: {r:?}");
    let (a, b) = r.unwrap();
    assert!(a.contains("cycle") || a.contains("Cycle"), "{a}");
    let _ = b;
}

// ---------- batch_async duplicates ----------
#[test]
fn probe_batch_async_duplicates() {
    let r = deadline(20, || {
        mt().block_on(async {
            let calls = Arc::new(AtomicUsize::new(0));
            let cc = Arc::clone(&calls);
            let cache = AsyncCache::new(move |_: AsyncCache<u64, u64>, k: u64| {
                cc.fetch_add(1, Ordering::SeqCst);
                async move { k }
            });
            cache.batch_async([7, 7]);
            tokio::time::sleep(Duration::from_millis(100)).await;
            calls.load(Ordering::SeqCst)
        })
    });
    eprintln!("batch_async([7,7]) started {r:?} computations before any get");
}

// ---------- runtimes dropped mid apply_async, many rounds ----------
#[test]
fn probe_runtime_drop_rounds() {
    let r = deadline(120, || {
        let calls = Arc::new(AtomicUsize::new(0));
        let cc = Arc::clone(&calls);
        let cache = AsyncCache::builder().capacity(4).build(move |c: AsyncCache<u64, u64>, k: u64| {
            cc.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::task::yield_now().await;
                if k > 0 { c.get(k - 1).await + 1 } else { 0 }
            }
        });
        for round in 0..300u64 {
            let rt = if round % 2 == 0 { ct() } else { mt() };
            let c = cache.clone();
            rt.block_on(async move {
                for k in 0..6 {
                    c.apply_async(round % 10 + k);
                }
                if round % 3 == 0 {
                    tokio::task::yield_now().await;
                }
                c.batch_async([round % 13, round % 13 + 1]);
            });
            drop(rt);
            let rt = if round % 2 == 1 { ct() } else { mt() };
            let c = cache.clone();
            let got =
                rt.block_on(
                    async move { tokio::time::timeout(Duration::from_secs(10), c.get(round % 17)).await },
                );
            assert_eq!(got.expect("hung"), round % 17, "round {round}");
            assert!(cache.len() <= 4);
        }
        calls.load(Ordering::SeqCst)
    });
    assert!(r.is_ok(), "{r:?}");
}

// ---------- idle current-thread runtime holds the computation ----------
#[test]
fn probe_idle_runtime_holds_computation() {
    let r = deadline(20, || {
        let cache = AsyncCache::new(|_: AsyncCache<u64, u64>, k: u64| async move { k });
        let a = ct();
        a.block_on(async { cache.apply_async(1) });
        // `a` stays alive but is not driven.
        let b = mt();
        let got = b.block_on(async { tokio::time::timeout(Duration::from_secs(3), cache.get(1)).await });
        drop(a);
        got.is_ok()
    });
    eprintln!("idle runtime: get finished = {r:?}");
}

// ---------- backing store panics ----------
#[test]
fn probe_backing_store_panics() {
    use speedup_cache::Backing;
    struct B(Mutex<Vec<(u64, u64)>>, AtomicUsize);
    impl Backing<u64, u64> for B {
        fn load(&self, key: &u64) -> Option<u64> {
            self.0.lock().unwrap().iter().find(|(k, _)| k == key).map(|&(_, v)| v)
        }
        fn store(&self, key: &u64, value: &u64) {
            if self.1.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("store exploded");
            }
            self.0.lock().unwrap().push((*key, *value));
        }
    }
    let r = deadline(20, || {
        mt().block_on(async {
            let b = Arc::new(B(Mutex::new(vec![(9, 999)]), AtomicUsize::new(0)));
            let calls = Arc::new(AtomicUsize::new(0));
            let cc = Arc::clone(&calls);
            let cache = AsyncCache::builder().capacity(1).backing(Arc::clone(&b)).build(
                move |c: AsyncCache<u64, u64>, k: u64| {
                    cc.fetch_add(1, Ordering::SeqCst);
                    async move { if k == 0 { 0 } else { c.get(k - 1).await + 10 } }
                },
            );
            let c = cache.clone();
            let first = tokio::spawn(async move { c.get(2).await }).await;
            let msg = match first {
                Ok(v) => format!("ok {v}"),
                Err(e) => e.into_panic().downcast_ref::<String>().cloned().unwrap_or_default(),
            };
            let len_after = cache.len();
            let second = cache.get(2).await;
            let nine = cache.get(9).await;
            (msg, len_after, second, nine, calls.load(Ordering::SeqCst), cache.flush())
        })
    });
    eprintln!("backing store panic: {r:?}");
    let (msg, _, second, nine, _, _) = r.unwrap();
    assert!(msg.contains("store exploded"), "{msg}");
    assert_eq!(second, 20);
    assert_eq!(nine, 999);
}

//! Computations, tier calls and evictions show in `tracing` at debug level.

use speedup_cache::Cache;
use speedup_test_support::Recorder;

#[test]
fn computations_and_evictions_are_traced() {
    let recorder = Recorder::default();
    let seen = recorder.clone();
    tracing::subscriber::with_default(recorder, || {
        let fib = Cache::builder().capacity(4).build(
            |c: &Cache<u64, u64>, n: u64| {
                if n < 2 { 1 } else { c.get(n - 1) + c.get(n - 2) }
            },
        );
        assert_eq!(fib.get(20), 10946);
    });
    let seen = seen.messages();
    assert!(seen.iter().any(|m| m == "span speedup_cache::compute"), "{seen:?}");
    assert!(seen.iter().any(|m| m.contains("evicted")), "{seen:?}");
}

#[cfg(feature = "persist")]
#[test]
fn backing_calls_are_traced() {
    let recorder = Recorder::default();
    let seen = recorder.clone();
    let dir = tempfile::tempdir().unwrap();
    tracing::subscriber::with_default(recorder, || {
        let options = speedup_paged::Options::new().location(dir.path());
        let dict = speedup_paged::DiskDict::<u64, u64>::open_with("memo", &options).unwrap();
        let square =
            Cache::builder().backing(std::sync::RwLock::new(dict)).build(|_: &Cache<u64, u64>, n: u64| n * n);
        assert_eq!(square.get(7), 49);
    });
    let seen = seen.messages();
    for expected in ["span speedup_cache::backing_load", "span speedup_cache::backing_store"] {
        assert!(seen.iter().any(|m| m == expected), "no {expected:?} in {seen:?}");
    }
}

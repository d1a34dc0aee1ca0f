//! Results survive a restart through a `speedup_paged::DiskDict` tier.
#![cfg(feature = "persist")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use speedup_cache::Cache;
use speedup_paged::{DiskDict, Options};

fn collatz_cache(dir: &std::path::Path, calls: Arc<AtomicUsize>) -> Cache<u64, u64> {
    let dict: DiskDict<u64, u64> = DiskDict::open_with("collatz", &Options::new().location(dir)).unwrap();
    Cache::builder().backing(RwLock::new(dict)).build(move |c: &Cache<u64, u64>, n: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        match n {
            1 => 0,
            n if n % 2 == 0 => 1 + c.get(n / 2),
            n => 1 + c.get(3 * n + 1),
        }
    })
}

#[test]
fn a_restarted_cache_resumes_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(AtomicUsize::new(0));
    let cache = collatz_cache(dir.path(), Arc::clone(&first));
    assert_eq!(cache.get(27), 111);
    let computed = first.load(Ordering::SeqCst);
    assert!(computed > 100);
    cache.flush().unwrap();
    drop(cache);

    let second = Arc::new(AtomicUsize::new(0));
    let cache = collatz_cache(dir.path(), Arc::clone(&second));
    assert_eq!(cache.get(27), 111);
    assert_eq!(cache.get(82), 110);
    assert_eq!(second.load(Ordering::SeqCst), 0, "values came from disk, nothing was recomputed");
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_async_cache_resumes_from_disk() {
    use speedup_cache::AsyncCache;

    fn collatz(dir: &std::path::Path, calls: Arc<AtomicUsize>) -> AsyncCache<u64, u64> {
        let dict: DiskDict<u64, u64> = DiskDict::open_with("collatz", &Options::new().location(dir)).unwrap();
        AsyncCache::builder().backing(RwLock::new(dict)).build(move |c: AsyncCache<u64, u64>, n: u64| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    1 => 0,
                    n if n % 2 == 0 => 1 + c.get(n / 2).await,
                    n => 1 + c.get(3 * n + 1).await,
                }
            }
        })
    }
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(AtomicUsize::new(0));
    let cache = collatz(dir.path(), Arc::clone(&first));
    assert_eq!(cache.get(27).await, 111);
    assert!(first.load(Ordering::SeqCst) > 100);
    cache.flush().unwrap();
    drop(cache);

    let second = Arc::new(AtomicUsize::new(0));
    let cache = collatz(dir.path(), Arc::clone(&second));
    assert_eq!(cache.get(27).await, 111);
    assert_eq!(cache.get(82).await, 110);
    assert_eq!(second.load(Ordering::SeqCst), 0, "values came from disk, nothing was recomputed");
}

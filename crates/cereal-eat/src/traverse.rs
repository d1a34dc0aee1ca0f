//! Traversal: segments on rayon's pool, positions as tokio tasks. (In order, the original's
//! `map(f, yum, range(len(yum)))` is `yum.into_iter().enumerate().map(...)`.)

use crate::SegmentMut;

/// Runs `f(segment)` on every segment on rayon's pool and returns the segments (for
/// [`Whole::join`](crate::Whole::join)). Tiny segments run sequentially: below ~1 µs of
/// work a parallel split costs more than it saves (rayon's own guidance), so segments
/// smaller than `min_len` elements are processed in order on the calling thread.
///
/// ```
/// let (whole, segments) = cereal_eat::split((0..100).collect::<Vec<u32>>(), &[4, 25], 4)?;
/// let segments = cereal_eat::traverse::par_for_each(segments, 0, |row| row[0] = 0);
/// let x = whole.join(segments).expect("all segments back");
/// assert_eq!((x[0], x[25], x[26]), (0, 0, 26));
/// # Ok::<(), cereal_eat::Error>(())
/// ```
pub fn par_for_each<T: Send>(
    segments: Vec<SegmentMut<T>>,
    min_len: usize,
    f: impl Fn(&mut SegmentMut<T>) + Sync + Send,
) -> Vec<SegmentMut<T>> {
    use rayon::prelude::*;
    let mut segments = segments;
    if segments.iter().map(|s| s.len()).sum::<usize>() < min_len.saturating_mul(2) {
        segments.iter_mut().for_each(&f);
    } else {
        segments.par_iter_mut().for_each(f);
    }
    segments
}

/// Spawns `f(i)` as a tokio task for every `i` in `0..n`, at most `concurrency` running
/// at once, and returns at once with a handle that completes when all have (the original
/// cereal's async traversal: submission does not wait for the work).
///
/// The tasks are spawned by one coordinating task on the runtime, not by the caller: a
/// worker thread spawns into its own run queue, which is several times cheaper than spawning
/// from outside the runtime, and the caller is back at once whatever `n` is. `f(i)` is
/// called there too; a panic in it, or in any task, is resumed when the handle is awaited
/// (the handle gives the `JoinError`), as a panicking task's own handle does.
///
/// Must be called within a tokio runtime.
#[cfg(feature = "tokio")]
pub fn spawn_each<F, Fut>(n: usize, concurrency: usize, f: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        // No limit to enforce (the common case: every task at once): no semaphore to take.
        let limit =
            (concurrency < n).then(|| std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))));
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let work = f(i);
                match &limit {
                    None => tokio::spawn(work),
                    Some(limit) => {
                        let limit = std::sync::Arc::clone(limit);
                        tokio::spawn(async move {
                            // The semaphore is never closed, so acquiring cannot fail.
                            let _permit = limit.acquire_owned().await;
                            work.await;
                        })
                    }
                }
            })
            .collect();
        for task in tasks {
            if let Err(e) = task.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    })
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::spawn_each;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    #[test]
    fn at_most_concurrency_tasks_run_at_once_and_all_run() {
        for (n, concurrency) in [(0, 1), (1, 1), (50, 1), (50, 3), (50, 50), (50, usize::MAX)] {
            let (running, peak, done) =
                (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let (r, p, d) = (Arc::clone(&running), Arc::clone(&peak), Arc::clone(&done));
            runtime().block_on(async move {
                let all = spawn_each(n, concurrency, move |_| {
                    let (r, p, d) = (Arc::clone(&r), Arc::clone(&p), Arc::clone(&d));
                    async move {
                        p.fetch_max(r.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        r.fetch_sub(1, Ordering::SeqCst);
                        d.fetch_add(1, Ordering::SeqCst);
                    }
                });
                tokio::time::timeout(Duration::from_secs(30), all).await.expect("a hang").unwrap();
            });
            assert_eq!(done.load(Ordering::SeqCst), n, "n = {n}");
            assert!(
                peak.load(Ordering::SeqCst) <= concurrency.max(1),
                "n = {n}, concurrency = {concurrency}"
            );
        }
    }

    #[test]
    fn a_panic_in_a_task_or_in_f_reaches_the_handle() {
        runtime().block_on(async {
            let in_task = spawn_each(10, 10, |i| async move { assert_ne!(i, 7, "task seven") });
            let error = in_task.await.unwrap_err();
            assert!(error.is_panic());
            let in_f = spawn_each(10, 10, |i| {
                assert_ne!(i, 3, "f of three");
                async {}
            });
            assert!(in_f.await.unwrap_err().is_panic());
        });
    }
}

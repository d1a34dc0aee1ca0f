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
/// at once (0 counts as 1), and returns at once with a handle that completes when all have
/// (the original cereal's async traversal: submission does not wait for the work).
///
/// The tasks are spawned by one coordinating task on the runtime, not by the caller: a
/// worker thread spawns into its own run queue, which is several times cheaper than spawning
/// from outside the runtime, and the caller is back at once whatever `n` is. The
/// coordinator calls `f(i)` and spawns task `i` only when fewer than `concurrency` run, so
/// memory stays bounded by `concurrency` whatever `n` is.
///
/// The tasks belong to the returned handle: aborting it (or a panic, in `f(i)` or in a
/// task) starts no further task and cancels the running ones at their next `.await` (as
/// tokio's abort does: a poll in progress is not interrupted), and the panic is resumed when
/// the handle is awaited (the handle gives the `JoinError`), as a panicking task's own
/// handle does. The coordinator yields to the runtime as tokio's cooperative budget asks,
/// so a huge `n` neither starves a current-thread runtime nor delays an abort.
///
/// Must be called within a tokio runtime.
#[cfg(feature = "tokio")]
pub fn spawn_each<F, Fut>(n: usize, concurrency: usize, f: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let limit = concurrency.max(1);
    tokio::spawn(async move {
        // Dropped with the coordinator (an abort, a panic): the tasks still running go too.
        let mut running = tokio::task::JoinSet::new();
        for i in 0..n {
            if running.len() >= limit {
                finished(running.join_next().await);
            }
            running.spawn(f(i));
            // With room for every task it never awaits otherwise: give the runtime (and an
            // abort) its turn whenever the cooperative budget runs out.
            tokio::task::coop::consume_budget().await;
        }
        while let Some(outcome) = running.join_next().await {
            finished(Some(outcome));
        }
    })
}

/// Passes a task's panic on to the coordinator (and so to the handle's awaiter).
#[cfg(feature = "tokio")]
fn finished(outcome: Option<Result<(), tokio::task::JoinError>>) {
    if let Some(Err(e)) = outcome
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
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

    /// A huge `n` with a small concurrency needs memory for `concurrency` tasks, not `n`
    /// (it once spawned all of them up front: `n = 2^40` aborted the process), and aborting
    /// the handle stops the work.
    #[test]
    fn a_huge_n_is_bounded_by_the_concurrency_and_abort_stops_it() {
        let started = Arc::new(AtomicUsize::new(0));
        let s = Arc::clone(&started);
        runtime().block_on(async move {
            let all = spawn_each(1 << 40, 2, move |_| {
                s.fetch_add(1, Ordering::SeqCst);
                async { tokio::time::sleep(Duration::from_millis(1)).await }
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
            all.abort();
            assert!(all.await.unwrap_err().is_cancelled());
        });
        let after_abort = started.load(Ordering::SeqCst);
        assert!(after_abort < 1_000, "{after_abort} tasks started in 100 ms at concurrency 2");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(started.load(Ordering::SeqCst), after_abort, "nothing runs after the abort");
    }

    /// With room for every task (concurrency >= n) the coordinator still yields: on a
    /// current-thread runtime the caller's own timer fires, and an abort lands (it once
    /// spawned all 2^40 tasks without yielding: a hang, memory growing).
    #[test]
    fn an_unlimited_huge_spawn_yields_and_can_be_aborted() {
        let started = Arc::new(AtomicUsize::new(0));
        let s = Arc::clone(&started);
        let current_thread = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        speedup_test_support::within(30, move || {
            current_thread.block_on(async move {
                let all = spawn_each(1 << 40, usize::MAX, move |_| {
                    s.fetch_add(1, Ordering::SeqCst);
                    async {}
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
                all.abort();
                assert!(all.await.unwrap_err().is_cancelled());
            });
        });
        let after = started.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(started.load(Ordering::SeqCst), after, "nothing starts after the abort");
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

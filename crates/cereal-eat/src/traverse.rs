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
/// at once, and returns at once with a handle that completes when all have (the original cereal's
/// async traversal: submission does not wait for the work).
///
/// Must be called within a tokio runtime.
#[cfg(feature = "tokio")]
pub fn spawn_each<F, Fut>(n: usize, concurrency: usize, f: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (limit, work) = (std::sync::Arc::clone(&limit), f(i));
            tokio::spawn(async move {
                // The semaphore is never closed, so acquiring cannot fail.
                let _permit = limit.acquire_owned().await;
                work.await;
            })
        })
        .collect();
    tokio::spawn(async move {
        for task in tasks {
            if let Err(e) = task.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    })
}

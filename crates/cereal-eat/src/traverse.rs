//! Traversal helpers: positions handed to workers, in order, on a pool, or as tasks.

/// The original's `map(f, yum, range(len(yum)))`: calls `f(item, pos)` for each item in
/// order and collects the results.
///
/// ```
/// let mut x = vec![1, 2, 3, 4];
/// let yum = cereal_eat::split_mut(&mut x, &[4], 4)?;
/// let out: Vec<()> = cereal_eat::map_with_pos(yum, |seg, _pos| seg[0] += 1);
/// assert_eq!(out.len(), 4);
/// assert_eq!(x, [2, 3, 4, 5]);
/// # Ok::<(), cereal_eat::Error>(())
/// ```
pub fn map_with_pos<I: IntoIterator, R>(items: I, mut f: impl FnMut(I::Item, usize) -> R) -> Vec<R> {
    items.into_iter().enumerate().map(|(pos, item)| f(item, pos)).collect()
}

/// Spawns `f(i)` as a tokio task for every `i` in `0..n`, at most `concurrency` running
/// at once, and returns at once with a handle that completes when all have (the seed's
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

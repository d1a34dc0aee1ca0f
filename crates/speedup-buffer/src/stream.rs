//! [`AsyncBuffer`]: the same read-ahead over a `futures::Stream`, driven by a tokio task.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::Notify;

use crate::error::Error;
use crate::halt::{self, Halt, NonDecreasing, Step};
use crate::producer::{Ending, PANICKED, RUNNING};
use crate::store::Store;

struct Shared<T> {
    items: Store<T>,
    wanted: AtomicUsize,
    ending: Ending,
    /// Signalled after every item (and at the end).
    produced: Notify,
    /// Signalled when a reader raises `wanted`.
    demand: Notify,
}

/// A stream run ahead of its readers by a tokio task, cached so it can be indexed
/// (`get(i).await`), iterated again as a [`Stream`], and shared between tasks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use futures::StreamExt;
/// use speedup_buffer::{AsyncBuffer, Buffer};
///
/// let squares = Buffer::builder().lookahead(4).build_async(futures::stream::iter(0u64..).map(|i| i * i));
/// assert_eq!(squares.get(10).await, Some(&100));
/// let cubes = AsyncBuffer::new(futures::stream::iter(0u64..).map(|i| i * i * i)); // lookahead 16
/// assert_eq!(squares.get(10).await, Some(&100));
/// let first: Vec<u64> = squares.stream().take(4).map(|v| *v).collect().await;
/// assert_eq!(first, [0, 1, 4, 9]);
/// # }
/// ```
///
/// Dropping the buffer aborts the producing task.
pub struct AsyncBuffer<T> {
    shared: Arc<Shared<T>>,
    lookahead: usize,
    /// The halting condition of [`AsyncBuffer::contains`].
    halt: Box<dyn Halt<T>>,
    task: tokio::task::JoinHandle<()>,
}

impl<T> fmt::Debug for AsyncBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncBuffer").field("produced", &self.shared.items.len()).finish_non_exhaustive()
    }
}

impl<T: PartialOrd + Send + Sync + 'static> AsyncBuffer<T> {
    /// Spawns a tokio task that pulls `stream` up to [`DEFAULT_LOOKAHEAD`](crate::DEFAULT_LOOKAHEAD)
    /// items past the furthest item asked for, with the [`NonDecreasing`] halting condition
    /// (other lookaheads and conditions: `Buffer::builder().lookahead(n).halt(h)
    /// .build_async(stream)`). Must be called within a tokio runtime.
    pub fn new<S>(stream: S) -> Self
    where
        S: Stream<Item = T> + Send + 'static,
    {
        Self::start(stream, crate::DEFAULT_LOOKAHEAD, Box::new(NonDecreasing))
    }
}

impl<T: Send + Sync + 'static> AsyncBuffer<T> {
    pub(crate) fn start<S>(stream: S, lookahead: usize, halt: Box<dyn Halt<T>>) -> Self
    where
        S: Stream<Item = T> + Send + 'static,
    {
        let lookahead = lookahead.max(1);
        let shared = Arc::new(Shared {
            items: Store::new(),
            wanted: AtomicUsize::new(lookahead),
            ending: Ending::new(),
            produced: Notify::new(),
            demand: Notify::new(),
        });
        let task = tokio::spawn(produce(Arc::clone(&shared), stream));
        AsyncBuffer { shared, lookahead, halt, task }
    }

    /// Whether `target` occurs: a scan from the first item until it is found or the
    /// halting condition says stop, as [`Buffer::contains`](crate::Buffer::contains) answers
    /// (the same answer, from the same items). Always ends on a finite stream.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use futures::StreamExt;
    /// use speedup_buffer::AsyncBuffer;
    ///
    /// let squares = AsyncBuffer::new(futures::stream::iter(0u64..).map(|i| i * i));
    /// assert!(squares.contains(&144).await);
    /// assert!(!squares.contains(&145).await); // stops at 169: the squares never decrease
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If the producer panicked before the search could end, or if the stream breaks the
    /// order the halting condition relies on (see [`AsyncBuffer::try_contains`]).
    pub async fn contains(&self, target: &T) -> bool
    where
        T: PartialEq,
    {
        match self.try_contains(target).await {
            Ok(found) => found,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`AsyncBuffer::contains`], with failures as errors: a stream that breaks the
    /// order the built-in halting conditions rely on, on an item the search examines or
    /// on the item after the one that stops it, is [`Error::Unsorted`], not a wrong answer
    /// or an endless scan (see [`Buffer::try_contains`](crate::Buffer::try_contains)). A
    /// target that is not equal to itself (NaN) is never found.
    ///
    /// # Errors
    ///
    /// [`Error::Unsorted`], [`Error::ProducerPanicked`], [`Error::ProducerStopped`].
    pub async fn try_contains(&self, target: &T) -> Result<bool, Error>
    where
        T: PartialEq,
    {
        // A target that is not equal to itself (NaN) equals no item: an endless stream
        // would be searched forever.
        #[allow(clippy::eq_op)]
        if target != target {
            return Ok(false);
        }
        let mut previous: Option<&T> = None;
        let mut index = 0usize;
        loop {
            let Some(item) = self.try_get(index).await? else { return Ok(false) };
            match halt::step(&*self.halt, previous, (index, item), target, index.saturating_add(1))? {
                Step::Found => return Ok(true),
                Step::Stop => {
                    // Only a condition that relies on an order needs the next item.
                    if self.halt.assumes_order()
                        && let Some(next_index) = index.checked_add(1)
                    {
                        let next = self.try_get(next_index).await?;
                        halt::check_after_stop(&*self.halt, item, (next_index, next))?;
                    }
                    return Ok(false);
                }
                Step::Next => {}
            }
            previous = Some(item);
            let Some(next_index) = index.checked_add(1) else { return Ok(false) };
            index = next_index;
        }
    }

    /// Item `index`, waiting (asynchronously) for the producer if needed; `None` past the
    /// end of a finite stream.
    ///
    /// # Panics
    ///
    /// If the producer panicked before producing the item.
    pub async fn get(&self, index: usize) -> Option<&T> {
        match self.try_get(index).await {
            Ok(item) => item,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`AsyncBuffer::get`], with the producer's panic as an error.
    ///
    /// # Errors
    ///
    /// [`Error::ProducerPanicked`]; [`Error::ProducerStopped`] if the producing task was
    /// dropped with its runtime (a reader on another runtime is told, not left waiting).
    pub async fn try_get(&self, index: usize) -> Result<Option<&T>, Error> {
        let shared = &self.shared;
        // Saturating: an index near `usize::MAX` asks for everything, it does not wrap.
        let wanted = index.saturating_add(1).saturating_add(self.lookahead);
        if shared.wanted.fetch_max(wanted, Ordering::AcqRel) < wanted {
            shared.demand.notify_one();
        }
        loop {
            // Register for the next item before checking, so a notification between the
            // check and the await cannot be lost.
            let produced = shared.produced.notified();
            tokio::pin!(produced);
            produced.as_mut().enable();
            if let Some(item) = shared.items.get(index) {
                return Ok(Some(item));
            }
            if shared.ending.how() == RUNNING {
                produced.await;
                continue;
            }
            // Items are stored before the end is announced: look once more.
            return match (shared.items.get(index), shared.ending.error(index)) {
                (Some(item), _) => Ok(Some(item)),
                (None, Some(error)) => Err(error),
                (None, None) => Ok(None),
            };
        }
    }

    /// The items from the first, as a stream of references (cached items first, then
    /// waiting for the producer). Any number of such streams may run at once.
    pub fn stream(&self) -> impl Stream<Item = &T> + '_ {
        futures::stream::unfold(Some(0usize), move |i| async move {
            let i = i?;
            self.get(i).await.map(|item| (item, i.checked_add(1)))
        })
    }

    /// Items produced so far.
    pub fn produced(&self) -> usize {
        self.shared.items.len()
    }
}

/// Marks the producer stopped if its task is dropped before it ends (its runtime shut
/// down, or the buffer aborted it), and wakes the readers: a reader on another runtime must
/// not wait for items that will never come.
struct StopIfDropped<'a, T>(&'a Shared<T>);

impl<T> Drop for StopIfDropped<'_, T> {
    fn drop(&mut self) {
        self.0.ending.stopped();
        self.0.produced.notify_waiters();
    }
}

async fn produce<T, S: Stream<Item = T>>(shared: Arc<Shared<T>>, stream: S) {
    tracing::debug!("speedup-buffer: async producer starts");
    let _stop_if_dropped = StopIfDropped(&shared);
    let run = AssertUnwindSafe(async {
        futures::pin_mut!(stream);
        let mut writer = shared.items.writer();
        let mut produced = 0;
        loop {
            loop {
                let demand = shared.demand.notified();
                tokio::pin!(demand);
                demand.as_mut().enable();
                if shared.wanted.load(Ordering::Acquire) > produced {
                    break;
                }
                demand.await;
            }
            match stream.next().await {
                Some(item) => {
                    writer.push(item);
                    produced += 1;
                    shared.produced.notify_waiters();
                    // A stream that is always ready (an iterator) with demand far ahead (a
                    // huge lookahead) would never give the runtime back: readers on a
                    // current-thread runtime would starve and `abort` (drop) would never
                    // land. Yield whenever tokio's cooperative budget runs out.
                    tokio::task::coop::consume_budget().await;
                }
                None => return,
            }
        }
    });
    let how = shared.ending.record(run.catch_unwind().await);
    tracing::debug!(panicked = how == PANICKED, "speedup-buffer: async producer ends");
    shared.produced.notify_waiters();
}

impl<T> Drop for AsyncBuffer<T> {
    /// Aborts the producing task.
    fn drop(&mut self) {
        self.task.abort();
    }
}

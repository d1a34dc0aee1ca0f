//! [`WindowBuffer`]: a read-ahead buffer that keeps only the last `window` items in memory,
//! optionally moving older ones to a spill store (a `speedup_paged::DiskList` with feature
//! `spill`) where they stay readable.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{BoxError, Error, SpillError};
use crate::producer::{Ending, ProducerThread};
use crate::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Where a [`WindowBuffer`] puts items that leave its window.
pub trait Spill<T>: Send {
    /// Stores item `index` (items arrive in order, from 0).
    ///
    /// # Errors
    ///
    /// The store's error; the item is then lost, and reading it (or any later spilled
    /// item) gives [`Error::Spill`] with this error as its source.
    fn spill(&mut self, index: usize, item: T) -> Result<(), BoxError>;

    /// Item `index`, if stored.
    ///
    /// # Errors
    ///
    /// The store's error, passed to the reader as the source of [`Error::Spill`].
    fn fetch(&self, index: usize) -> Result<Option<T>, BoxError>;
}

#[cfg(feature = "spill")]
impl<T: speedup_paged::Storable + Send> Spill<T> for speedup_paged::DiskList<T> {
    fn spill(&mut self, index: usize, item: T) -> Result<(), BoxError> {
        if index != self.len() {
            return Err(format!("spill out of order: item {index} after {} items", self.len()).into());
        }
        Ok(self.push(item)?)
    }

    fn fetch(&self, index: usize) -> Result<Option<T>, BoxError> {
        Ok(self.get(index)?)
    }
}

struct State<T> {
    items: VecDeque<T>,
    /// Index of `items[0]`.
    first: usize,
    wanted: usize,
    /// The producer ended: the sequence did, or it panicked (`Shared::ending` says which).
    done: bool,
    stop: bool,
    /// The producer is inside its iterator's `next()`, which may never return.
    busy: bool,
    spill: Option<Box<dyn Spill<T>>>,
    /// The first item the spill store failed to take, and why: it and every later spilled
    /// item are unreadable (reported by `get`, never passed off as the end).
    spill_failed: Option<(usize, SpillError)>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
    /// How the producer ended (`State::done` says that it did).
    ending: Ending,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock()
    }
}

/// A bounded read-ahead buffer: the producer runs `lookahead` items ahead of the furthest
/// item asked for, and only the last `window` items stay in memory. `get` returns clones.
///
/// ```
/// use speedup_buffer::{Buffer, Error};
///
/// let b = Buffer::builder().lookahead(4).window(8).build(0u64..); // lookahead 4, keep 8 items
/// assert_eq!(b.get(100), Ok(Some(100)));
/// assert!(matches!(b.get(3), Err(Error::Evicted { index: 3, .. })));
/// ```
pub struct WindowBuffer<T> {
    shared: Arc<Shared<T>>,
    lookahead: usize,
    producer: ProducerThread,
}

impl<T> fmt::Debug for WindowBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowBuffer").field("lookahead", &self.lookahead).finish_non_exhaustive()
    }
}

impl<T: Clone + Send + 'static> WindowBuffer<T> {
    /// Keeps the last `window` items (at least `lookahead + 1`) in memory; older ones are
    /// dropped, or moved to `spill`. Built through [`BufferBuilder::window`](crate::BufferBuilder::window).
    pub(crate) fn start<I>(iter: I, lookahead: usize, window: usize, spill: Option<Box<dyn Spill<T>>>) -> Self
    where
        I: Iterator<Item = T> + Send + 'static,
    {
        let lookahead = lookahead.max(1);
        let window = window.max(lookahead.saturating_add(1));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                // Grows as items come: a huge window must not reserve its memory up front.
                items: VecDeque::with_capacity(window.min(1024)),
                first: 0,
                wanted: lookahead,
                done: false,
                stop: false,
                busy: false,
                spill,
                spill_failed: None,
            }),
            changed: Condvar::new(),
            ending: Ending::new(),
        });
        let producer = {
            let shared = Arc::clone(&shared);
            ProducerThread::spawn("speedup-buffer-window", move || produce(&shared, iter, window))
        };
        WindowBuffer { shared, lookahead, producer }
    }

    /// Item `index`: `Ok(None)` past the end; [`Error::Evicted`] if it left the window and
    /// no spill store keeps it.
    ///
    /// # Errors
    ///
    /// [`Error::Evicted`], [`Error::Spill`], [`Error::ProducerPanicked`].
    pub fn get(&self, index: usize) -> Result<Option<T>, Error> {
        let mut state = self.shared.lock();
        // Saturating: an index near `usize::MAX` asks for everything, it does not wrap.
        let wanted = index.saturating_add(1).saturating_add(self.lookahead);
        if state.wanted < wanted {
            state.wanted = wanted;
            self.shared.changed.notify_all();
        }
        loop {
            if index < state.first {
                if let Some((failed, source)) = &state.spill_failed
                    && index >= *failed
                {
                    return Err(Error::Spill { index, source: source.clone() });
                }
                return match &state.spill {
                    Some(spill) => match spill.fetch(index) {
                        Ok(Some(item)) => Ok(Some(item)),
                        Ok(None) => Err(Error::Spill {
                            index,
                            source: BoxError::from("the spill store does not have it").into(),
                        }),
                        Err(error) => Err(Error::Spill { index, source: error.into() }),
                    },
                    None => Err(Error::Evicted { index, oldest: state.first }),
                };
            }
            if let Some(item) = state.items.get(index - state.first) {
                return Ok(Some(item.clone()));
            }
            if state.done {
                return self.shared.ending.error(index).map_or(Ok(None), Err);
            }
            state = self.shared.changed.wait(state);
        }
    }
}

fn produce<T, I: Iterator<Item = T>>(shared: &Shared<T>, iter: I, window: usize) {
    let span = tracing::debug_span!("speedup_buffer::window_producer", window);
    let _entered = span.enter();
    tracing::debug!("speedup-buffer: producer starts");
    let produced = produce_items(shared, iter, window);
    tracing::debug!(produced, "speedup-buffer: producer ends");
}

/// The window producer's loop; returns how many items it produced.
fn produce_items<T, I: Iterator<Item = T>>(shared: &Shared<T>, mut iter: I, window: usize) -> usize {
    let mut produced = 0;
    loop {
        {
            let mut state = shared.lock();
            if produced >= state.wanted && !state.stop {
                tracing::debug!(produced, "speedup-buffer: producer parks (lookahead reached)");
            }
            while produced >= state.wanted && !state.stop {
                state = shared.changed.wait(state);
            }
            if state.stop {
                return produced;
            }
            state.busy = true;
        }
        // The iterator runs without the lock: readers of cached items are never blocked.
        let next = catch_unwind(AssertUnwindSafe(|| iter.next()));
        let mut state = shared.lock();
        state.busy = false;
        if state.stop {
            return produced; // dropped meanwhile: nobody reads this item
        }
        match next {
            Ok(Some(item)) => {
                state.items.push_back(item);
                produced += 1;
                while state.items.len() > window {
                    let Some(old) = state.items.pop_front() else { break };
                    let index = state.first;
                    state.first += 1;
                    if state.spill_failed.is_some() {
                        continue; // the store is out of order from here on
                    }
                    if let Some(spill) = state.spill.as_mut()
                        && let Err(error) = spill.spill(index, old)
                    {
                        state.spill_failed = Some((index, error.into()));
                    }
                }
            }
            Ok(None) => {
                shared.ending.record(Ok(()));
                state.done = true;
            }
            Err(payload) => {
                shared.ending.record(Err(payload));
                state.done = true;
            }
        }
        let finished = state.done;
        drop(state);
        shared.changed.notify_all();
        if finished {
            return produced;
        }
    }
}

impl<T> Drop for WindowBuffer<T> {
    /// Stops the producer, as [`Buffer`](crate::Buffer)'s drop does: a waiting producer is
    /// woken and joined, and so is one that leaves its iterator's `next()` within
    /// [`DROP_GRACE`](crate::DROP_GRACE); one still inside it (which may block for ever) is
    /// detached: it finishes that call on its own and exits without storing anything more.
    fn drop(&mut self) {
        let busy = {
            let mut state = self.shared.state.lock();
            state.stop = true;
            state.busy
        };
        self.shared.changed.notify_all();
        self.producer.join_or_detach(busy);
    }
}

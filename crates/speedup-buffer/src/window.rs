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
///
/// Its calls never run under the window's lock: a store that blocks or panics in `spill`
/// blocks neither readers of the window nor the buffer's drop, and a panic is reported as
/// [`Error::Spill`]. `spill` and `fetch` share the store, though: while `spill` blocks,
/// reads of items already in the store wait for it (and so does the producer).
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
    /// The producer is inside user code that may never return: its iterator's `next()`, or
    /// the spill store's `spill`.
    busy: bool,
    /// Items that left the window and are being handed to the spill store (copies, for
    /// readers meanwhile), oldest first. An item leaves this list only once the store has
    /// it or its failure is recorded in `spill_failed`.
    spilling: VecDeque<(usize, T)>,
    /// The first item the spill store failed to take, and why: it and every later spilled
    /// item are unreadable (reported by `get`, never passed off as the end).
    spill_failed: Option<(usize, SpillError)>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
    /// The spill store, behind a lock of its own: its calls are user code (they may block
    /// or panic), so they never run under `state`'s lock, which readers and drop need.
    spill: Option<Mutex<Box<dyn Spill<T>>>>,
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
                spilling: VecDeque::new(),
                spill_failed: None,
            }),
            changed: Condvar::new(),
            spill: spill.map(Mutex::new),
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
                if let Some((_, item)) = state.spilling.iter().find(|(i, _)| *i == index) {
                    return Ok(Some(item.clone()));
                }
                let Some(spill) = &self.shared.spill else {
                    return Err(Error::Evicted { index, oldest: state.first });
                };
                // Not being spilled and not failed: the store has it. Ask it without the
                // state lock (the call is user code).
                drop(state);
                let store = spill.lock();
                let fetched = catch_unwind(AssertUnwindSafe(|| store.fetch(index)));
                let failed = |source: BoxError| Err(Error::Spill { index, source: source.into() });
                return match fetched {
                    Ok(Ok(Some(item))) => Ok(Some(item)),
                    Ok(Ok(None)) => failed("the spill store does not have it".into()),
                    Ok(Err(error)) => failed(error),
                    Err(payload) => failed(panicked(&*payload)),
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

fn produce<T: Clone, I: Iterator<Item = T>>(shared: &Shared<T>, iter: I, window: usize) {
    let span = tracing::debug_span!("speedup_buffer::window_producer", window);
    let _entered = span.enter();
    tracing::debug!("speedup-buffer: producer starts");
    // The iterator's panics are caught around `next()`; this catches the rest of the user
    // code the loop runs (`T::clone` of an item leaving the window), so that no panic can
    // end the producer without telling the readers.
    match catch_unwind(AssertUnwindSafe(|| produce_items(shared, iter, window))) {
        Ok(produced) => tracing::debug!(produced, "speedup-buffer: producer ends"),
        Err(payload) => {
            shared.ending.record(Err(payload));
            let mut state = shared.lock();
            state.done = true;
            state.busy = false;
            drop(state);
            shared.changed.notify_all();
            tracing::debug!("speedup-buffer: producer ends (panicked)");
        }
    }
}

/// The window producer's loop; returns how many items it produced.
fn produce_items<T: Clone, I: Iterator<Item = T>>(shared: &Shared<T>, mut iter: I, window: usize) -> usize {
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
        let mut to_spill = Vec::new();
        match next {
            Ok(Some(item)) => {
                state.items.push_back(item);
                produced += 1;
                while state.items.len() > window {
                    let Some(old) = state.items.pop_front() else { break };
                    let index = state.first;
                    state.first += 1;
                    // After a failure the store is out of order: later items are lost too.
                    if shared.spill.is_some() && state.spill_failed.is_none() {
                        state.spilling.push_back((index, old.clone()));
                        to_spill.push((index, old));
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
        state.busy = !to_spill.is_empty();
        drop(state);
        shared.changed.notify_all();
        if !to_spill.is_empty() && !spill_outside_the_lock(shared, to_spill) {
            return produced; // dropped meanwhile
        }
        if finished {
            return produced;
        }
    }
}

/// Hands `items` to the spill store, under the store's own lock only (a store that blocks
/// blocks neither readers of the window nor the buffer's drop), then takes them off the
/// `spilling` list, recording the first failure (an error or a panic of the store). Returns
/// false if the buffer was dropped meanwhile.
fn spill_outside_the_lock<T>(shared: &Shared<T>, items: Vec<(usize, T)>) -> bool {
    let Some(spill) = &shared.spill else { return true };
    let last = items.last().map(|(index, _)| *index);
    let mut failure = None;
    {
        let mut store = spill.lock();
        for (index, item) in items {
            match catch_unwind(AssertUnwindSafe(|| store.spill(index, item))) {
                Ok(Ok(())) => {}
                Ok(Err(error)) => failure = Some((index, error.into())),
                Err(payload) => failure = Some((index, panicked(&*payload).into())),
            }
            if failure.is_some() {
                break; // the rest of the batch is lost with it (the store is out of order)
            }
        }
    }
    let mut state = shared.lock();
    state.busy = false;
    while state.spilling.front().is_some_and(|(index, _)| Some(*index) <= last) {
        state.spilling.pop_front();
    }
    if state.spill_failed.is_none() {
        state.spill_failed = failure;
    }
    let stopped = state.stop;
    drop(state);
    shared.changed.notify_all();
    !stopped
}

/// A panic of the spill store, as the error readers of the lost items get.
fn panicked(payload: &(dyn std::any::Any + Send)) -> BoxError {
    format!("the spill store panicked: {}", crate::error::panic_message(payload)).into()
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

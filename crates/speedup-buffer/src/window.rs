//! [`WindowBuffer`]: a read-ahead buffer that keeps only the last `window` items in memory,
//! optionally moving older ones to a spill store (a `speedup_paged::DiskList` with feature
//! `spill`) where they stay readable.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::engine::{self, Sink};
use crate::error::{BoxError, Error, SpillError};
use crate::gate::Gate;
use crate::producer::ProducerThread;
use crate::sync::{Arc, AtomicUsize, Mutex, MutexGuard, Ordering};

/// Where a [`WindowBuffer`] puts items that leave its window.
///
/// Its calls never run under the window's lock: a store that blocks or panics in `spill`
/// blocks neither readers of the window nor the buffer's drop, and a panic is reported as
/// [`Error::Spill`]. `spill` and `fetch` share the store, though: while `spill` blocks,
/// reads of items already in the store wait for it (and so does the producer). A store
/// that reads its own buffer's spilled items from inside `spill` or `fetch` gets
/// [`Error::Reentrant`] (the read would wait for the store's own call to end).
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
    /// Items that left the window and are being handed to the spill store (copies, for
    /// readers meanwhile), oldest first. An item leaves this list only once the store has
    /// it or its failure is recorded in `spill_failed`.
    spilling: VecDeque<(usize, T)>,
    /// The first item the spill store failed to take, and why: it and every later spilled
    /// item are unreadable (reported by `get`, never passed off as the end).
    spill_failed: Option<(usize, SpillError)>,
}

struct Shared<T> {
    /// Demand, publication, parking and the producer's end: the engine's protocol, as in
    /// [`Buffer`](crate::Buffer).
    gate: Gate,
    /// The window, and the items on their way to the spill store. Readers and the producer
    /// take it for one item at a time; no user code runs under it but `T::clone` (items
    /// leaving the window are dropped after it is released).
    state: Mutex<State<T>>,
    /// Items the producer has put in the window so far (raised with `Release` after each,
    /// under `state`): the count the gate's waiting readers look at.
    stored: AtomicUsize,
    /// The spill store, behind a lock of its own: its calls are user code (they may block
    /// or panic), so they never run under `state`'s lock, which readers need.
    spill: Option<SpillStore<T>>,
}

/// The spill store, called one call at a time, panics caught, and refusing a call from a
/// thread already inside it (a store that reads its own buffer's spilled items from
/// `spill` or `fetch` would wait for its own lock for ever).
struct SpillStore<T> {
    store: Mutex<Box<dyn Spill<T>>>,
}

#[cfg(not(speedup_loom))]
std::thread_local! {
    /// The spill store this thread is inside (its address), if any.
    static INSIDE_STORE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl<T> SpillStore<T> {
    /// Runs `call` on the store; `None` if this thread is inside this store already.
    fn call<R>(&self, call: impl FnOnce(&mut dyn Spill<T>) -> R) -> Option<std::thread::Result<R>> {
        #[cfg(not(speedup_loom))]
        let me = std::ptr::from_ref(self).addr();
        #[cfg(not(speedup_loom))]
        if INSIDE_STORE.with(std::cell::Cell::get) == me {
            return None;
        }
        let mut store = self.store.lock();
        #[cfg(not(speedup_loom))]
        let outer = INSIDE_STORE.with(|inside| inside.replace(me));
        let result = catch_unwind(AssertUnwindSafe(|| call(&mut **store)));
        #[cfg(not(speedup_loom))]
        INSIDE_STORE.with(|inside| inside.set(outer));
        Some(result)
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock()
    }

    fn stored(&self) -> usize {
        self.stored.load(Ordering::Acquire)
    }
}

/// A bounded read-ahead buffer: the producer runs `lookahead` items ahead of the furthest
/// item asked for, and only the last `window` items stay in memory. `get` returns clones.
///
/// `T::clone` runs under the window's lock (readers and the producer copy items there), so
/// a `Clone` impl must not read the same buffer; `T::drop` of items leaving the window runs
/// after the lock is released.
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
            gate: Gate::new(lookahead),
            state: Mutex::new(State {
                // Grows as items come: a huge window must not reserve its memory up front.
                items: VecDeque::with_capacity(window.min(1024)),
                first: 0,
                spilling: VecDeque::new(),
                spill_failed: None,
            }),
            stored: AtomicUsize::new(0),
            spill: spill.map(|store| SpillStore { store: Mutex::new(store) }),
        });
        let producer = {
            let shared = Arc::clone(&shared);
            ProducerThread::spawn("speedup-buffer-window", move || {
                engine::produce(
                    &shared.gate,
                    move || iter,
                    WindowSink { shared: &shared, window, to_spill: Vec::new(), dropped: Vec::new() },
                )
            })
        };
        WindowBuffer { shared, lookahead, producer }
    }

    /// Item `index`: `Ok(None)` past the end; [`Error::Evicted`] if it left the window and
    /// no spill store keeps it.
    ///
    /// # Errors
    ///
    /// [`Error::Evicted`], [`Error::Spill`], [`Error::ProducerPanicked`];
    /// [`Error::Reentrant`] if the buffer's own iterator or spill store asks for an item it
    /// has not produced yet, or the spill store for a spilled item.
    pub fn get(&self, index: usize) -> Result<Option<T>, Error> {
        let shared = &*self.shared;
        // Saturating: an index near `usize::MAX` asks for everything, it does not wrap.
        shared.gate.want(index.saturating_add(1).saturating_add(self.lookahead));
        if index >= shared.stored() {
            if shared.gate.on_producer() {
                return Err(Error::Reentrant { index });
            }
            // Returns once the item is stored or the producer ended.
            shared.gate.wait_for(index, || shared.stored());
        }
        let state = shared.lock();
        if index < state.first {
            return self.get_evicted(index, state);
        }
        if let Some(item) = state.items.get(index - state.first) {
            return Ok(Some(item.clone()));
        }
        drop(state);
        // Not stored, so the producer ended: the sequence's end, or a panic.
        shared.gate.ending().error(index).map_or(Ok(None), Err)
    }

    /// Item `index`, which left the window: from the spill list or the spill store.
    fn get_evicted(&self, index: usize, state: MutexGuard<'_, State<T>>) -> Result<Option<T>, Error> {
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
        // Not being spilled and not failed: the store has it. Ask it without the state
        // lock (the call is user code).
        drop(state);
        let failed = |source: BoxError| Err(Error::Spill { index, source: source.into() });
        match spill.call(|store| store.fetch(index)) {
            None => Err(Error::Reentrant { index }),
            Some(Ok(Ok(Some(item)))) => Ok(Some(item)),
            Some(Ok(Ok(None))) => failed("the spill store does not have it".into()),
            Some(Ok(Err(error))) => failed(error),
            Some(Err(payload)) => failed(panicked(payload)),
        }
    }
}

/// The window as the engine's sink: keeps the last `window` items, and hands the ones that
/// leave it to the spill store.
struct WindowSink<'a, T> {
    shared: &'a Shared<T>,
    window: usize,
    /// Items that left the window at the last push, for [`Sink::settle`] to spill.
    to_spill: Vec<(usize, T)>,
    /// Items that left the window with no store to go to: dropped in [`Sink::settle`],
    /// after the item that pushed them out is published (`T::drop` is user code, and may
    /// be slow).
    dropped: Vec<T>,
}

impl<T: Clone> Sink<T> for WindowSink<'_, T> {
    fn push(&mut self, item: T) {
        let shared = self.shared;
        {
            let mut state = shared.lock();
            state.items.push_back(item);
            while state.items.len() > self.window {
                let index = state.first;
                // After a failure the store is out of order: later items are lost too.
                let keep = shared.spill.is_some() && state.spill_failed.is_none();
                // Cloned before anything moves: a panicking `T::clone` (which ends the
                // producer) leaves the item in the window, readable.
                let copy = match (keep, state.items.front()) {
                    (true, Some(oldest)) => Some(oldest.clone()),
                    _ => None,
                };
                let Some(oldest) = state.items.pop_front() else { break };
                state.first += 1;
                match copy {
                    Some(copy) => {
                        state.spilling.push_back((index, copy));
                        self.to_spill.push((index, oldest));
                    }
                    None => self.dropped.push(oldest),
                }
            }
            shared.stored.store(state.first + state.items.len(), Ordering::Release);
        }
    }

    fn stored(&self) -> usize {
        self.shared.stored.load(Ordering::Relaxed) // only this producer writes it
    }

    fn unsettled(&self) -> bool {
        !self.to_spill.is_empty() || !self.dropped.is_empty()
    }

    fn settle(&mut self) {
        if !self.to_spill.is_empty() {
            spill_outside_the_lock(self.shared, std::mem::take(&mut self.to_spill));
        }
        self.dropped.clear();
    }
}

/// Hands `items` to the spill store, under the store's own lock only (a store that blocks
/// blocks neither readers of the window nor the buffer's drop, which detaches a producer
/// stuck here as one stuck in `next()`), then takes them off the `spilling` list, recording
/// the first failure (an error or a panic of the store). The copies taken off the list, and
/// the items a failure left unspilled, are dropped after the window's lock is released.
fn spill_outside_the_lock<T>(shared: &Shared<T>, items: Vec<(usize, T)>) {
    let Some(spill) = &shared.spill else { return };
    let last = items.last().map(|(index, _)| *index);
    let mut failure: Option<(usize, SpillError)> = None;
    let mut items = items.into_iter();
    for (index, item) in items.by_ref() {
        let failed: Option<BoxError> = match spill.call(|store| store.spill(index, item)) {
            Some(Ok(Ok(()))) => None,
            Some(Ok(Err(error))) => Some(error),
            Some(Err(payload)) => Some(panicked(payload)),
            // Only the producer spills, and it is not inside the store here.
            None => Some("the spill store was called from inside itself".into()),
        };
        if let Some(error) = failed {
            failure = Some((index, error.into()));
            break; // the rest of the batch is lost with it (the store is out of order)
        }
    }
    let mut spilled = Vec::new();
    {
        let mut state = shared.lock();
        while state.spilling.front().is_some_and(|(index, _)| Some(*index) <= last) {
            spilled.extend(state.spilling.pop_front());
        }
        if state.spill_failed.is_none() {
            state.spill_failed = failure;
        }
    }
    drop(spilled);
    drop(items);
}

/// A panic of the spill store, as the error readers of the lost items get.
fn panicked(payload: Box<dyn std::any::Any + Send>) -> BoxError {
    let message = crate::error::panic_message(&*payload);
    crate::error::drop_payload(payload);
    format!("the spill store panicked: {message}").into()
}

impl<T> Drop for WindowBuffer<T> {
    /// Stops the producer, as [`Buffer`](crate::Buffer)'s drop does: a waiting producer is
    /// woken and joined, and so is one that leaves user code (its iterator's `next()`, the
    /// spill store's `spill`) within [`DROP_GRACE`](crate::DROP_GRACE); one still inside it
    /// (which may block for ever) is detached: it finishes that call on its own and exits
    /// without storing anything more.
    fn drop(&mut self) {
        self.producer.stop(&self.shared.gate);
    }
}

//! The publish/park protocol between the producer and the readers.
//!
//! Two counters carry it: `published` (items readers may read) and `wanted` (the producer
//! may produce while `published < wanted`). Readers never lock to read a published item.
//! Either side that has nothing to do spins for a bounded number of rounds, then parks on a
//! condition variable.
//!
//! **Invariant (no lost wake-up):** each counter carries, in its lowest bit, the flag "the
//! other side is parked waiting for this counter to move". The side that parks sets the
//! flag with a read-modify-write (`fetch_or`) *while holding the lock* and re-checks the
//! counter it got back; the side that moves the counter does so with a read-modify-write
//! too (`fetch_max`, `swap`) and, if the value it replaced had the flag, takes the lock and
//! notifies. Read-modify-writes of one atomic are totally ordered, so either the parker sees
//! the new value or the mover sees the flag; and the mover's notify cannot slip in before
//! the parker waits, because the parker holds the lock from its `fetch_or` until it sleeps.
//! This needs no `SeqCst` fences, so loom can check it exhaustively (`tests/loom.rs`).

use std::any::Any;

use crate::producer::{Ending, RUNNING};
use crate::sync::{AtomicBool, AtomicUsize, Condvar, Mutex, Ordering, SPINS, backoff};

/// The low bit of a counter: somebody is parked waiting for it to move.
const PARKED: usize = 1;
/// In `control`: the producer may be inside its iterator's `next()`.
const BUSY: usize = 1;
/// In `control`: the buffer was dropped.
const STOP: usize = 2;
/// In `control`: one reader about to park.
const WAITER: usize = 4;

/// The largest count a counter holds (the low bit is the flag). Demand is clamped to it:
/// no sequence can produce that many items in memory anyway.
pub(crate) const MAX_COUNT: usize = usize::MAX >> 1;

#[cfg(not(speedup_loom))]
std::thread_local! {
    /// The gate whose producer this thread is (its address), if any.
    static PRODUCING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Keeps a field on cache lines of its own (128 bytes: adjacent-line prefetching).
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

#[derive(Debug)]
pub(crate) struct Gate {
    /// `published << 1 | readers parked`.
    published: AtomicUsize,
    /// `wanted << 1 | producer parked`.
    wanted: AtomicUsize,
    ending: Ending,
    stop: AtomicBool,
    /// `readers about to park << 2 | STOP | BUSY`, on a cache line of its own: the producer
    /// does one read-modify-write on it per item ([`Gate::before_next`]), readers poll
    /// `published`. See [`Gate::wait_for`] and [`Gate::stop`].
    control: Padded<AtomicUsize>,
    lock: Mutex<()>,
    producer_wake: Condvar,
    readers_wake: Condvar,
}

impl Gate {
    pub(crate) fn new(initial_demand: usize) -> Self {
        Gate {
            published: AtomicUsize::new(0),
            wanted: AtomicUsize::new(initial_demand.min(MAX_COUNT) << 1),
            ending: Ending::new(),
            stop: AtomicBool::new(false),
            control: Padded(AtomicUsize::new(0)),
            lock: Mutex::new(()),
            producer_wake: Condvar::new(),
            readers_wake: Condvar::new(),
        }
    }

    /// Marks the calling thread as this gate's producer, for [`Gate::on_producer`].
    pub(crate) fn mark_producer(&self) {
        #[cfg(not(speedup_loom))]
        PRODUCING.with(|p| p.set(std::ptr::from_ref(self).addr()));
    }

    /// Whether the calling thread is this gate's producer (its iterator or sink asks for an
    /// item): waiting for an item it has not produced would wait for itself. (The gate
    /// lives as long as its producer runs, so its address is not reused meanwhile.)
    pub(crate) fn on_producer(&self) -> bool {
        #[cfg(not(speedup_loom))]
        return PRODUCING.with(|p| p.get() == std::ptr::from_ref(self).addr());
        #[cfg(speedup_loom)]
        false // loom's threads share the OS thread's thread-locals; no model re-enters
    }

    /// Items readers may read.
    #[inline]
    pub(crate) fn published(&self) -> usize {
        self.published.load(Ordering::Acquire) >> 1
    }

    pub(crate) fn end(&self) -> u8 {
        self.ending.how()
    }

    /// How the producer ended (and its panic message).
    pub(crate) fn ending(&self) -> &Ending {
        &self.ending
    }

    // ---- reader side ----

    /// Raises the demand to `upto` items, waking the producer if it sleeps.
    pub(crate) fn want(&self, upto: usize) {
        let upto = upto.min(MAX_COUNT);
        if self.wanted.load(Ordering::Relaxed) >> 1 >= upto {
            return;
        }
        let old = self.wanted.fetch_max(upto << 1, Ordering::AcqRel);
        if old & PARKED != 0 && old >> 1 < upto {
            let _guard = self.lock.lock();
            self.producer_wake.notify_one();
        }
    }

    /// Waits until item `index` is readable or the producer ended. Returns a count of
    /// readable items, loaded with `Acquire`: `published`, or the store's `written` count
    /// (`written()`), which the producer raises after each item, before publishing a batch.
    ///
    /// A reader first spins (a few microseconds) on `published`, which a fast producer raises
    /// in batches: that is the hand-off's speed. A reader about to park then registers in
    /// `control` (a read-modify-write) and looks at `written`; the producer does a
    /// read-modify-write of `control` after storing each item (before its next `next()`,
    /// see [`Gate::before_next`]) and publishes at once if anyone is registered. Read-modify-writes of one atomic are totally ordered:
    /// either the producer sees the registration (and publishes, waking the reader through
    /// the parked flag), or the registration reads from the producer's and so sees the item
    /// in `written`. So a stored item never waits for a batch to fill while a reader sleeps.
    pub(crate) fn wait_for(&self, index: usize, written: impl Fn() -> usize) -> usize {
        for round in 0..SPINS {
            let published = self.published();
            if index < published {
                return published;
            }
            if self.end() != RUNNING {
                // The last items are published before the end is set: read them again
                // (reading `published` before `end` could miss them; loom found this).
                return self.published();
            }
            backoff(round);
        }
        self.control.0.fetch_add(WAITER, Ordering::AcqRel);
        let readable = self.park_for(index, &written);
        self.control.0.fetch_sub(WAITER, Ordering::Release);
        readable
    }

    fn park_for(&self, index: usize, written: &impl Fn() -> usize) -> usize {
        let stored = written();
        if index < stored {
            return stored;
        }
        let mut guard = self.lock.lock();
        loop {
            let published = self.published.fetch_or(PARKED, Ordering::AcqRel) >> 1;
            if index < published {
                return published;
            }
            if self.end() != RUNNING {
                return self.published();
            }
            guard = self.readers_wake.wait(guard);
        }
    }

    /// Asks the producer to stop (the buffer is being dropped) and wakes it. Returns
    /// whether the producer may be inside its iterator's `next()`, which may never return:
    /// then the caller must not wait for it. Both sides use read-modify-writes of
    /// `control`, so either the producer sees `STOP` before its next `next()` or this sees
    /// `BUSY`.
    pub(crate) fn stop(&self) -> bool {
        let control = self.control.0.fetch_or(STOP, Ordering::AcqRel);
        self.stop.store(true, Ordering::Release);
        let _guard = self.lock.lock();
        self.producer_wake.notify_one();
        control & BUSY != 0
    }

    /// The producer is about to call `next()` (having stored every item so far). Returns
    /// `None` if it must stop instead, or whether a reader is about to park, in which case
    /// the producer publishes what it stored before calling `next()`.
    pub(crate) fn before_next(&self) -> Option<bool> {
        let control = self.control.0.fetch_or(BUSY, Ordering::AcqRel);
        (control & STOP == 0).then_some(control >= WAITER)
    }

    /// The producer is not inside `next()` (it parks, or ends).
    pub(crate) fn idle(&self) {
        self.control.0.fetch_and(!BUSY, Ordering::Release);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Waits until there is demand past `produced` (or a stop). Returns the demand, or
    /// `None` to stop.
    pub(crate) fn demand_after(&self, produced: usize) -> Option<usize> {
        for round in 0..SPINS {
            if self.stopping() {
                return None;
            }
            let wanted = self.wanted.load(Ordering::Acquire) >> 1;
            if wanted > produced {
                return Some(wanted);
            }
            backoff(round);
        }
        tracing::debug!(produced, "speedup-buffer: producer parks (lookahead reached)");
        let mut guard = self.lock.lock();
        loop {
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            let wanted = self.wanted.fetch_or(PARKED, Ordering::AcqRel) >> 1;
            if wanted > produced {
                self.wanted.fetch_and(!PARKED, Ordering::Relaxed);
                return Some(wanted);
            }
            guard = self.producer_wake.wait(guard);
        }
    }

    /// Makes the first `count` items readable, waking parked readers.
    pub(crate) fn publish(&self, count: usize) {
        if self.published.swap(count.min(MAX_COUNT) << 1, Ordering::AcqRel) & PARKED != 0 {
            let _guard = self.lock.lock();
            self.readers_wake.notify_all();
        }
    }

    /// The producer is done (`Err`: it panicked, with this payload): record how, then wake
    /// everybody.
    pub(crate) fn finish(&self, outcome: Result<(), Box<dyn Any + Send>>) {
        self.ending.record(outcome);
        let _guard = self.lock.lock();
        self.readers_wake.notify_all();
    }
}

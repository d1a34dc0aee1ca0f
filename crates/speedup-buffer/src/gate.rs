//! The publish/park protocol between the producer and the readers.
//!
//! Two counters carry it: `published` (items readers may read) and `wanted` (the producer
//! may produce while `published < wanted`). Readers never lock to read a published item.
//! Either side that has nothing to do spins for a bounded number of rounds, then parks on a
//! condition variable; the other side wakes it only if it announced that it parks.
//!
//! **Invariant (no lost wake-up):** each side writes its counter, then (after a `SeqCst`
//! fence) reads the other side's "parked" flag; each parking side sets its flag, then
//! (`SeqCst`) re-reads the counter under the lock before sleeping. Whichever order the two
//! happen in, one of them sees the other. `tests/loom.rs` checks this.

use crate::sync::{AtomicBool, AtomicU8, AtomicUsize, Condvar, Mutex, Ordering, SPINS, backoff, fence, lock};

/// How the producer ended.
pub(crate) const RUNNING: u8 = 0;
pub(crate) const FINISHED: u8 = 1;
pub(crate) const PANICKED: u8 = 2;

#[derive(Debug)]
pub(crate) struct Gate {
    published: AtomicUsize,
    wanted: AtomicUsize,
    end: AtomicU8,
    stop: AtomicBool,
    producer_parked: AtomicBool,
    readers_parked: AtomicUsize,
    lock: Mutex<()>,
    producer_wake: Condvar,
    readers_wake: Condvar,
}

impl Gate {
    pub(crate) fn new(initial_demand: usize) -> Self {
        Gate {
            published: AtomicUsize::new(0),
            wanted: AtomicUsize::new(initial_demand),
            end: AtomicU8::new(RUNNING),
            stop: AtomicBool::new(false),
            producer_parked: AtomicBool::new(false),
            readers_parked: AtomicUsize::new(0),
            lock: Mutex::new(()),
            producer_wake: Condvar::new(),
            readers_wake: Condvar::new(),
        }
    }

    /// Items readers may read.
    pub(crate) fn published(&self) -> usize {
        self.published.load(Ordering::Acquire)
    }

    pub(crate) fn end(&self) -> u8 {
        self.end.load(Ordering::Acquire)
    }

    // ---- reader side ----

    /// Raises the demand to `upto` items, waking the producer if it sleeps.
    pub(crate) fn want(&self, upto: usize) {
        if self.wanted.load(Ordering::Relaxed) >= upto {
            return;
        }
        self.wanted.fetch_max(upto, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.producer_parked.load(Ordering::SeqCst) {
            let _guard = lock(&self.lock);
            self.producer_wake.notify_one();
        }
    }

    /// Waits until item `index` is published or the producer ended. Returns `published`.
    pub(crate) fn wait_for(&self, index: usize) -> usize {
        for round in 0..SPINS {
            let published = self.published();
            if index < published || self.end() != RUNNING {
                return published;
            }
            backoff(round);
        }
        let mut guard = lock(&self.lock);
        self.readers_parked.fetch_add(1, Ordering::SeqCst);
        loop {
            let published = self.published.load(Ordering::SeqCst);
            if index < published || self.end() != RUNNING {
                self.readers_parked.fetch_sub(1, Ordering::SeqCst);
                return published;
            }
            guard = self.readers_wake.wait(guard).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Asks the producer to stop (the buffer is being dropped) and wakes it.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _guard = lock(&self.lock);
        self.producer_wake.notify_one();
    }

    // ---- producer side ----

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
            let wanted = self.wanted.load(Ordering::Acquire);
            if wanted > produced {
                return Some(wanted);
            }
            backoff(round);
        }
        let mut guard = lock(&self.lock);
        self.producer_parked.store(true, Ordering::SeqCst);
        let outcome = loop {
            if self.stop.load(Ordering::SeqCst) {
                break None;
            }
            let wanted = self.wanted.load(Ordering::SeqCst);
            if wanted > produced {
                break Some(wanted);
            }
            guard = self.producer_wake.wait(guard).unwrap_or_else(std::sync::PoisonError::into_inner);
        };
        self.producer_parked.store(false, Ordering::SeqCst);
        outcome
    }

    /// Makes the first `count` items readable, waking parked readers.
    pub(crate) fn publish(&self, count: usize) {
        self.published.store(count, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.readers_parked.load(Ordering::SeqCst) > 0 {
            let _guard = lock(&self.lock);
            self.readers_wake.notify_all();
        }
    }

    /// The producer is done (`FINISHED` or `PANICKED`): wake everybody.
    pub(crate) fn finish(&self, how: u8) {
        self.end.store(how, Ordering::SeqCst);
        let _guard = lock(&self.lock);
        self.readers_wake.notify_all();
    }
}

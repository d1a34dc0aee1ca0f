//! The one place that picks `std` or `loom` synchronization types, so that
//! `RUSTFLAGS="--cfg speedup_loom"` model-checks the publish/park protocol.
//!
//! `Mutex` and `Condvar` are wrappers that ignore poisoning (as tokio's loom shim does): no
//! critical section of this crate runs user code or panics halfway through a change, so a
//! poisoned lock only means some other thread panicked, and its data is still consistent.

#[cfg(speedup_loom)]
use loom::sync as imp;
#[cfg(speedup_loom)]
pub(crate) use loom::sync::{
    Arc, MutexGuard,
    atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
};
#[cfg(speedup_loom)]
pub(crate) use loom::thread;
#[cfg(not(speedup_loom))]
use std::sync as imp;
#[cfg(not(speedup_loom))]
pub(crate) use std::sync::{
    Arc, MutexGuard,
    atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
};
#[cfg(not(speedup_loom))]
pub(crate) use std::thread;

/// A mutex whose `lock` cannot fail: poisoning is ignored (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(imp::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(imp::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A condition variable over [`Mutex`]'s guards whose `wait` cannot fail.
#[derive(Debug, Default)]
pub(crate) struct Condvar(imp::Condvar);

impl Condvar {
    pub(crate) fn new() -> Self {
        Condvar(imp::Condvar::new())
    }

    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0.wait(guard).unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn notify_one(&self) {
        self.0.notify_one();
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}

/// Spins this many rounds (with `spin_loop` / `yield_now` backoff) before parking: a hand-off
/// that is microseconds away costs no system call, and nothing spins for longer.
#[cfg(not(speedup_loom))]
pub(crate) const SPINS: u32 = 64;
#[cfg(speedup_loom)]
pub(crate) const SPINS: u32 = 1;

/// One round of backoff.
pub(crate) fn backoff(round: u32) {
    #[cfg(speedup_loom)]
    {
        let _ = round;
        loom::thread::yield_now();
    }
    #[cfg(not(speedup_loom))]
    if round < 32 {
        for _ in 0..1 << (round / 4).min(6) {
            std::hint::spin_loop();
        }
    } else {
        std::thread::yield_now();
    }
}

//! The one place that picks `std` or `loom` synchronization types (the tokio pattern): the
//! rest of the crate imports them from here, so `RUSTFLAGS="--cfg speedup_loom"` model-checks it.
//!
//! `Mutex`, `RwLock` and `Condvar` are wrappers that ignore poisoning (as tokio's loom shim
//! does): user code never runs under a lock of this crate and no critical section panics
//! halfway through a change, so a poisoned lock only means another thread panicked
//! elsewhere, and the data it guards is consistent.

#[cfg(speedup_loom)]
use loom::sync as imp;
#[cfg(speedup_loom)]
pub(crate) use loom::sync::{Arc, MutexGuard, RwLockReadGuard, RwLockWriteGuard, atomic::AtomicUsize};
#[cfg(not(speedup_loom))]
use std::sync as imp;
#[cfg(not(speedup_loom))]
pub(crate) use std::sync::{Arc, MutexGuard, RwLockReadGuard, RwLockWriteGuard, atomic::AtomicUsize};

use std::sync::PoisonError;

/// A mutex whose `lock` cannot fail: poisoning is ignored (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(imp::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(imp::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A reader-writer lock whose `read` and `write` cannot fail (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct RwLock<T>(imp::RwLock<T>);

impl<T> RwLock<T> {
    pub(crate) fn new(value: T) -> Self {
        RwLock(imp::RwLock::new(value))
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A condition variable over [`Mutex`]'s guards whose waits cannot fail.
#[derive(Debug, Default)]
pub(crate) struct Condvar(imp::Condvar);

impl Condvar {
    pub(crate) fn new() -> Self {
        Condvar(imp::Condvar::new())
    }

    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits at most `timeout`; the flag is true when it ran out.
    pub(crate) fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: std::time::Duration,
    ) -> (MutexGuard<'a, T>, bool) {
        let (guard, result) = self.0.wait_timeout(guard, timeout).unwrap_or_else(PoisonError::into_inner);
        (guard, result.timed_out())
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}

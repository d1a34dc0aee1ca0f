//! The one place that picks `std` or `loom` synchronization types (the tokio pattern): the
//! rest of the crate imports them from here, so `RUSTFLAGS="--cfg speedup_loom"` model-checks it.

#[cfg(speedup_loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, atomic::AtomicUsize};
#[cfg(not(speedup_loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, atomic::AtomicUsize};

/// Locks a mutex, ignoring poisoning: our critical sections never panic halfway through a
/// state change (user code never runs under a lock), so the data is always consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

//! The one place that picks `std` or `loom` synchronization types (the tokio pattern): the
//! rest of the crate imports them from here, so `RUSTFLAGS="--cfg speedup_loom"` model-checks it.

#[cfg(speedup_loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, atomic::AtomicUsize};
#[cfg(not(speedup_loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, atomic::AtomicUsize};

/// A small, unique, never-reused id of the calling thread (cheaper than `ThreadId` to
/// compare and available under loom).
pub(crate) fn thread_id() -> u64 {
    #[cfg(not(speedup_loom))]
    use std::{cell::Cell, sync::atomic::AtomicU64, thread_local};
    #[cfg(speedup_loom)]
    use {loom::thread_local, std::cell::Cell, std::sync::atomic::AtomicU64};

    static NEXT: AtomicU64 = AtomicU64::new(1);
    // loom's `thread_local!` has no `const` form.
    #[cfg(not(speedup_loom))]
    thread_local!(static ID: Cell<u64> = const { Cell::new(0) });
    #[cfg(speedup_loom)]
    thread_local!(static ID: Cell<u64> = Cell::new(0));
    ID.with(|id| {
        if id.get() == 0 {
            id.set(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        }
        id.get()
    })
}

/// Locks a mutex, ignoring poisoning: our critical sections never panic halfway through a
/// state change (user code never runs under a lock), so the data is always consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

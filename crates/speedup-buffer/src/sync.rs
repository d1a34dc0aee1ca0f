//! The one place that picks `std` or `loom` synchronization types, so that
//! `RUSTFLAGS="--cfg speedup_loom"` model-checks the publish/park protocol.

#[cfg(speedup_loom)]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
};
#[cfg(speedup_loom)]
pub(crate) use loom::thread;
#[cfg(not(speedup_loom))]
pub(crate) use std::sync::{
    Arc, Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
};
#[cfg(not(speedup_loom))]
pub(crate) use std::thread;

/// Locks, ignoring poisoning: the guarded data is `()`; the lock only orders wake-ups.
pub(crate) fn lock(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

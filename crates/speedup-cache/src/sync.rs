//! The one place that picks `std` or `loom` synchronization types (the tokio pattern): the
//! rest of the crate imports them from here, so `RUSTFLAGS="--cfg speedup_loom"` model-checks it.
//!
//! `Mutex`, `RwLock` and `Condvar` are wrappers that ignore poisoning (as tokio's loom shim
//! does): user code never runs under a lock of this crate and no critical section panics
//! halfway through a change, so a poisoned lock only means another thread panicked
//! elsewhere, and the data it guards is consistent.

#[cfg(not(speedup_loom))]
pub(crate) use cell::{ConstPtr, MutPtr, UnsafeCell};
#[cfg(speedup_loom)]
pub(crate) use loom::cell::{ConstPtr, MutPtr, UnsafeCell};
#[cfg(speedup_loom)]
use loom::sync as imp;
#[cfg(speedup_loom)]
pub(crate) use loom::sync::{
    Arc, MutexGuard, RwLockReadGuard, RwLockWriteGuard,
    atomic::{AtomicBool, AtomicUsize},
};
#[cfg(not(speedup_loom))]
use std::sync as imp;
pub(crate) use std::sync::atomic::Ordering;
#[cfg(not(speedup_loom))]
pub(crate) use std::sync::{
    Arc, MutexGuard, RwLockReadGuard, RwLockWriteGuard,
    atomic::{AtomicBool, AtomicUsize},
};

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

/// One round of waiting for another thread: a spin hint for the first rounds (the other
/// thread is running and about to finish), then yielding the core (it may be descheduled:
/// spinning would only delay it), then sleeps of up to a millisecond (it is busy for long,
/// in a user's slow `Clone`: yielding in a loop would keep a core busy all that time).
/// Under loom, always a yield: loom must see the wait.
pub(crate) fn backoff(round: u32) {
    #[cfg(speedup_loom)]
    {
        let _ = round;
        loom::thread::yield_now();
    }
    #[cfg(not(speedup_loom))]
    match round {
        0..64 => std::hint::spin_loop(),
        64..96 => std::thread::yield_now(),
        _ => std::thread::sleep(std::time::Duration::from_micros(50 << ((round - 96) / 8).min(4))),
    }
}

/// `std`'s `UnsafeCell` with loom's `get`/`get_mut` interface: the pointers are guards that
/// loom tracks (so it sees every access's extent); here they are plain pointers.
#[cfg(not(speedup_loom))]
mod cell {
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) fn new(value: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        pub(crate) fn get(&self) -> ConstPtr<T> {
            ConstPtr(self.0.get())
        }

        pub(crate) fn get_mut(&self) -> MutPtr<T> {
            MutPtr(self.0.get())
        }
    }

    /// A shared pointer into an [`UnsafeCell`].
    pub(crate) struct ConstPtr<T>(*const T);

    impl<T> ConstPtr<T> {
        /// # Safety
        ///
        /// As dereferencing a `*const T`: no `&mut` to the value exists meanwhile.
        pub(crate) unsafe fn deref(&self) -> &T {
            // SAFETY: the caller's contract.
            unsafe { &*self.0 }
        }
    }

    /// An exclusive pointer into an [`UnsafeCell`].
    pub(crate) struct MutPtr<T>(*mut T);

    impl<T> MutPtr<T> {
        /// # Safety
        ///
        /// As dereferencing a `*mut T`: no other reference to the value exists meanwhile.
        #[allow(clippy::mut_from_ref)]
        pub(crate) unsafe fn deref(&self) -> &mut T {
            // SAFETY: the caller's contract.
            unsafe { &mut *self.0 }
        }
    }
}

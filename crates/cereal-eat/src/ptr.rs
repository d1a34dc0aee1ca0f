//! `eat`: many cheap handles to one object.

use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

/// A handle to an object shared by every handle [`eat`] made: reading through one sees
/// the writes made through any other.
///
/// A `Ptr` is one pointer wide; cloning it copies no data. It is `Send + Sync + 'static`
/// when `T: Send + Sync`, so it can go to `std::thread::spawn` or `tokio::spawn`, unlike a
/// borrow. Reads and writes go through a reader-writer lock (many readers or one writer):
/// for many writers on *different parts* of one buffer use [`split`](crate::split)
/// (no lock at all), for many writers on *the same elements* use
/// [`AtomicArray`](crate::AtomicArray).
pub struct Ptr<T> {
    shared: Arc<RwLock<T>>,
}

impl<T> Clone for Ptr<T> {
    fn clone(&self) -> Self {
        Ptr { shared: Arc::clone(&self.shared) }
    }
}

impl<T: fmt::Debug> fmt::Debug for Ptr<T> {
    /// `<pointer to VALUE at ADDRESS>`, or `<pointer to <locked> at ADDRESS>` while a
    /// writer holds the object (as std's `RwLock` prints it), so formatting a handle never
    /// waits, not even on a write guard held by this very thread.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = Arc::as_ptr(&self.shared);
        match self.shared.try_read() {
            Ok(value) => write!(f, "<pointer to {:?} at {at:p}>", &*value),
            Err(TryLockError::Poisoned(poisoned)) => {
                write!(f, "<pointer to {:?} at {at:p}>", &*poisoned.into_inner())
            }
            Err(TryLockError::WouldBlock) => write!(f, "<pointer to <locked> at {at:p}>"),
        }
    }
}

impl<T> Ptr<T> {
    /// Reads the object (the original's `~ptr`). Many readers may hold this at once.
    ///
    /// Blocks while a writer holds the object. Asking for it while this thread holds a
    /// [`write`](Ptr::write) guard from any handle to the same object deadlocks (or panics),
    /// as with any `RwLock`: drop the write guard first.
    ///
    /// Poisoning is ignored: if a writer panicked while holding the object, this returns
    /// the object as that writer left it, possibly half-updated. A handle stands for the
    /// original's plain shared object, which has no notion of poisoning, and turning every
    /// read into a `Result` would burden every caller for a rare case; callers that must
    /// know ask [`Ptr::is_poisoned`].
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.shared.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the object; every other handle sees the change.
    ///
    /// Blocks while anyone reads or writes the object; asking for it while this thread
    /// holds a guard to the same object deadlocks (or panics). Poisoning is ignored, as for
    /// [`Ptr::read`].
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.shared.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a writer panicked while holding the object, so that it may be half-updated
    /// ([`Ptr::read`] and [`Ptr::write`] give it anyway). Stays `true` until
    /// [`Ptr::clear_poison`].
    pub fn is_poisoned(&self) -> bool {
        self.shared.is_poisoned()
    }

    /// Marks the object as sound again, once the caller has checked or repaired it.
    pub fn clear_poison(&self) {
        self.shared.clear_poison();
    }

    /// Whether two handles point at the same object.
    pub fn ptr_eq(&self, other: &Ptr<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// How many handles point at the object.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.shared)
    }

    /// The object back, without a copy, if this is the last handle.
    ///
    /// # Errors
    ///
    /// [`HandlesAlive`] when other handles are still alive; it gives this handle back
    /// ([`HandlesAlive::into_ptr`]).
    pub fn into_inner(self) -> Result<T, HandlesAlive<T>> {
        match Arc::try_unwrap(self.shared) {
            Ok(lock) => Ok(lock.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)),
            Err(shared) => Err(HandlesAlive { ptr: Ptr { shared } }),
        }
    }
}

/// The error of [`Ptr::into_inner`]: other handles to the object are still alive. Holds the
/// handle, to try again once they are dropped ([`HandlesAlive::into_ptr`]).
pub struct HandlesAlive<T> {
    ptr: Ptr<T>,
}

impl<T> HandlesAlive<T> {
    /// How many handles (this one included) pointed at the object when the call failed.
    pub fn handles(&self) -> usize {
        self.ptr.handles()
    }

    /// The handle back.
    pub fn into_ptr(self) -> Ptr<T> {
        self.ptr
    }
}

impl<T> fmt::Debug for HandlesAlive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlesAlive").field("handles", &self.handles()).finish_non_exhaustive()
    }
}

impl<T> fmt::Display for HandlesAlive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} handles point at the object; drop the others before taking it back", self.handles())
    }
}

impl<T> std::error::Error for HandlesAlive<T> {}

/// Moves `obj` behind a shared handle and yields `its` handles to it, collected into any
/// collection (`FromIterator`: the original's `method` argument). No copy of `obj` is made;
/// memory grows by one pointer per handle.
///
/// ```
/// use cereal_eat::{eat, Ptr};
///
/// let yum: Vec<Ptr<Vec<i32>>> = eat(vec![1, 2, 3, 4], 4).collect();
/// assert_eq!(yum[0].read()[0], 1);            // (~yum[0])[0]
/// yum[0].write()[0] = 4;                      // yum[0][0] = 4
/// assert_eq!(*yum[3].read(), [4, 2, 3, 4]);   // every handle sees it
/// drop(yum[1..].to_vec());
/// let x = yum.into_iter().fold(None, |_, p| p.into_inner().ok()).expect("last handle");
/// assert_eq!(x, [4, 2, 3, 4]);                // the original, changed, recovered
/// ```
pub fn eat<T>(obj: T, its: usize) -> impl ExactSizeIterator<Item = Ptr<T>> {
    std::iter::repeat_n(Ptr { shared: Arc::new(RwLock::new(obj)) }, its)
}

#[cfg(test)]
mod tests {
    use speedup_test_support::within;

    use super::*;

    #[test]
    fn into_inner_with_other_handles_is_an_error_that_gives_the_handle_back() {
        let mut handles: Vec<Ptr<Vec<u8>>> = eat(vec![1, 2], 2).collect();
        let last = handles.pop().unwrap();
        let alive = last.into_inner().unwrap_err();
        assert_eq!(alive.handles(), 2);
        assert_eq!(alive.to_string(), "2 handles point at the object; drop the others before taking it back");
        let boxed: Box<dyn std::error::Error> = Box::new(alive);
        assert!(boxed.source().is_none());
        drop(handles);
        let last = boxed.downcast::<HandlesAlive<Vec<u8>>>().unwrap().into_ptr();
        assert_eq!(last.into_inner().unwrap(), [1, 2]);
    }

    #[test]
    fn miri_debug_under_this_threads_write_guard_prints_locked() {
        let text = within(10, || {
            let p: Vec<Ptr<Vec<i32>>> = eat(vec![1, 2], 2).collect();
            let mut guard = p[0].write();
            guard.push(3);
            let locked = format!("{:?}", p[1]);
            drop(guard);
            (locked, format!("{:?}", p[1]))
        });
        assert!(text.0.starts_with("<pointer to <locked> at 0x"), "{}", text.0);
        assert!(text.1.starts_with("<pointer to [1, 2, 3] at 0x"), "{}", text.1);
    }

    #[test]
    fn miri_a_panicking_writer_leaves_its_half_update_and_a_poison_mark() {
        let p: Vec<Ptr<Vec<i32>>> = eat(vec![0, 0], 2).collect();
        let writer = p[0].clone();
        let panicked = std::thread::spawn(move || {
            let mut v = writer.write();
            v[0] = 1;
            panic!("writer fails between the two halves of its update");
        })
        .join();
        assert!(panicked.is_err());
        assert!(p[1].is_poisoned(), "the failure is reported");
        assert_eq!(*p[1].read(), [1, 0], "poisoning is ignored: the half update is visible");
        assert!(format!("{:?}", p[1]).starts_with("<pointer to [1, 0]"));
        p[1].write()[1] = 1;
        p[1].clear_poison();
        assert!(!p[0].is_poisoned());
    }
}

//! `eat`: many cheap handles to one object.

use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<pointer to {:?} at {:p}>", &*self.read(), Arc::as_ptr(&self.shared))
    }
}

impl<T> Ptr<T> {
    /// Reads the object (the original's `~ptr`). Many readers may hold this at once.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.shared.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the object; every other handle sees the change.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.shared.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether two handles point at the same object.
    pub fn ptr_eq(&self, other: &Ptr<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// How many handles point at the object.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.shared)
    }

    /// The object back, without a copy, if this is the last handle; otherwise the handle.
    ///
    /// # Errors
    ///
    /// Returns `self` when other handles are still alive.
    pub fn into_inner(self) -> Result<T, Ptr<T>> {
        match Arc::try_unwrap(self.shared) {
            Ok(lock) => Ok(lock.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)),
            Err(shared) => Err(Ptr { shared }),
        }
    }
}

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

//! The produced prefix: an append-only array with stable addresses, written by exactly one
//! producer and read by any number of threads.
//!
//! Items live in buckets of doubling size (32, 64, 128, ...), allocated on demand and never
//! moved or freed before the store is dropped, so `&T` stays valid for the store's life.
//!
//! **Invariant (why the unsafe code is sound):** slot `i` is written exactly once, by the
//! store's one [`Writer`], before it raises `written` past `i` (`Release`). A reader reads
//! slot `i` only after observing (`Acquire`) `written` above `i`, itself or earlier through
//! the same [`Cursor`]. So every read of a slot happens-after its only write, and nothing
//! ever writes it again. This module is the crate's only `unsafe` code, and its API is
//! safe: one writer is enforced by [`Store::writer`], reads check `written`. Tested by the
//! unit tests below (also under Miri, which checks for data races between real threads),
//! `tests/handoff.rs` and the loom models.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Size of the first bucket; bucket `b` holds `FIRST << b` items.
const FIRST: usize = 32;
/// Enough buckets for every index below `usize::MAX - FIRST`.
const BUCKETS: usize = usize::BITS as usize - FIRST.trailing_zeros() as usize;

type Slot<T> = UnsafeCell<MaybeUninit<T>>;

pub(crate) struct Store<T> {
    buckets: [AtomicPtr<Slot<T>>; BUCKETS],
    written: AtomicUsize,
    /// Set once [`Store::writer`] has handed out the writer.
    writer_taken: AtomicBool,
}

/// The store's one writer (see [`Store::writer`]).
pub(crate) struct Writer<'s, T> {
    store: &'s Store<T>,
}

/// A reader's position in one store: the count of written items it has observed, so that
/// reading below it takes no atomic load (a reader that walks the store in order loads
/// `written` once per batch of new items, not once per item).
pub(crate) struct Cursor<'s, T> {
    store: &'s Store<T>,
    /// Items known written: loaded with `Acquire` from `store.written` by this cursor.
    seen: usize,
}

// SAFETY: the store hands out `&T` to any thread (needs `T: Sync`) and moves `T` values in
// from the producer thread and drops them wherever the store is dropped (needs `T: Send`).
// The slots themselves are only accessed under the invariant in the module docs.
unsafe impl<T: Send + Sync> Sync for Store<T> {}
// SAFETY: as above; the raw bucket pointers own their allocations.
unsafe impl<T: Send> Send for Store<T> {}

/// (bucket, offset in the bucket) of item `index`.
#[inline]
fn locate(index: usize) -> (usize, usize) {
    let biased = index + FIRST;
    let bucket = (usize::BITS - 1 - biased.leading_zeros()) as usize - FIRST.trailing_zeros() as usize;
    (bucket, biased - (FIRST << bucket))
}

impl<T> Store<T> {
    pub(crate) fn new() -> Self {
        Store {
            buckets: [const { AtomicPtr::new(ptr::null_mut()) }; BUCKETS],
            written: AtomicUsize::new(0),
            writer_taken: AtomicBool::new(false),
        }
    }

    /// The store's writer. A store has one: only the producer appends.
    ///
    /// # Panics
    ///
    /// On a second call (a bug in this crate, not in its user's code).
    pub(crate) fn writer(&self) -> Writer<'_, T> {
        let first = !self.writer_taken.swap(true, Ordering::Relaxed);
        assert!(first, "speedup-buffer: a store has one writer");
        Writer { store: self }
    }

    /// A reader's cursor, starting with nothing seen.
    #[inline]
    pub(crate) fn cursor(&self) -> Cursor<'_, T> {
        Cursor { store: self, seen: 0 }
    }

    /// Items written so far.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.written.load(Ordering::Acquire)
    }

    /// Item `index`, if written.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        self.cursor().get(index)
    }

    /// Item `index`, without checking it was written.
    ///
    /// # Safety
    ///
    /// `index` is below a value of `written` that this thread loaded with `Acquire`.
    #[inline]
    unsafe fn get_unchecked(&self, index: usize) -> &T {
        let (bucket, offset) = locate(index);
        // SAFETY: `index` was written, so `locate` gave the bucket `push` wrote it into, a
        // valid index of `buckets` (skipping the bounds check is measurable on cached
        // reads). Caught by `locate_maps_indices_to_doubling_buckets` if `locate` broke.
        let base = unsafe { self.buckets.get_unchecked(bucket) }.load(Ordering::Acquire);
        // SAFETY: the caller's observation orders this read after the slot's only write
        // (and after the bucket allocation); the slot is initialized and never written or
        // freed again while `&self` lives.
        unsafe { (*(*base.add(offset)).get()).assume_init_ref() }
    }
}

impl<T> Writer<'_, T> {
    /// Appends `value` as item `len()`.
    pub(crate) fn push(&mut self, value: T) {
        let store = self.store;
        let index = store.written.load(Ordering::Relaxed); // only we write it
        let (bucket, offset) = locate(index);
        let mut base = store.buckets[bucket].load(Ordering::Relaxed);
        if base.is_null() {
            let slots: Box<[Slot<T>]> =
                (0..FIRST << bucket).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
            base = Box::into_raw(slots).cast::<Slot<T>>();
            // Readers reach this pointer only after an Acquire of `written`, which our
            // Release below raises.
            store.buckets[bucket].store(base, Ordering::Release);
        }
        // SAFETY: `offset < FIRST << bucket`, the bucket's length; slot `index` has never
        // been written (indices only grow) and no reader reads it before `written > index`,
        // which we publish only after this write; we are the only writer (`Store::writer`).
        // Caught by `a_second_writer_is_refused` and, under Miri,
        // `miri_readers_on_other_threads_see_written_items`.
        unsafe { (*base.add(offset)).get().write(MaybeUninit::new(value)) };
        store.written.store(index + 1, Ordering::Release);
    }
}

impl<T> crate::engine::Sink<T> for Writer<'_, T> {
    fn push(&mut self, item: T) {
        Writer::push(self, item);
    }

    fn stored(&self) -> usize {
        self.store.len()
    }
}

impl<'s, T> Cursor<'s, T> {
    /// Item `index`, if written; loads `written` only when `index` is past what this
    /// cursor has seen.
    #[inline]
    pub(crate) fn get(&mut self, index: usize) -> Option<&'s T> {
        if index >= self.seen {
            self.seen = self.store.len();
            if index >= self.seen {
                return None;
            }
        }
        // SAFETY: `index < seen`, a value of `written` this cursor loaded with Acquire from
        // its own store (the lifetime ties it there): see the module invariant. Caught by
        // `miri_readers_on_other_threads_see_written_items` and `tests/handoff.rs`.
        Some(unsafe { self.store.get_unchecked(index) })
    }

    /// Items this cursor knows are written (without loading `written` again).
    pub(crate) fn seen(&self) -> usize {
        self.seen
    }
}

impl<T> Drop for Store<T> {
    fn drop(&mut self) {
        let written = *self.written.get_mut();
        for (bucket, base) in self.buckets.iter_mut().enumerate() {
            let base = *base.get_mut();
            if base.is_null() {
                continue;
            }
            let size = FIRST << bucket;
            let start = (FIRST << bucket) - FIRST;
            let live = written.saturating_sub(start).min(size);
            // SAFETY: `&mut self`: no reader or writer is left. The first `live` slots of
            // this bucket were written (items `start..start + live`); the allocation is the
            // boxed slice of `size` slots made in `push`.
            unsafe {
                for offset in 0..live {
                    (*base.add(offset)).get_mut().assume_init_drop();
                }
                drop(Box::from_raw(ptr::slice_from_raw_parts_mut(base, size)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn locate_maps_indices_to_doubling_buckets() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(31), (0, 31));
        assert_eq!(locate(32), (1, 0));
        assert_eq!(locate(95), (1, 63));
        assert_eq!(locate(96), (2, 0));
        let (b, o) = locate(usize::MAX - FIRST);
        assert!(b < BUCKETS && o < FIRST << b);
    }

    #[test]
    #[should_panic(expected = "a store has one writer")]
    fn a_second_writer_is_refused() {
        let store = Store::<u8>::new();
        let _producer = store.writer();
        let _another = store.writer();
    }

    #[test]
    fn a_cursor_sees_items_written_after_it_was_made() {
        let store = Store::new();
        let mut cursor = store.cursor();
        assert_eq!(cursor.get(0), None);
        let mut writer = store.writer();
        writer.push(5u8);
        assert_eq!(cursor.get(0), Some(&5));
        assert_eq!(cursor.seen(), 1);
        assert_eq!(cursor.get(1), None);
    }

    #[test]
    fn miri_items_are_stable_and_dropped_once() {
        let store = Store::new();
        let mut writer = store.writer();
        for i in 0..200 {
            writer.push(Arc::new(i));
        }
        let first: *const Arc<i32> = store.get(0).unwrap();
        assert_eq!(**store.get(199).unwrap(), 199);
        assert!(store.get(200).is_none());
        assert_eq!(first, store.get(0).unwrap() as *const _, "items never move");
        let shared = Arc::clone(store.get(7).unwrap());
        drop(store);
        assert_eq!(Arc::strong_count(&shared), 1, "every item was dropped exactly once");
    }

    #[test]
    fn miri_readers_on_other_threads_see_written_items() {
        let store = Arc::new(Store::new());
        let reader = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut seen = 0;
                while seen < 100 {
                    if let Some(v) = store.get(seen) {
                        assert_eq!(*v, seen as u64 * 3);
                        seen += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let mut writer = store.writer();
        for i in 0..100u64 {
            writer.push(i * 3);
        }
        reader.join().unwrap();
    }
}

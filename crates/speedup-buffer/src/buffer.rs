//! [`Buffer`]: an iterator run ahead of its readers on a thread of its own.

use std::fmt;
use std::marker::PhantomData;

use crate::engine;
use crate::error::Error;
use crate::gate::Gate;
use crate::halt::{self, Halt, NonDecreasing, Step};
use crate::producer::ProducerThread;
use crate::store::{Cursor, Store};
use crate::sync::Arc;
use crate::window::{Spill, WindowBuffer};

/// Default read-ahead: the original's `buffersize`.
pub const DEFAULT_LOOKAHEAD: usize = 16;
/// How long dropping a [`Buffer`] waits for a producer that is inside its iterator's
/// `next()` before leaving it to finish on its own (see `Drop for Buffer`).
pub const DROP_GRACE: std::time::Duration = std::time::Duration::from_millis(50);
pub(crate) struct Shared<T> {
    pub(crate) items: Store<T>,
    pub(crate) gate: Gate,
}

/// A sequence produced on another thread, `lookahead` items ahead of the furthest item any
/// reader asked for, and cached: it can be indexed, iterated (any number of times, from any
/// number of threads) and searched.
///
/// # Examples
///
/// The original PySpeedup's `count` example:
///
/// ```
/// use speedup_buffer::Buffer;
///
/// let count = Buffer::builder().lookahead(4).build(0u64..);
/// assert_eq!(count.get(0), Some(&0));
/// assert_eq!(count.get(15), Some(&15));
/// for (v, i) in count.iter().enumerate() {
///     assert_eq!(v as u64, *i);
///     if v == 5 {
///         println!("Success");
///         break;
///     }
/// }
/// assert!(count.contains(&100));     // the original answered False here
/// ```
///
/// # Guarantees
///
/// - Items never move: `get` returns `&T` valid for the buffer's lifetime; readers never
///   lock to read a produced item.
/// - The producer waits (parks) once it is `lookahead` items past the furthest item asked
///   for; it never busy-waits for longer than a short bounded spin.
/// - Each produced item is published at once: a reader waiting for it never waits for the
///   next one.
/// - The end of a finite sequence is explicit (`get` returns `None`), a producer panic
///   reaches every reader that needs an item past it, and dropping the `Buffer` stops the
///   producer without waiting for a `next()` that may never return (see its `Drop`).
/// - `Buffer` is `Send + Sync`: share it by reference or in an `Arc`.
pub struct Buffer<T> {
    shared: Arc<Shared<T>>,
    lookahead: usize,
    halt: Box<dyn Halt<T>>,
    /// The first items whose order the halting condition's assumption was checked on.
    ordered: std::sync::atomic::AtomicUsize,
    /// The first item found out of order (`usize::MAX`: none so far).
    unordered: std::sync::atomic::AtomicUsize,
    producer: ProducerThread,
}

impl<T> fmt::Debug for Buffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("produced", &self.shared.gate.published())
            .field("lookahead", &self.lookahead)
            .finish_non_exhaustive()
    }
}

/// Options for a [`Buffer`]: lookahead, halting condition, self-referential producers.
pub struct BufferBuilder<T, H = NonDecreasing> {
    lookahead: usize,
    halt: H,
    _items: PhantomData<fn() -> T>,
}

impl<T, H> fmt::Debug for BufferBuilder<T, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferBuilder").field("lookahead", &self.lookahead).finish_non_exhaustive()
    }
}

impl<T, H> BufferBuilder<T, H> {
    /// How many items the producer may run ahead of the furthest item asked for (the
    /// original's `buffersize`; default 16, at least 1).
    pub fn lookahead(mut self, items: usize) -> Self {
        self.lookahead = items.max(1);
        self
    }

    /// The halting condition [`Buffer::contains`] uses (default [`NonDecreasing`]).
    pub fn halt<H2: Halt<T>>(self, halt: H2) -> BufferBuilder<T, H2> {
        BufferBuilder { lookahead: self.lookahead, halt, _items: PhantomData }
    }

    /// Bounded memory: keep only the last `items` items (at least `lookahead + 1`), in a
    /// [`WindowBuffer`]. Older ones are dropped, or moved to a [`Spill`] store with
    /// [`WindowBuilder::spill`].
    ///
    /// ```
    /// use speedup_buffer::Buffer;
    ///
    /// let recent = Buffer::builder().lookahead(4).window(8).build(0u64..);
    /// assert_eq!(recent.get(100), Ok(Some(100)));
    /// assert!(recent.get(0).is_err()); // left the window
    /// ```
    pub fn window(self, items: usize) -> WindowBuilder<T> {
        WindowBuilder { lookahead: self.lookahead, window: items, spill: None }
    }
}

/// Options for a [`WindowBuffer`], from [`BufferBuilder::window`].
pub struct WindowBuilder<T> {
    lookahead: usize,
    window: usize,
    spill: Option<Box<dyn Spill<T>>>,
}

impl<T> fmt::Debug for WindowBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowBuilder")
            .field("lookahead", &self.lookahead)
            .field("window", &self.window)
            .field("spill", &self.spill.is_some())
            .finish()
    }
}

impl<T: Clone + Send + 'static> WindowBuilder<T> {
    /// How many items the producer may run ahead of the furthest item asked for.
    pub fn lookahead(mut self, items: usize) -> Self {
        self.lookahead = items.max(1);
        self
    }

    /// Moves items that leave the window to `spill` (a `speedup_paged::DiskList` under
    /// feature `spill`), from which `get` reads them back.
    pub fn spill(mut self, spill: impl Spill<T> + 'static) -> Self {
        self.spill = Some(Box::new(spill));
        self
    }

    /// Starts the producer thread over `iter`.
    pub fn build<I>(self, iter: I) -> WindowBuffer<T>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        WindowBuffer::start(iter.into_iter(), self.lookahead, self.window, self.spill)
    }
}

#[cfg(feature = "tokio")]
impl<T: Send + Sync + 'static, H: Halt<T> + 'static> BufferBuilder<T, H> {
    /// Runs `stream` ahead on a tokio task instead of a thread: an [`AsyncBuffer`](crate::AsyncBuffer)
    /// (feature `tokio`), with this builder's lookahead and halting condition. Must be
    /// called within a tokio runtime.
    pub fn build_async<S>(self, stream: S) -> crate::AsyncBuffer<T>
    where
        S: futures::Stream<Item = T> + Send + 'static,
    {
        crate::AsyncBuffer::start(stream, self.lookahead, Box::new(self.halt))
    }
}

impl<T: Send + Sync + 'static, H: Halt<T> + 'static> BufferBuilder<T, H> {
    /// Starts the producer thread over `iter`.
    pub fn build<I>(self, iter: I) -> Buffer<T>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        let iter = iter.into_iter();
        self.build_with_prefix(move |_| iter)
    }

    /// Starts a producer that can read the buffer's own earlier output through a
    /// [`Prefix`]: the classic prime sieve that tests candidates against the primes found
    /// so far.
    ///
    /// ```
    /// use speedup_buffer::Buffer;
    ///
    /// let primes = Buffer::builder().build_with_prefix(|found| {
    ///     (2u64..).filter(move |&n| found.iter().take_while(|&&p| p * p <= n).all(|&p| n % p != 0))
    /// });
    /// assert_eq!(primes.get(9), Some(&29));
    /// assert!(primes.contains(&7919));
    /// assert!(!primes.contains(&7917));
    /// ```
    pub fn build_with_prefix<I, F>(self, make: F) -> Buffer<T>
    where
        F: FnOnce(Prefix<T>) -> I + Send + 'static,
        I: IntoIterator<Item = T>,
        I::IntoIter: 'static,
    {
        let shared = Arc::new(Shared { items: Store::new(), gate: Gate::new(self.lookahead) });
        let producer = {
            let shared = Arc::clone(&shared);
            let prefix = Prefix { shared: Arc::clone(&shared) };
            ProducerThread::spawn("speedup-buffer", move || {
                engine::produce(&shared.gate, move || make(prefix).into_iter(), shared.items.writer())
            })
        };
        Buffer {
            shared,
            lookahead: self.lookahead,
            halt: Box::new(self.halt),
            ordered: std::sync::atomic::AtomicUsize::new(0),
            unordered: std::sync::atomic::AtomicUsize::new(usize::MAX),
            producer,
        }
    }
}

impl<T: PartialOrd + Send + Sync + 'static> Buffer<T> {
    /// Starts a producer over `iter` with lookahead 16 and the [`NonDecreasing`] halting
    /// condition.
    pub fn new<I>(iter: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Buffer::builder().build(iter)
    }
}

impl<T> Buffer<T> {
    /// Options: lookahead, halting condition, self-referential producers.
    pub fn builder() -> BufferBuilder<T> {
        BufferBuilder { lookahead: DEFAULT_LOOKAHEAD, halt: NonDecreasing, _items: PhantomData }
    }
}

impl<T: Send + Sync + 'static> Buffer<T> {
    /// Item `index`, waiting for the producer if needed; `None` past the end of a finite
    /// sequence.
    ///
    /// # Panics
    ///
    /// If the producer panicked before producing item `index` (with its message).
    #[inline]
    pub fn get(&self, index: usize) -> Option<&T> {
        match self.try_get(index) {
            Ok(item) => item,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Buffer::get`], with the producer's panic as an error.
    ///
    /// # Errors
    ///
    /// [`Error::ProducerPanicked`]; [`Error::Reentrant`] if the buffer's own iterator asks
    /// for an item it has not produced yet.
    #[inline]
    pub fn try_get(&self, index: usize) -> Result<Option<&T>, Error> {
        let mut cursor = self.shared.items.cursor();
        if let Some(item) = cursor.get(index) {
            // Fast path: written. Keep the producer `lookahead` ahead only near the
            // frontier; deep in the cached prefix there is nothing to ask for.
            if index.saturating_add(self.lookahead) >= cursor.seen() {
                self.shared.gate.want(self.demand_for(index));
            }
            return Ok(Some(item));
        }
        self.slow_get(index)
    }

    // Out of line: inlined, it crowds the fast path's registers (a cached random `get`
    // measured 10-20% slower).
    #[cold]
    #[inline(never)]
    fn slow_get(&self, index: usize) -> Result<Option<&T>, Error> {
        let gate = &self.shared.gate;
        if gate.on_producer() {
            return Err(Error::Reentrant { index });
        }
        gate.want(self.demand_for(index));
        gate.wait_for(index, || self.shared.items.len());
        if let Some(item) = self.shared.items.get(index) {
            return Ok(Some(item));
        }
        match gate.ending().error(index) {
            Some(error) => Err(error),
            None => Ok(None),
        }
    }

    /// Whether `target` occurs, searching the cached prefix (by bisection when the halting
    /// condition says the sequence is sorted) and then new items until the halting
    /// condition says stop. Always terminates on a finite sequence.
    ///
    /// # Panics
    ///
    /// If the producer panicked before the search could end, or if the sequence breaks the
    /// order the halting condition relies on ([`Error::Unsorted`]; see
    /// [`Buffer::try_contains`]).
    pub fn contains(&self, target: &T) -> bool
    where
        T: PartialEq,
    {
        match self.try_contains(target) {
            Ok(found) => found,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Buffer::contains`], with failures as errors. The built-in halting conditions
    /// check the order they rely on, on every item the search examines and on the item
    /// after the one that stops it: a sequence that breaks it there (`[10, 1, 2, 3]`,
    /// `0, -1, -2, ...` or `0, NaN, -1, ...` under [`NonDecreasing`]) is an error, not an
    /// endless scan. The answer is the same however much is cached: the search examines
    /// the items a scan from the first would, up to the first item past the target and
    /// one more; a break further on is not seen (`[10, 10, 1]` answers `Ok(false)` for 1).
    /// A target that is not equal to itself (NaN) is never found. The built-in conditions
    /// need `PartialEq` and `PartialOrd` to agree, as std asks (`a == b` exactly when
    /// `a.partial_cmp(&b)` is `Some(Equal)`); a type ordered by one field but equal on all
    /// of them breaks that, and the bisection of the cached prefix may then miss an item
    /// a scan finds (use a closure as the halting condition for such types).
    ///
    /// ```
    /// use speedup_buffer::{Buffer, Error};
    ///
    /// let b = Buffer::new(vec![10, 1, 2, 3]);
    /// assert_eq!(b.try_contains(&1), Err(Error::Unsorted { index: 1 }));
    /// assert_eq!(Buffer::new(vec![1, 2, 3]).try_contains(&2), Ok(true));
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Unsorted`], [`Error::ProducerPanicked`].
    pub fn try_contains(&self, target: &T) -> Result<bool, Error>
    where
        T: PartialEq,
    {
        // A target that is not equal to itself (NaN) equals no item: no search can end
        // with it found, and an endless sequence would be searched forever.
        #[allow(clippy::eq_op)]
        if target != target {
            return Ok(false);
        }
        let ordered = self.halt.assumes_order();
        let mut start = 0;
        // The answer is always a scan's from the first item: stop at the first item past
        // the target, check the order on every pair examined and on the item after the
        // stop. Bisecting the cached prefix gives the same answer faster when that prefix is
        // in order; when it is not, the scan runs (and finds the break, or stops first).
        let cached = self.shared.gate.published();
        if self.halt.sorted() && (!ordered || self.prefix_in_order(cached)) {
            let (mut lo, mut hi) = (0, cached);
            // Bisection on PartialOrd via the halting condition: an item past the target.
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match self.shared.items.get(mid) {
                    Some(item) if item == target => return Ok(true),
                    Some(item) if self.halt.halt(item, target, 0) => hi = mid,
                    _ => lo = mid + 1,
                }
            }
            if lo < cached {
                // The scan would stop at `lo`; the item after it is checked already if cached.
                if lo.saturating_add(1) >= cached {
                    self.check_after_stop(lo)?;
                }
                return Ok(false);
            }
            start = cached;
        }
        let mut attempts = start;
        let mut previous = match start.checked_sub(1) {
            Some(before) if ordered => self.try_get(before)?,
            _ => None,
        };
        let mut index = start;
        loop {
            let Some(item) = self.try_get(index)? else { return Ok(false) };
            attempts += 1;
            match halt::step(&*self.halt, previous, (index, item), target, attempts)? {
                Step::Found => return Ok(true),
                Step::Stop => {
                    self.check_after_stop(index)?;
                    return Ok(false);
                }
                Step::Next => {}
            }
            previous = Some(item);
            let Some(next_index) = index.checked_add(1) else { return Ok(false) };
            index = next_index;
        }
    }

    /// [`halt::check_after_stop`] for a search stopped at item `stop`.
    fn check_after_stop(&self, stop: usize) -> Result<(), Error> {
        if !self.halt.assumes_order() {
            return Ok(()); // no order to check: the next item need not be produced
        }
        let Some(next_index) = stop.checked_add(1) else { return Ok(()) };
        match self.try_get(stop)? {
            Some(stopped) => {
                halt::check_after_stop(&*self.halt, stopped, (next_index, self.try_get(next_index)?))
            }
            None => Ok(()),
        }
    }

    /// Whether the first `cached` items keep the halting condition's order. Watermarks
    /// (`ordered`, `unordered`) make repeated calls cost only the new items.
    fn prefix_in_order(&self, cached: usize) -> bool {
        let unordered = self.unordered.load(std::sync::atomic::Ordering::Relaxed);
        if unordered < cached {
            return false;
        }
        let from = self.ordered.load(std::sync::atomic::Ordering::Relaxed).max(1);
        let mut checked = from;
        for index in from..cached {
            let (Some(previous), Some(item)) =
                (self.shared.items.get(index - 1), self.shared.items.get(index))
            else {
                break;
            };
            if !self.halt.keeps_order(previous, item) {
                self.unordered.fetch_min(index, std::sync::atomic::Ordering::Relaxed);
                return false;
            }
            checked = index + 1;
        }
        self.ordered.fetch_max(checked, std::sync::atomic::Ordering::Relaxed);
        checked >= cached
    }

    /// The demand that keeps the producer `lookahead` items past `index` (saturating: an
    /// index near `usize::MAX` asks for everything, it does not wrap around).
    fn demand_for(&self, index: usize) -> usize {
        index.saturating_add(1).saturating_add(self.lookahead)
    }

    /// Iterates from the first item: cached items first, then waiting for the producer.
    /// Any number of iterators may run at once.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { buffer: self, next: 0, cursor: self.shared.items.cursor() }
    }

    /// Items produced (and readable without waiting) so far.
    pub fn produced(&self) -> usize {
        self.shared.gate.published()
    }
}

impl<'a, T: Send + Sync + 'static> IntoIterator for &'a Buffer<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    /// [`Buffer::iter`]: `for item in &buffer`.
    ///
    /// ```
    /// let squares = speedup_buffer::Buffer::new((1u64..=4).map(|n| n * n));
    /// let mut sum = 0;
    /// for square in &squares {
    ///     sum += square;
    /// }
    /// assert_eq!(sum, 30);
    /// ```
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> Drop for Buffer<T> {
    /// Stops the producer. A parked producer is woken and joined (its iterator is dropped
    /// before `drop` returns), and so is one that reaches its next item within a short
    /// grace period ([`DROP_GRACE`]). A producer still inside its iterator's `next()` after
    /// that, which may block for ever (a channel nobody sends to), is not waited for: its
    /// thread is detached, finishes that `next()` on its own, stores nothing more and
    /// exits, dropping the iterator and the items then.
    fn drop(&mut self) {
        self.producer.stop(&self.shared.gate);
    }
}

/// Iterator over a [`Buffer`]'s items, in order; see [`Buffer::iter`].
///
/// # Panics
///
/// `next` panics, like [`Buffer::get`], if the producer panicked before the next item; use
/// [`Buffer::try_get`] to handle that as an error.
pub struct Iter<'a, T> {
    buffer: &'a Buffer<T>,
    next: usize,
    /// Reads below the items it has seen written need no atomic load.
    cursor: Cursor<'a, T>,
}

impl<T> fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").field("next", &self.next).finish()
    }
}

impl<'a, T: Send + Sync + 'static> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        let index = self.next;
        let item = match self.cursor.get(index) {
            Some(item) => item,
            None => self.buffer.get(index)?,
        };
        // Keep demand `lookahead` ahead of this reader, once per half window.
        let lookahead = self.buffer.lookahead;
        if index.is_multiple_of(lookahead.div_ceil(2)) {
            self.buffer.shared.gate.want(self.buffer.demand_for(index));
        }
        self.next += 1;
        Some(item)
    }
}

/// Read access to a buffer's own output, for self-referential producers (see
/// [`BufferBuilder::build_with_prefix`]). It sees every item produced so far and never
/// waits.
pub struct Prefix<T> {
    shared: Arc<Shared<T>>,
}

impl<T> fmt::Debug for Prefix<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prefix").field("len", &self.shared.items.len()).finish()
    }
}

impl<T> Prefix<T> {
    /// Item `index`, if it has been produced.
    pub fn get(&self, index: usize) -> Option<&T> {
        self.shared.items.get(index)
    }

    /// The items produced so far, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        (0..self.shared.items.len()).map_while(|i| self.shared.items.get(i))
    }

    /// How many items have been produced.
    pub fn len(&self) -> usize {
        self.shared.items.len()
    }

    /// Whether nothing has been produced yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod static_checks {
    const fn assert_send_sync<T: Send + Sync>() {}
    const _: () = assert_send_sync::<super::Buffer<u64>>();
}

//! User code that misbehaves inside the buffers: a panic payload whose `Drop` panics, an
//! item whose `Drop` is slow, and an iterator or spill store that reads its own buffer.
//! None of it may hang a reader or pass a lost item off as the end.

use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use speedup_buffer::{BoxError, Buffer, Error, Spill, WindowBuffer};
use speedup_test_support::within;

/// A panic payload that panics again when dropped.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the payload's drop panicked too");
    }
}

fn panics_at_3(i: u64) -> u64 {
    if i == 3 {
        std::panic::panic_any(Bomb);
    }
    i
}

#[test]
fn a_panic_whose_payload_panics_on_drop_still_ends_the_producer() {
    within(30, || {
        let b = Buffer::builder().lookahead(1).build((0u64..).map(panics_at_3));
        assert_eq!(b.try_get(2), Ok(Some(&2)));
        assert!(matches!(b.try_get(3), Err(Error::ProducerPanicked { index: 3, .. })));
        let w = Buffer::builder().lookahead(1).window(4).build((0u64..).map(panics_at_3));
        assert_eq!(w.get(2), Ok(Some(2)));
        assert!(matches!(w.get(3), Err(Error::ProducerPanicked { index: 3, .. })));
    });
}

#[cfg(feature = "tokio")]
#[test]
fn an_async_producer_whose_payload_panics_on_drop_still_ends() {
    use futures::StreamExt;
    within(30, || {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let b =
                Buffer::builder().lookahead(1).build_async(futures::stream::iter(0u64..).map(panics_at_3));
            assert_eq!(b.try_get(2).await, Ok(Some(&2)));
            assert!(matches!(b.try_get(3).await, Err(Error::ProducerPanicked { index: 3, .. })));
        });
    });
}

/// An item whose `Drop` takes a while when the producer drops it (as it leaves the window).
#[derive(Clone, Debug, PartialEq)]
struct SlowDrop(u64);

impl Drop for SlowDrop {
    fn drop(&mut self) {
        if self.0 == 0 && std::thread::current().name() == Some("speedup-buffer-window") {
            std::thread::sleep(Duration::from_millis(1500));
        }
    }
}

/// Items 0, 1, 2, ...; item 2 comes 50 ms late, so that its reader is parked when it comes.
fn items() -> impl Iterator<Item = SlowDrop> + Send + 'static {
    (0u64..).map(|i| {
        if i == 2 {
            std::thread::sleep(Duration::from_millis(50));
        }
        SlowDrop(i)
    })
}

/// Items leaving the window are dropped after the item that pushed them out is published
/// and outside the window's lock: a slow `Drop` holds back neither that item (whose reader
/// is parked, waiting for it) nor the items in the window.
fn slow_drop_holds_nothing_back(b: WindowBuffer<SlowDrop>) {
    assert_eq!(b.get(0), Ok(Some(SlowDrop(0))));
    let start = Instant::now();
    let reader = std::thread::scope(|s| {
        let late = s.spawn(|| b.get(2)); // pushes item 0 out: its drop starts
        std::thread::sleep(Duration::from_millis(100));
        let in_window = b.get(1);
        (late.join().unwrap(), in_window, start.elapsed())
    });
    let (late, in_window, took) = reader;
    assert_eq!(late, Ok(Some(SlowDrop(2))));
    assert_eq!(in_window, Ok(Some(SlowDrop(1))));
    assert!(took < Duration::from_millis(1000), "reads waited {took:?} for an evicted item's drop");
}

#[test]
fn a_slow_drop_of_an_evicted_item_holds_back_no_reader() {
    within(30, || {
        slow_drop_holds_nothing_back(Buffer::builder().lookahead(1).window(2).build(items()));
    });
}

/// The same with a spill store: the staged copy is dropped outside the lock too. (The store
/// keeps the items it gets, so the copy's is the one drop on the producer thread.)
#[test]
fn a_slow_drop_of_a_staged_copy_holds_back_no_reader() {
    struct Keep(Vec<SlowDrop>);
    impl Spill<SlowDrop> for Keep {
        fn spill(&mut self, _: usize, item: SlowDrop) -> Result<(), BoxError> {
            self.0.push(item);
            Ok(())
        }
        fn fetch(&self, index: usize) -> Result<Option<SlowDrop>, BoxError> {
            Ok(self.0.get(index).cloned())
        }
    }
    within(30, || {
        slow_drop_holds_nothing_back(
            Buffer::builder().lookahead(1).window(2).spill(Keep(Vec::new())).build(items()),
        );
    });
}

/// An iterator that reads its own buffer: items it produced are there; an item it has not
/// produced yet is `Error::Reentrant` (waiting would wait for itself), not a hang.
#[test]
fn an_iterator_that_reads_ahead_of_itself_gets_an_error() {
    within(30, || {
        let me: Arc<OnceLock<Weak<Buffer<u64>>>> = Arc::new(OnceLock::new());
        let seen = Arc::new(OnceLock::new());
        let (me2, seen2) = (Arc::clone(&me), Arc::clone(&seen));
        let items = (0u64..).inspect(move |&i| {
            if i == 5
                && let Some(b) = me2.get().and_then(Weak::upgrade)
            {
                let _ = seen2
                    .set((b.try_get(2).map(|item| item.copied()), b.try_get(7).map(|item| item.copied())));
            }
        });
        let b = Arc::new(Buffer::builder().lookahead(1).build(items));
        me.set(Arc::downgrade(&b)).unwrap();
        assert_eq!(b.get(20), Some(&20));
        assert_eq!(seen.get(), Some(&(Ok(Some(2)), Err(Error::Reentrant { index: 7 }))));
    });
}

#[test]
fn a_window_iterator_that_reads_ahead_of_itself_gets_an_error() {
    within(30, || {
        let me: Arc<OnceLock<Weak<WindowBuffer<u64>>>> = Arc::new(OnceLock::new());
        let seen = Arc::new(OnceLock::new());
        let (me2, seen2) = (Arc::clone(&me), Arc::clone(&seen));
        let items = (0u64..).inspect(move |&i| {
            if i == 5
                && let Some(b) = me2.get().and_then(Weak::upgrade)
            {
                let _ = seen2.set((b.get(4), b.get(9)));
            }
        });
        let b = Arc::new(Buffer::builder().lookahead(1).window(4).build(items));
        me.set(Arc::downgrade(&b)).unwrap();
        assert_eq!(b.get(20), Ok(Some(20)));
        assert_eq!(seen.get(), Some(&(Ok(Some(4)), Err(Error::Reentrant { index: 9 }))));
    });
}

/// A spill store that reads its own buffer's spilled items from inside `spill` (which holds
/// the store) gets `Error::Reentrant`, and everything else goes on.
#[test]
fn a_spill_store_that_reads_its_own_buffer_gets_an_error() {
    type Window = WindowBuffer<u64>;
    type Read = Result<Option<u64>, Error>;
    struct ReadsBack {
        items: Vec<u64>,
        me: Arc<OnceLock<Weak<Window>>>,
        seen: Arc<OnceLock<(Read, Read)>>,
    }
    impl Spill<u64> for ReadsBack {
        fn spill(&mut self, index: usize, item: u64) -> Result<(), BoxError> {
            if index == 5
                && let Some(b) = self.me.get().and_then(Weak::upgrade)
            {
                // Item 0 is in this very store; item 7 is in the window.
                let _ = self.seen.set((b.get(0), b.get(7)));
            }
            self.items.push(item);
            Ok(())
        }
        fn fetch(&self, index: usize) -> Result<Option<u64>, BoxError> {
            Ok(self.items.get(index).copied())
        }
    }
    within(30, || {
        let me = Arc::new(OnceLock::new());
        let seen = Arc::new(OnceLock::new());
        let store = ReadsBack { items: Vec::new(), me: Arc::clone(&me), seen: Arc::clone(&seen) };
        let b = Arc::new(Buffer::builder().lookahead(1).window(2).spill(store).build(0u64..));
        me.set(Arc::downgrade(&b)).unwrap();
        assert_eq!(b.get(20), Ok(Some(20)));
        assert_eq!(b.get(3), Ok(Some(3)), "spilled items are readable from outside");
        assert_eq!(seen.get(), Some(&(Err(Error::Reentrant { index: 0 }), Ok(Some(7)))));
    });
}

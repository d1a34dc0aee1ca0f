//! Loom models of the publish/park protocol: a reader that waits is always woken, the
//! producer is always woken by new demand, and the end of the sequence and a stop are
//! always seen. Run with
//! `RUSTFLAGS="--cfg speedup_loom" cargo test -p speedup-buffer --test loom --release`.
#![cfg(speedup_loom)]

use speedup_buffer::Buffer;

#[test]
fn a_waiting_reader_gets_every_item_and_the_end() {
    loom::model(|| {
        let b = Buffer::builder().lookahead(1).build(0u8..2);
        assert_eq!(b.get(1), Some(&1));
        assert_eq!(b.get(2), None);
    });
}

#[test]
fn new_demand_wakes_a_parked_producer() {
    loom::model(|| {
        let b = Buffer::builder().lookahead(1).build(0u8..);
        assert_eq!(b.get(0), Some(&0));
        assert_eq!(b.get(2), Some(&2)); // past the first lookahead: the producer had parked
    });
}

#[test]
fn two_readers_and_a_drop() {
    loom::model(|| {
        let b = loom::sync::Arc::new(Buffer::builder().lookahead(1).build(0u8..3));
        let other = {
            let b = loom::sync::Arc::clone(&b);
            loom::thread::spawn(move || b.get(2).copied())
        };
        assert_eq!(b.get(1), Some(&1));
        assert_eq!(other.join().unwrap(), Some(2));
    });
}

/// The producer stores item 0 and then waits, inside `next()`, until the reader has read
/// item 0: the item must reach the reader before its batch is complete (batching would
/// deadlock this model, which loom reports).
#[test]
fn a_stored_item_reaches_a_waiting_reader_before_the_batch_ends() {
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, Ordering};
    loom::model(|| {
        let read = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&read);
        let items = (0u8..2).inspect(move |&i| {
            if i == 1 {
                while !seen.load(Ordering::Acquire) {
                    loom::thread::yield_now();
                }
            }
        });
        let b = Buffer::builder().lookahead(4).build(items);
        assert_eq!(b.get(0), Some(&0));
        read.store(true, Ordering::Release);
        assert_eq!(b.get(1), Some(&1));
    });
}

/// The window buffer runs the same engine and gate, with its window (a mutex) as the
/// sink: a reader waiting for an item is woken when it is stored, and the end is seen.
#[test]
fn window_a_waiting_reader_gets_every_item_and_the_end() {
    loom::model(|| {
        let b = Buffer::builder().lookahead(1).window(2).build(0u8..2);
        assert_eq!(b.get(1), Ok(Some(1)));
        assert_eq!(b.get(2), Ok(None));
    });
}

/// A parked window producer is woken by new demand, and old items leave the window.
#[test]
fn window_new_demand_wakes_the_parked_producer_and_old_items_leave() {
    loom::model(|| {
        let b = Buffer::builder().lookahead(1).window(2).build(0u8..);
        assert_eq!(b.get(0), Ok(Some(0)));
        assert_eq!(b.get(3), Ok(Some(3))); // past the first lookahead: the producer had parked
        assert!(matches!(b.get(0), Err(speedup_buffer::Error::Evicted { index: 0, .. })));
    });
}

/// Dropping a window buffer stops its producer, parked or about to park, without a hang;
/// a second reader on another thread gets its item first.
#[test]
fn window_two_readers_and_a_drop() {
    loom::model(|| {
        let b = loom::sync::Arc::new(Buffer::builder().lookahead(1).window(4).build(0u8..));
        let other = {
            let b = loom::sync::Arc::clone(&b);
            loom::thread::spawn(move || b.get(2))
        };
        assert_eq!(b.get(1), Ok(Some(1)));
        assert_eq!(other.join().unwrap(), Ok(Some(2)));
        drop(b);
    });
}

/// An item that pushes an older one out of the window is published before the older one
/// goes to the spill store (`Sink::settle`): here the store's `spill` of item 0 waits until
/// the reader has item 2, which pushed it out. Holding item 2 back until the store returns
/// would deadlock this model.
#[test]
fn window_an_item_reaches_its_reader_before_the_spill_store_returns() {
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, Ordering};
    struct WaitsForTheReader {
        items: Vec<u8>,
        reader_has_2: Arc<AtomicBool>,
    }
    impl speedup_buffer::Spill<u8> for WaitsForTheReader {
        fn spill(&mut self, _: usize, item: u8) -> Result<(), speedup_buffer::BoxError> {
            while !self.reader_has_2.load(Ordering::Acquire) {
                loom::thread::yield_now();
            }
            self.items.push(item);
            Ok(())
        }
        fn fetch(&self, index: usize) -> Result<Option<u8>, speedup_buffer::BoxError> {
            Ok(self.items.get(index).copied())
        }
    }
    loom::model(|| {
        let reader_has_2 = Arc::new(AtomicBool::new(false));
        let store = WaitsForTheReader { items: Vec::new(), reader_has_2: Arc::clone(&reader_has_2) };
        let b = Buffer::builder().lookahead(1).window(2).spill(store).build(0u8..3);
        assert_eq!(b.get(2), Ok(Some(2)));
        reader_has_2.store(true, Ordering::Release);
        assert_eq!(b.get(0), Ok(Some(0)), "from the store");
        assert_eq!(b.get(3), Ok(None));
    });
}

//! Bounded memory: a window of the last N items, and spilling older ones to disk.

use speedup_buffer::{BoxError, Buffer, Error, Spill};

#[test]
fn a_window_keeps_the_last_items_and_says_which_were_dropped() {
    let b = Buffer::builder().lookahead(4).window(10).build(0u32..);
    assert_eq!(b.get(50), Ok(Some(50)));
    assert_eq!(b.get(45), Ok(Some(45)), "still in the window");
    match b.get(10) {
        Err(Error::Evicted { index: 10, oldest }) => assert!(oldest > 10 && oldest <= 45),
        other => panic!("{other:?}"),
    }
    let finite = Buffer::builder().lookahead(2).window(4).build(vec![1, 2, 3]);
    assert_eq!(finite.get(2), Ok(Some(3)));
    assert_eq!(finite.get(3), Ok(None));
}

#[test]
fn a_window_reports_producer_panics() {
    let b = Buffer::builder()
        .lookahead(2)
        .window(8)
        .build((0u32..).map(|i| if i == 5 { panic!("bad item {i}") } else { i }));
    assert_eq!(b.get(4), Ok(Some(4)));
    assert!(matches!(b.get(5), Err(Error::ProducerPanicked { message, .. }) if message == "bad item 5"));
}

/// A spill store that fails after taking `limit` items.
struct Flaky {
    items: Vec<u32>,
    limit: usize,
}

impl Spill<u32> for Flaky {
    fn spill(&mut self, index: usize, item: u32) -> Result<(), BoxError> {
        if self.items.len() >= self.limit {
            return Err(Box::new(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("disk full at item {index}"),
            )));
        }
        self.items.push(item);
        Ok(())
    }
    fn fetch(&self, index: usize) -> Result<Option<u32>, BoxError> {
        Ok(self.items.get(index).copied())
    }
}

#[test]
fn a_failing_spill_store_is_reported_not_passed_off_as_the_end() {
    let b =
        Buffer::builder().lookahead(2).window(4).spill(Flaky { items: Vec::new(), limit: 10 }).build(0u32..);
    assert_eq!(b.get(40), Ok(Some(40)));
    assert_eq!(b.get(3), Ok(Some(3)), "spilled, read back");
    assert!(
        matches!(b.get(20), Err(Error::Spill { index: 20, source }) if source.to_string() == "disk full at item 10")
    );
    // The store's own error is kept whole, not flattened to text.
    let Err(Error::Spill { source, .. }) = b.get(30) else {
        panic!("spilled items past the failure are lost")
    };
    assert_eq!(
        source.downcast_ref::<std::io::Error>().map(std::io::Error::kind),
        Some(std::io::ErrorKind::StorageFull)
    );
}

#[cfg(feature = "spill")]
#[test]
fn old_items_spill_to_a_disk_list_and_stay_readable() {
    use speedup_paged::{DiskList, Options};
    let dir = tempfile::tempdir().unwrap();
    let list: DiskList<u64> = DiskList::open_with("spill", &Options::new().location(dir.path())).unwrap();
    let b = Buffer::builder().lookahead(8).window(32).spill(list).build((0u64..).map(|i| i * 7));
    assert_eq!(b.get(10_000), Ok(Some(70_000)));
    for i in [0usize, 1, 500, 9_000] {
        assert_eq!(b.get(i), Ok(Some(i as u64 * 7)), "item {i} from disk");
    }
}

/// A spill store that panics is a failing store: the items from the one it panicked on are
/// `Error::Spill` with the panic's message, the window keeps working, nothing hangs.
#[test]
fn a_panicking_spill_store_is_an_error_not_a_hang() {
    struct Panics;
    impl Spill<u64> for Panics {
        fn spill(&mut self, index: usize, _: u64) -> Result<(), BoxError> {
            assert_ne!(index, 2, "the store broke");
            Ok(())
        }
        fn fetch(&self, index: usize) -> Result<Option<u64>, BoxError> {
            assert_ne!(index, 1, "fetch broke");
            Ok(Some(index as u64))
        }
    }
    speedup_test_support::within(30, || {
        let b = Buffer::builder().lookahead(1).window(2).spill(Panics).build(0u64..);
        assert_eq!(b.get(50), Ok(Some(50)), "the window goes on after the store panicked");
        assert_eq!(b.get(0), Ok(Some(0)), "spilled before the panic");
        let Err(Error::Spill { index: 2, source }) = b.get(2) else { panic!("item 2 is lost") };
        assert!(source.to_string().contains("the store broke"), "{source}");
        assert!(matches!(b.get(30), Err(Error::Spill { index: 30, .. })), "later spilled items too");
        let Err(Error::Spill { source, .. }) = b.get(1) else { panic!("a panicking fetch") };
        assert!(source.to_string().contains("fetch broke"), "{source}");
    });
}

/// A spill store that blocks (a dead network share) runs outside the window's lock: readers
/// of the window and of items being spilled are answered, and dropping the buffer returns
/// after the grace period instead of waiting for the store.
#[test]
fn a_blocking_spill_store_blocks_neither_readers_nor_drop() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    struct Blocks(Arc<AtomicBool>);
    impl Spill<u64> for Blocks {
        fn spill(&mut self, _: usize, _: u64) -> Result<(), BoxError> {
            while self.0.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        }
        fn fetch(&self, index: usize) -> Result<Option<u64>, BoxError> {
            Ok(Some(index as u64))
        }
    }
    let blocked = Arc::new(AtomicBool::new(true));
    let store = Blocks(Arc::clone(&blocked));
    speedup_test_support::within(30, move || {
        let b = Buffer::builder().lookahead(1).window(2).spill(store).build(0u64..);
        assert_eq!(b.get(2), Ok(Some(2))); // item 0 left the window: its spill now blocks
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(b.get(0), Ok(Some(0)), "an item being spilled is still readable");
        assert_eq!(b.get(1), Ok(Some(1)), "the window is readable");
        let start = Instant::now();
        drop(b);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(1), "drop waited {took:?} for the blocked store");
    });
    blocked.store(false, Ordering::SeqCst); // the detached producer finishes and exits
}

/// A `T::clone` that panics on the producer thread (the window keeps a copy of an item being
/// spilled) ends the producer with `ProducerPanicked` for readers, not a hang.
#[test]
fn a_clone_that_panics_on_the_producer_is_reported_not_a_hang() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static ARMED: AtomicBool = AtomicBool::new(false);
    #[derive(Debug, PartialEq)]
    struct Touchy(u64);
    impl Clone for Touchy {
        fn clone(&self) -> Self {
            assert!(!(self.0 == 3 && ARMED.load(Ordering::SeqCst)), "clone of 3");
            Touchy(self.0)
        }
    }
    struct Keep(Vec<Touchy>);
    impl Spill<Touchy> for Keep {
        fn spill(&mut self, _: usize, item: Touchy) -> Result<(), BoxError> {
            self.0.push(item);
            Ok(())
        }
        fn fetch(&self, index: usize) -> Result<Option<Touchy>, BoxError> {
            Ok(self.0.get(index).map(|t| Touchy(t.0)))
        }
    }
    ARMED.store(true, Ordering::SeqCst);
    speedup_test_support::within(30, || {
        let b = Buffer::builder().lookahead(1).window(2).spill(Keep(Vec::new())).build((0u64..).map(Touchy));
        let read = b.get(20);
        assert!(
            matches!(&read, Err(Error::ProducerPanicked { message, .. }) if message.contains("clone of 3")),
            "{read:?}"
        );
    });
}

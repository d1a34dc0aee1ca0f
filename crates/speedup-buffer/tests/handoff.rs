//! An item the producer has yielded is visible at once to a reader waiting for it, however
//! long the next item takes, and dropping a buffer never waits for a `next()` that may
//! never return. `SPEEDUP_BUFFER_ROUNDS` sets the rounds of the race tests (default small,
//! for CI; try 20000).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use speedup_buffer::Buffer;
use speedup_test_support::within;

fn rounds(default: usize) -> usize {
    std::env::var("SPEEDUP_BUFFER_ROUNDS")
        .map_or(default, |r| r.parse().expect("SPEEDUP_BUFFER_ROUNDS: a number"))
}

/// Items from a channel; sets a flag when dropped (the producer thread exited).
struct Channel {
    rx: mpsc::Receiver<u64>,
    dropped: Arc<AtomicBool>,
}

impl Iterator for Channel {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        self.rx.recv().ok()
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

fn channel() -> (mpsc::Sender<u64>, Channel, Arc<AtomicBool>) {
    let (tx, rx) = mpsc::channel();
    let dropped = Arc::new(AtomicBool::new(false));
    (tx, Channel { rx, dropped: Arc::clone(&dropped) }, dropped)
}

#[test]
fn a_slow_producer_is_not_held_back_by_the_lookahead() {
    for lookahead in [16, 64] {
        within(30, move || {
            let b = Buffer::builder()
                .lookahead(lookahead)
                .build((0u64..).inspect(|_| std::thread::sleep(Duration::from_millis(50))));
            let start = Instant::now();
            assert_eq!(b.get(0), Some(&0));
            let took = start.elapsed();
            // One item's 50 ms, not a batch of them (the issue saw 856 ms and 3.2 s).
            assert!(took < Duration::from_millis(400), "lookahead {lookahead}: get(0) took {took:?}");
        });
    }
}

#[test]
fn items_sent_through_a_channel_are_readable_before_more_arrive() {
    within(30, || {
        let (tx, items, dropped) = channel();
        let b = Buffer::new(items);
        tx.send(7).unwrap();
        tx.send(8).unwrap();
        assert_eq!(b.get(0), Some(&7));
        assert_eq!(b.get(1), Some(&8), "the second item is not held back for a batch of 16");
        // The producer now waits in `recv()` for ever: dropping the buffer returns anyway.
        let start = Instant::now();
        drop(b);
        assert!(start.elapsed() < Duration::from_secs(1), "drop waited for the producer's next()");
        assert!(!dropped.load(Ordering::SeqCst), "the producer is still inside next()");
        drop(tx); // its next() returns None: it exits and drops the iterator
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dropped.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the detached producer never exited");
            std::thread::sleep(Duration::from_millis(5));
        }
    });
}

/// Hand-offs one at a time: the reader waits for item `i` (`get(i)` must return it),
/// parked or spinning, and the producer then blocks in `next()` until the reader got it. A
/// lost wake-up is a hang.
fn hand_off_one_at_a_time<B: Send + Sync + 'static>(
    build: impl FnOnce(Channel) -> B,
    get: impl Fn(&B, usize) -> u64 + Send + 'static,
) {
    let rounds = rounds(2_000);
    let (tx, items, _dropped) = channel();
    let (ack_tx, ack_rx) = mpsc::channel::<()>();
    let b = Arc::new(build(items));
    let reader = {
        let b = Arc::clone(&b);
        std::thread::spawn(move || {
            for i in 0..rounds {
                assert_eq!(get(&b, i), i as u64);
                ack_tx.send(()).unwrap();
            }
        })
    };
    for i in 0..rounds as u64 {
        if i % 3 == 0 {
            std::thread::sleep(Duration::from_micros(200)); // let the reader park
        }
        tx.send(i).unwrap();
        ack_rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("item {i} was never seen"));
    }
    reader.join().unwrap();
    drop(tx);
}

#[test]
fn every_item_reaches_a_waiting_reader_at_once() {
    within(120, || {
        hand_off_one_at_a_time(
            |items| Buffer::builder().lookahead(4).build(items),
            |b, i| *b.get(i).unwrap(),
        );
    });
}

/// The window buffer runs the same engine, with its window as the sink.
#[test]
fn every_item_reaches_a_waiting_window_reader_at_once() {
    within(120, || {
        hand_off_one_at_a_time(
            |items| Buffer::builder().lookahead(4).window(8).build(items),
            |b, i| b.get(i).unwrap().unwrap(),
        );
    });
}

/// Items leaving the window go to the spill store after the item that pushed them out is
/// published: a reader waiting for it never waits for the store. Here the store does not
/// take item `i - 2` until the reader has item `i` (which pushed it out of a window of 2):
/// an item held back until the store returns is a hang.
#[test]
fn every_item_reaches_a_waiting_window_reader_while_the_window_spills() {
    use std::sync::atomic::AtomicUsize;
    struct WaitsForTheReader {
        items: Vec<u64>,
        reader_has: Arc<AtomicUsize>,
    }
    impl speedup_buffer::Spill<u64> for WaitsForTheReader {
        fn spill(&mut self, index: usize, item: u64) -> Result<(), speedup_buffer::BoxError> {
            let deadline = Instant::now() + Duration::from_secs(20);
            while self.reader_has.load(Ordering::SeqCst) <= index + 2 {
                if Instant::now() > deadline {
                    return Err(format!("the reader never got item {}", index + 2).into());
                }
                std::thread::yield_now();
            }
            self.items.push(item);
            Ok(())
        }
        fn fetch(&self, index: usize) -> Result<Option<u64>, speedup_buffer::BoxError> {
            Ok(self.items.get(index).copied())
        }
    }
    let reader_has = Arc::new(AtomicUsize::new(0));
    let store = WaitsForTheReader { items: Vec::new(), reader_has: Arc::clone(&reader_has) };
    within(120, move || {
        hand_off_one_at_a_time(
            |items| Buffer::builder().lookahead(1).window(2).spill(store).build(items),
            move |b, i| {
                let item = b.get(i).unwrap().unwrap();
                reader_has.store(i + 1, Ordering::SeqCst);
                if let Some(old) = i.checked_sub(3) {
                    assert_eq!(b.get(old), Ok(Some(old as u64)), "spilled items stay readable");
                }
                item
            },
        );
    });
}

#[test]
fn dropping_a_window_buffer_does_not_wait_for_a_blocked_producer() {
    within(30, || {
        let (tx, items, dropped) = channel();
        let b = Buffer::builder().lookahead(4).window(8).build(items);
        tx.send(1).unwrap();
        assert_eq!(b.get(0), Ok(Some(1)));
        let start = Instant::now();
        drop(b);
        assert!(start.elapsed() < Duration::from_secs(1), "drop waited for the producer's next()");
        drop(tx);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dropped.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the detached producer never exited");
            std::thread::sleep(Duration::from_millis(5));
        }
    });
}

/// `build_with_prefix`'s closure is user code too: while it blocks (before it returned the
/// iterator), dropping the buffer detaches the producer instead of joining it.
#[test]
fn dropping_a_buffer_whose_prefix_closure_blocks_returns() {
    within(30, || {
        let (tx, rx) = mpsc::channel::<Vec<u64>>();
        let b = Buffer::builder().build_with_prefix(move |_prefix| rx.recv().unwrap_or_default().into_iter());
        std::thread::sleep(Duration::from_millis(20)); // the closure is blocked in recv()
        let start = Instant::now();
        drop(b);
        assert!(start.elapsed() < Duration::from_secs(1), "drop waited for the closure");
        drop(tx); // the closure returns; the detached producer stops before its first item
    });
}

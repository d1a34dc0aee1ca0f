//! The producer thread: run-ahead bound, concurrent readers, panics, dropping.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use speedup_buffer::{Buffer, Error};
use speedup_test_support::{panic_message, within};

#[test]
fn the_producer_stops_lookahead_items_past_the_furthest_request() {
    let produced = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&produced);
    let b = Buffer::builder().lookahead(4).build((0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    assert_eq!(b.get(15), Some(&15));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(produced.load(Ordering::SeqCst), 20, "16 asked for + 4 ahead, then parked");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(produced.load(Ordering::SeqCst), 20, "still parked: no busy production");
}

#[test]
fn many_readers_see_the_same_sequence() {
    within(60, || {
        let b = Arc::new(Buffer::builder().lookahead(32).build(0u64..100_000));
        let start = Arc::new(Barrier::new(8));
        let readers: Vec<_> = (0..8)
            .map(|t| {
                let (b, start) = (Arc::clone(&b), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    if t % 2 == 0 {
                        b.iter().copied().enumerate().all(|(i, v)| i as u64 == v)
                            && b.iter().count() == 100_000
                    } else {
                        (0..100_000usize).rev().step_by(7).all(|i| b.get(i) == Some(&(i as u64)))
                    }
                })
            })
            .collect();
        for r in readers {
            assert!(r.join().unwrap());
        }
    });
}

#[test]
fn a_producer_panic_reaches_readers_with_its_message() {
    within(10, || {
        let b = Buffer::new((0u32..).map(|i| if i == 10 { panic!("generator failed at {i}") } else { i }));
        assert_eq!(b.get(9), Some(&9));
        let err = b.try_get(10).unwrap_err();
        assert_eq!(err, Error::ProducerPanicked { index: 10, message: "generator failed at 10".into() });
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.get(50))).unwrap_err();
        assert!(panic_message(&*caught).contains("generator failed at 10"));
        assert_eq!(b.get(3), Some(&3), "items before the panic stay readable");
    });
}

struct Flagged<I> {
    inner: I,
    dropped: Arc<AtomicBool>,
}

impl<I: Iterator> Iterator for Flagged<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        self.inner.next()
    }
}

impl<I> Drop for Flagged<I> {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

#[test]
fn dropping_the_buffer_stops_and_joins_an_infinite_producer() {
    within(10, || {
        let dropped = Arc::new(AtomicBool::new(false));
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&produced);
        let b = Buffer::new(Flagged {
            inner: (0u64..).inspect(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
            dropped: Arc::clone(&dropped),
        });
        b.get(1000);
        drop(b);
        // Drop joined the producer thread, which dropped the iterator.
        assert!(dropped.load(Ordering::SeqCst), "the producer's iterator outlived the buffer");
        let after = produced.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(produced.load(Ordering::SeqCst), after, "nothing produced after the drop");
    });
}

#[test]
fn a_reader_waiting_on_a_slow_producer_keeps_the_buffer_alive() {
    within(10, || {
        let dropped = Arc::new(AtomicBool::new(false));
        let b = Arc::new(Buffer::new(Flagged {
            inner: (0u64..).inspect(|&i| {
                if i == 5 {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }),
            dropped: Arc::clone(&dropped),
        }));
        let reader = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.get(5).copied())
        };
        std::thread::sleep(Duration::from_millis(20));
        drop(b); // not the last handle: the reader's wait goes on
        assert_eq!(reader.join().unwrap(), Some(5));
        assert!(dropped.load(Ordering::SeqCst), "the last handle's drop stopped the producer");
    });
}

//! `AsyncBuffer::contains`: the same answers as `Buffer::contains`, from the same items, with
//! the order its halting condition relies on checked (an error, never a wrong answer or an
//! endless scan). Every search runs under a deadline.
#![cfg(feature = "tokio")]

use std::time::Duration;

use futures::StreamExt;
use speedup_buffer::{AsyncBuffer, Buffer, Error, halt};
use speedup_test_support::within_async;

/// Every search here finishes in milliseconds; this is the line past which it hangs.
const LIMIT: Duration = Duration::from_secs(30);

fn stream<T: Send + 'static>(
    items: impl IntoIterator<Item = T, IntoIter: Send + 'static>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::iter(items)
}

#[tokio::test]
async fn unsorted_and_decreasing_streams_are_errors() {
    within_async(LIMIT, async {
        let b = AsyncBuffer::new(stream(vec![10, 1, 2, 3]));
        assert_eq!(b.try_contains(&1).await, Err(Error::Unsorted { index: 1 }));
        assert_eq!(b.try_contains(&10).await, Ok(true), "found before the break");
        let down = AsyncBuffer::new(stream((0i64..).map(|n| -n)));
        assert_eq!(down.try_contains(&5).await, Err(Error::Unsorted { index: 1 }));
        let nan =
            AsyncBuffer::new(stream((0..).map(|n: i64| if n % 2 == 1 { f64::NAN } else { -(n as f64) })));
        assert_eq!(nan.try_contains(&1.0).await, Err(Error::Unsorted { index: 1 }));
    })
    .await;
}

#[tokio::test]
async fn sorted_infinite_streams_end() {
    within_async(LIMIT, async {
        let evens = AsyncBuffer::new(stream((0u64..).map(|n| n * 2)));
        assert!(evens.contains(&100).await);
        assert!(!evens.contains(&101).await);
        assert!(!evens.contains(&3).await);
        let nan_target = AsyncBuffer::new(stream((0..).map(|n: i64| n as f64)));
        assert_eq!(nan_target.try_contains(&f64::NAN).await, Ok(false));
        let all_nan = AsyncBuffer::new(stream(std::iter::repeat(f64::NAN)));
        assert_eq!(all_nan.try_contains(&f64::NAN).await, Ok(false));
        let empty = AsyncBuffer::new(stream(Vec::<u8>::new()));
        assert!(!empty.contains(&0).await);
    })
    .await;
}

#[tokio::test]
async fn the_builders_halting_condition_is_used() {
    within_async(LIMIT, async {
        let b = Buffer::builder().halt(halt::MaxAttempts(10)).build_async(stream(vec![10, 1, 2, 3]));
        assert_eq!(b.try_contains(&2).await, Ok(true));
        assert_eq!(b.try_contains(&7).await, Ok(false));
        let endless =
            Buffer::builder().halt(halt::MaxAttempts(1000)).build_async(stream(std::iter::repeat(1u8)));
        assert_eq!(endless.try_contains(&2).await, Ok(false), "stops after 1000 attempts");
        let closure = Buffer::builder()
            .halt(|_: &i32, _: &i32, n: usize| n > 3)
            .build_async(stream(vec![5, 4, 3, 2, 1]));
        assert_eq!(closure.try_contains(&4).await, Ok(true));
        assert_eq!(closure.try_contains(&1).await, Ok(false), "gave up after 4 items");
        let magnitudes = Buffer::builder()
            .halt(halt::AbsNonDecreasing)
            .build_async(stream((1i64..).map(|n| if n % 2 == 0 { -n } else { n })));
        assert_eq!(magnitudes.try_contains(&-10).await, Ok(true));
        assert_eq!(magnitudes.try_contains(&10).await, Ok(false));
    })
    .await;
}

#[tokio::test]
async fn a_producer_panic_during_a_search_is_an_error() {
    within_async(LIMIT, async {
        let b =
            AsyncBuffer::new(stream(0u32..).map(|i| if i == 3 { panic!("stream broke at {i}") } else { i }));
        match b.try_contains(&10).await {
            Err(Error::ProducerPanicked { index: 3, message }) => assert_eq!(message, "stream broke at 3"),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.try_contains(&2).await, Ok(true), "items before the panic are there");
    })
    .await;
}

/// A small deterministic generator (no dev-dependency for one test).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// For thousands of short sequences (sorted, nearly sorted, with repeats and drops), every
/// lookahead and every target, the async search answers as the sync one, cold and warm.
#[tokio::test]
async fn the_answer_is_the_sync_buffers() {
    within_async(LIMIT, async {
        let mut state = 0x2545_f491_4f6c_dd1d;
        for _ in 0..1000 {
            let len = (next(&mut state) % 7) as usize;
            let mut items = Vec::with_capacity(len);
            let mut value = 0i64;
            for _ in 0..len {
                value +=
                    (next(&mut state) % 4) as i64 - if next(&mut state).is_multiple_of(5) { 3 } else { 0 };
                items.push(value);
            }
            let lookahead = (next(&mut state) % 4) as usize;
            let sync = Buffer::builder().lookahead(lookahead).build(items.clone());
            let warm = Buffer::builder().lookahead(lookahead).build_async(stream(items.clone()));
            let _ = warm.get(len.saturating_sub(1)).await;
            for target in -4..12 {
                let expected = sync.try_contains(&target);
                let cold = Buffer::builder().lookahead(lookahead).build_async(stream(items.clone()));
                assert_eq!(cold.try_contains(&target).await, expected, "cold: {items:?}, target {target}");
                assert_eq!(warm.try_contains(&target).await, expected, "warm: {items:?}, target {target}");
            }
        }
    })
    .await;
}

/// An always-ready stream with a huge lookahead still gives the runtime back: a search on a
/// current-thread runtime answers, and dropping the buffer stops the producer.
#[test]
fn an_always_ready_stream_with_a_huge_lookahead_does_not_starve_the_runtime() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let pulled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = std::sync::Arc::clone(&pulled);
        let found = rt.block_on(async move {
            let b =
                Buffer::builder().lookahead(usize::MAX).build_async(stream((0u64..).inspect(move |_| {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                })));
            let found = b.try_contains(&5).await;
            drop(b);
            found
        });
        // The producer was aborted with the buffer: it pulls nothing more.
        let after_drop = pulled.load(std::sync::atomic::Ordering::Relaxed);
        rt.block_on(tokio::task::yield_now());
        let _ = tx.send((found, after_drop == pulled.load(std::sync::atomic::Ordering::Relaxed)));
        drop(rt);
    });
    let outcome = rx.recv_timeout(Duration::from_secs(30)).expect("deadline passed: the runtime starved");
    assert_eq!(outcome, (Ok(true), true));
}

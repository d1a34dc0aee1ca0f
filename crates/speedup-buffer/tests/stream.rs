//! AsyncBuffer: indexing, streaming, end of stream, panics, drop.
#![cfg(feature = "tokio")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use speedup_buffer::{AsyncBuffer, Buffer, Error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_waits_and_streams_replay_from_the_start() {
    let b = Buffer::builder()
        .lookahead(8)
        .build_async(futures::stream::iter(0u64..).then(|i| async move { i * 2 }));
    assert_eq!(b.get(100).await, Some(&200));
    let a: Vec<u64> = b.stream().take(5).map(|v| *v).collect().await;
    let c: Vec<u64> = b.stream().take(5).map(|v| *v).collect().await;
    assert_eq!(a, [0, 2, 4, 6, 8]);
    assert_eq!(a, c);
}

#[tokio::test]
async fn the_end_of_a_finite_stream_is_explicit() {
    let b = Buffer::builder().lookahead(2).build_async(futures::stream::iter(vec![1, 2, 3]));
    assert_eq!(b.get(2).await, Some(&3));
    assert_eq!(b.get(3).await, None);
    assert_eq!(b.stream().count().await, 3);
}

#[tokio::test]
async fn the_producer_runs_only_lookahead_items_ahead() {
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pulled);
    let b = Buffer::builder().lookahead(4).build_async(futures::stream::iter(0u32..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    assert_eq!(b.get(9).await, Some(&9));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pulled.load(Ordering::SeqCst), 14, "10 asked for + 4 ahead");
}

#[tokio::test]
async fn a_producer_panic_reaches_readers() {
    let b = Buffer::builder().lookahead(2).build_async(
        futures::stream::iter(0u32..).map(|i| if i == 3 { panic!("stream broke at {i}") } else { i }),
    );
    assert_eq!(b.get(2).await, Some(&2));
    match b.try_get(3).await {
        Err(Error::ProducerPanicked { message, .. }) => assert_eq!(message, "stream broke at 3"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn new_uses_the_default_lookahead() {
    let b = AsyncBuffer::new(futures::stream::iter(0u64..));
    assert_eq!(b.get(3).await, Some(&3));
}

/// The producing task's runtime is dropped while a reader on another runtime waits: the
/// reader gets `ProducerStopped` (items produced before stay readable), not a hang.
#[test]
fn a_reader_on_another_runtime_is_told_when_the_producers_runtime_is_dropped() {
    speedup_test_support::within(30, || {
        let producing =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let b = {
            let _entered = producing.enter();
            Buffer::builder().lookahead(4).build_async(futures::stream::unfold(0u64, |i| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Some((i, i + 1))
            }))
        };
        let reading = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        assert_eq!(reading.block_on(b.try_get(1)), Ok(Some(&1)));
        drop(producing);
        assert_eq!(reading.block_on(b.try_get(0)), Ok(Some(&0)), "produced items stay");
        assert!(matches!(reading.block_on(b.try_get(100)), Err(Error::ProducerStopped { index: 100 })));
    });
}

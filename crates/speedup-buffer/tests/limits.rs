//! Indices and lookaheads at the limits of `usize`: no overflow, no hang, no panic.

use speedup_buffer::Buffer;
use speedup_test_support::within;

#[test]
fn huge_indices_past_the_end_are_none() {
    within(30, || {
        let b = Buffer::new(0u64..1000);
        assert_eq!(b.get(1 << 63), None);
        assert_eq!(b.get(usize::MAX), None);
        assert_eq!(b.try_get(usize::MAX - 1), Ok(None));
        assert_eq!(b.get(999), Some(&999));
        assert!(!b.contains(&5000));
    });
}

#[test]
fn the_largest_lookahead_is_accepted() {
    within(30, || {
        let b = Buffer::builder().lookahead(usize::MAX).build(0u64..100);
        assert_eq!(b.get(5), Some(&5));
        assert_eq!(b.get(usize::MAX), None);
        assert_eq!(b.iter().count(), 100);
        assert_eq!(b.iter().skip(99).copied().collect::<Vec<_>>(), [99]);
    });
}

#[test]
fn a_window_buffer_at_the_limits() {
    within(30, || {
        let b = Buffer::builder().lookahead(4).window(8).build(0u64..100);
        assert_eq!(b.get(usize::MAX), Ok(None));
        let wide = Buffer::builder().lookahead(usize::MAX).window(usize::MAX).build(0u64..100);
        assert_eq!(wide.get(usize::MAX), Ok(None));
        assert_eq!(wide.get(0), Ok(Some(0)), "a window of usize::MAX keeps everything");
    });
}

#[cfg(feature = "tokio")]
#[test]
fn an_async_buffer_at_the_limits() {
    use futures::StreamExt;

    within(30, || {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let b = Buffer::builder().lookahead(usize::MAX).build_async(futures::stream::iter(0u64..100));
            assert_eq!(b.get(usize::MAX).await, None);
            assert_eq!(b.get(1 << 63).await, None);
            assert_eq!(b.stream().count().await, 100);
        });
    });
}

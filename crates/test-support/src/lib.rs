//! Helpers the pyspeedup-rs test suites share, so that each lives in one place:
//!
//! - [`within`] and `within_async` (feature `tokio`): a deadline, so that a hang fails the
//!   test instead of stalling CI;
//! - [`panic_message`]: the text of a caught panic;
//! - `Recorder` (feature `tracing`): a subscriber that keeps what the code under test logged;
//! - `RedisServer` (feature `redis`): a throwaway `redis-server` on a free loopback port.
//!
//! ```
//! let sum = speedup_test_support::within(10, || (1..=4).sum::<u32>());
//! assert_eq!(sum, 10);
//! let caught = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
//! assert_eq!(speedup_test_support::panic_message(&*caught), "boom 1");
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "tracing")]
mod recorder;
#[cfg(feature = "redis")]
mod redis_server;

#[cfg(feature = "tracing")]
pub use recorder::{Recorded, Recorder};
#[cfg(feature = "redis")]
pub use redis_server::{RedisServer, free_port};

use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on its own thread and fails the test if it does not finish within `secs`:
/// a deadlock becomes a failure, not a hung CI job. A panic in `f` is resumed here, so the
/// test fails with `f`'s own message.
///
/// The thread of a hung `f` is left behind (it cannot be killed); the test process exits
/// with the failure anyway.
pub fn within<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(result);
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("did not finish within {secs} s: a deadlock or a hang"),
    }
}

/// Awaits `f`, failing the test if it takes longer than `limit` (tokio's timer: the
/// runtime must have time enabled, as `#[tokio::test]` does).
#[cfg(feature = "tokio")]
pub async fn within_async<T>(limit: Duration, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, f).await.expect("deadline passed: a hang")
}

/// The message of a caught panic: the `&str` or `String` it carried, or an empty string
/// for any other payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "did not finish within 1 s")]
    fn a_hang_fails_at_the_deadline() {
        within(1, || std::thread::sleep(Duration::from_secs(30)));
    }

    #[test]
    #[should_panic(expected = "inner failure")]
    fn a_panic_inside_is_the_test_failure() {
        within(10, || panic!("inner failure"));
    }

    #[test]
    fn a_payload_that_is_not_text_has_an_empty_message() {
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(7_u32)).unwrap_err();
        assert_eq!(panic_message(&*caught), "");
    }
}

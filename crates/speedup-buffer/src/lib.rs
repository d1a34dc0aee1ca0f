//! Run any iterator ahead of its readers on a thread of its own: an indexable, searchable,
//! cached read-ahead buffer.
//!
//! This is PySpeedup's `Buffer` / `@buffer` ("a concurrent buffer that runs a generator in a
//! separate processor"), rebuilt: the original did one inter-process round trip per access
//! (about 2,000 items/s), answered `100 in count` with `False` and never returned for an
//! absent value below the frontier, hung its reader at the end of a finite generator or
//! after a generator exception, and leaked its producer process.
//!
//! ```
//! use speedup_buffer::{Buffer, halt};
//!
//! let count = Buffer::new(0u64..);           // the producer thread starts, lookahead 16
//! assert_eq!(count.get(15), Some(&15));      // waits until produced
//! assert!(count.contains(&100));             // stops once an item is greater than 100
//! assert_eq!(count.iter().take(5).copied().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
//!
//! let finite = Buffer::new(vec![1, 2, 3]);
//! assert_eq!(finite.get(3), None);           // the end is explicit: no hang
//! assert!(!finite.contains(&7));
//!
//! // 1, -2, 3, -4, ...: not sorted, but growing in magnitude.
//! let signs = Buffer::builder().halt(halt::AbsNonDecreasing).build((1i64..).map(|n| if n % 2 == 0 { -n } else { n }));
//! assert!(signs.contains(&-10));
//! assert!(!signs.contains(&10)); // stops at 11, whose magnitude passes 10
//! ```
//!
//! # Guarantees
//!
//! - **Bounded run-ahead.** The producer stays `lookahead` items past the furthest index
//!   any reader asked for, then parks (after a short bounded spin; no polling).
//! - **No held-back items.** Each item is published as soon as the producer yields it: a
//!   reader waiting for it sees it at once, however long the next item takes.
//! - **Stable, lock-free reads.** Produced items never move; readers on any number of
//!   threads read them without locking.
//! - **Explicit end, loud failure.** `get` past the end of a finite sequence returns
//!   `None`; a producer panic reaches every reader that needs an item past it (and
//!   [`Buffer::try_get`] returns it as [`Error::ProducerPanicked`]).
//! - **Dropping never hangs.** Dropping the buffer stops the producer: a parked producer is
//!   joined at once; one blocked inside its iterator's `next()` (a channel nobody sends to)
//!   is detached after [`DROP_GRACE`] (50 ms), finishes that call on its own and exits.
//! - **Searching terminates, and never guesses.** [`Buffer::contains`] stops when the
//!   [`halt`] condition says so, and at the end of a finite sequence. The built-in
//!   conditions check the order they assume while scanning: a sequence that breaks it is
//!   [`Error::Unsorted`] from [`Buffer::try_contains`], not a wrong answer.
//! - **Any index.** Index arithmetic saturates: `get(usize::MAX)` on a finite sequence is
//!   `None`, and `lookahead(usize::MAX)` is accepted.
//!
//! Bounded memory: [`WindowBuffer`] keeps only the last N items, and with a [`Spill`] store
//! (a `speedup_paged::DiskList` under feature `spill`) older items move to disk and stay
//! readable. Async: `AsyncBuffer` (feature `tokio`) runs a `futures::Stream` ahead on a
//! tokio task, with `get` as an async fn and the buffer readable as a `Stream`.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod buffer;
mod error;
mod gate;
pub mod halt;
mod store;
#[cfg(feature = "tokio")]
mod stream;
mod sync;
mod window;

pub use buffer::{Buffer, BufferBuilder, DEFAULT_LOOKAHEAD, DROP_GRACE, Iter, Prefix};
pub use error::Error;
#[cfg(feature = "tokio")]
pub use stream::AsyncBuffer;
pub use window::{Spill, WindowBuffer};

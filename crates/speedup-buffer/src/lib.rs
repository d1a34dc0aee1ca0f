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
//! Your own item types work too. `contains` needs an order to know when to stop: derive
//! `PartialOrd` (fields compare in declaration order), or give a halting condition of
//! your own:
//!
//! ```
//! use speedup_buffer::Buffer;
//!
//! #[derive(Debug, Clone, PartialEq, PartialOrd)]
//! struct Event { at: u64, name: String }
//!
//! let events = Buffer::new((0..).map(|i| Event { at: i * 10, name: format!("tick {i}") }));
//! assert_eq!(events.get(3).map(|e| e.name.as_str()), Some("tick 3"));
//! assert!(events.contains(&Event { at: 30, name: "tick 3".into() }));
//!
//! // Searched by a closure: give up after 100 items.
//! let by_name = Buffer::builder()
//!     .halt(|_: &Event, _: &Event, seen: usize| seen >= 100)
//!     .build((0..).map(|i| Event { at: 0, name: format!("e{}", i % 7) }));
//! assert!(by_name.contains(&Event { at: 0, name: "e6".into() }));
//! ```
//!
//! Bounded memory, with the items that leave the window kept on disk (feature `spill`;
//! items are stored with rkyv, so mark your own structs `#[speedup_paged::storable]`):
//!
//! ```
//! # #[cfg(feature = "spill")] {
//! use speedup_buffer::Buffer;
//! use speedup_paged::{DiskList, Options};
//!
//! #[speedup_paged::storable]
//! #[derive(Debug, Clone, PartialEq)]
//! struct Reading { sensor: u32, value: f64 }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let disk: DiskList<Reading> = DiskList::open_with("old", &Options::new().location(dir.path())).unwrap();
//! let readings = Buffer::builder()
//!     .lookahead(8)
//!     .window(64) // at most 64 readings in memory
//!     .spill(disk)
//!     .build((0..).map(|i| Reading { sensor: i % 4, value: f64::from(i) / 2.0 }));
//! assert_eq!(readings.get(1_000).unwrap().unwrap().value, 500.0);
//! assert_eq!(readings.get(3).unwrap(), Some(Reading { sensor: 3, value: 1.5 })); // from disk
//! # }
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
//!   conditions check the order they assume while scanning: a sequence that breaks it
//!   where the search looks is [`Error::Unsorted`] from [`Buffer::try_contains`], not a
//!   wrong answer, and the answer is the same however much is cached.
//! - **Any index.** Index arithmetic saturates: `get(usize::MAX)` on a finite sequence is
//!   `None`, and `lookahead(usize::MAX)` is accepted.
//! - **Memory: a `Buffer` keeps every item it produced** (that is what makes it indexable
//!   and re-iterable: `get(0)` still works after a million items). Its memory grows with
//!   the items produced, about `size_of::<T>()` each plus up to 2x slack (buckets double);
//!   50M `u64`s hold about 380 MiB. For a stream that must run in bounded memory, use
//!   `.window(n)` below.
//!
//! One builder for every kind: [`Buffer::builder`]`.lookahead(n)`, then `.build(iter)`
//! (a [`Buffer`]), `.window(n)` and optionally `.spill(store)` then `.build(iter)` (a
//! [`WindowBuffer`], which keeps only the last `n` items in memory; with a [`Spill`] store,
//! a `speedup_paged::DiskList` under feature `spill`, older items move to disk and stay
//! readable), or `.build_async(stream)` (an `AsyncBuffer`, feature `tokio`: a
//! `futures::Stream` run ahead on a tokio task, with `get` as an async fn and the buffer
//! readable as a `Stream`).
//!
//! # Features
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod buffer;
mod engine;
mod error;
mod gate;
pub mod halt;
mod producer;
mod store;
#[cfg(feature = "tokio")]
mod stream;
mod sync;
mod window;

pub use buffer::{Buffer, BufferBuilder, DEFAULT_LOOKAHEAD, DROP_GRACE, Iter, Prefix, WindowBuilder};
pub use error::{BoxError, Error, Result, SpillError};
#[cfg(feature = "tokio")]
pub use stream::AsyncBuffer;
pub use window::{Spill, WindowBuffer};

//! Speed-ups for three everyday problems, plus zero-copy fan-out, as one crate:
//!
//! | module | crate | what it does |
//! |---|---|---|
//! | [`buffer`](https://docs.rs/speedup-buffer) | `speedup-buffer` | runs an iterator ahead of its readers on another thread: an indexable, searchable, cached read-ahead buffer |
//! | [`cache`](https://docs.rs/speedup-cache) | `speedup-cache` | memoizes recursive functions whose sub-calls run in parallel, once per key, without deadlocks |
//! | [`paged`](https://docs.rs/speedup-paged) | `speedup-paged` | `DiskDict` and `DiskList`: a dict and a list paged to disk, bounded in RAM, crash-safe |
//! | [`eat`](https://docs.rs/cereal-eat) | `cereal-eat` | fans one data set out to many workers without copying it |
//!
//! They are the Rust successors of two Python libraries, PySpeedup (`Buffer`, `Cache`,
//! `DiskDict`, `DiskList`) and cereal (`eat`), keeping their ideas and fixing their bugs.
//! Each module is a re-export of its own crate, behind a cargo feature of the same name
//! (all on by default): depend on a single crate if that is all you need.
//!
//! ```
//! # #[cfg(feature = "paged")] {
//! use pyspeedup::prelude::*;
//! # let dir = tempfile::tempdir().unwrap();
//! let mut d: DiskDict<u64, String> = DiskDict::open_with("test", &PagedOptions::new().location(dir.path()))?;
//! d.insert(3, "d".to_string())?;
//! assert_eq!(d.get(&3)?.as_deref(), Some("d"));
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The `tour` example (`cargo run --release --example tour`) runs every example of the two
//! original documents, translated, and prints what they print.
//!
//! # Features
//!
//! Each sub-crate's own features pass through the umbrella (`tokio`, `persist`, `spill`,
//! `arrow`, `redis`); none of them is on by default.
//!
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "buffer")]
#[doc(inline)]
pub use speedup_buffer as buffer;

#[cfg(feature = "cache")]
#[doc(inline)]
pub use speedup_cache as cache;

#[cfg(feature = "paged")]
#[doc(inline)]
pub use speedup_paged as paged;

#[cfg(feature = "eat")]
#[doc(inline)]
pub use cereal_eat as eat;

/// The types most programs use, in one import: `use pyspeedup::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "eat")]
    #[doc(no_inline)]
    pub use cereal_eat::{AtomicArray, Ptr, eat, split};
    #[cfg(all(feature = "buffer", feature = "tokio"))]
    #[doc(no_inline)]
    pub use speedup_buffer::AsyncBuffer;
    #[cfg(feature = "buffer")]
    #[doc(no_inline)]
    pub use speedup_buffer::{Buffer, WindowBuffer, halt};
    #[cfg(all(feature = "cache", feature = "tokio"))]
    #[doc(no_inline)]
    pub use speedup_cache::AsyncCache;
    #[cfg(feature = "cache")]
    #[doc(no_inline)]
    pub use speedup_cache::Cache;
    #[cfg(feature = "paged")]
    #[doc(no_inline)]
    pub use speedup_paged::{DiskDict, DiskList, Options as PagedOptions, storable};
}

/// The README's examples, compiled and run as doctests so they stay true. `README.md` is a
/// link to the workspace's README, which `cargo package` copies into the crate.
#[cfg(all(doctest, feature = "eat", feature = "buffer", feature = "cache", feature = "paged"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

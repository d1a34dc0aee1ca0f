//! Fan one data set out to many workers (threads, tasks, processes) without copying it.
//!
//! This is cereal's `eat` ("create a repeated pointer to a specified length ... useful for
//! parallelizing large datasets"), made safe: the original handed out raw object addresses,
//! so writing through one raised `TypeError`, its orchestration example segfaulted, and
//! its "shared memory" meant nothing across processes. Here each need has a shape that
//! Rust can check:
//!
//! | you want | use | cost on the hot path |
//! |---|---|---|
//! | N handles to one object, reads and whole-object writes | [`eat`] → [`Ptr`] | a reader-writer lock |
//! | worker `pos` mutates segment `pos` of one buffer | [`split`] → [`SegmentMut`] (owned, `'static`), [`split_mut`] (scoped) | nothing: disjoint `&mut [T]` |
//! | many writers on the *same* elements | [`AtomicArray`] | one atomic op per element |
//! | several processes on one array | [`SharedArray`] (file or `/dev/shm` mapping) | one atomic op per element |
//! | the repeated structure itself | [`compute::repeat_rows`], [`compute::broadcast_rows`] (zero-copy), `compute::to_record_batch` (feature `arrow`) | — |
//!
//! Around them: [`compute`] (the repeated structure, row insertion, replacement and
//! zero-copy sampling) and [`traverse`] (segments on rayon's pool, positions as tokio tasks).
//!
//! ```
//! use cereal_eat::{eat, split, Ptr};
//!
//! // eat: 4 handles to one list; a write through one is seen through all.
//! let yum: Vec<Ptr<Vec<i32>>> = eat(vec![1, 2, 3, 4], 4).collect();
//! yum[0].write()[0] = 4;
//! assert_eq!(*yum[2].read(), [4, 2, 3, 4]);
//!
//! // Segments: x = np.arange(100).reshape(4, 25); worker pos adds one to row pos.
//! let (whole, segments) = split((0..100).collect::<Vec<u32>>(), &[4, 25], 4)?;
//! let segments = cereal_eat::traverse::par_for_each(segments, 0, |row| row.iter_mut().for_each(|v| *v += 1));
//! let x = whole.join(segments).expect("all segments back");
//! assert_eq!((x[0], x[99]), (1, 100));
//! # Ok::<(), cereal_eat::Error>(())
//! ```
//!
//! # Guarantees
//!
//! - **No copies.** `eat` moves the object once; `split` hands out ranges of the original
//!   allocation and [`Whole::join`] returns that very allocation.
//! - **No data races by construction.** Segments are disjoint and exclusive (two writers on
//!   one segment, or a scoped segment outliving its buffer, do not compile: see
//!   `tests/ui/`); shared elements are atomic.
//! - **`'static` handles.** `Ptr`, `SegmentMut` and `Arc<AtomicArray>` go to
//!   `std::thread::spawn` and `tokio::spawn`, not only to scoped threads.
//! - **No out-of-bounds memory from safe code.** Every shape is multiplied out with
//!   checked arithmetic: a shape whose size overflows, or that does not fit its data, is an
//!   [`Error::Shape`], never a wrapped length over too little memory (property-tested in
//!   `tests/shapes.rs`; the unsafe parts also run under Miri with `cargo xtask miri`).
//! - **Typed cross-process stores.** A [`SharedArray`] header records element type and
//!   shape; opening with another type is an error, not garbage, and a header is checked
//!   against the mapping it describes before any element is touched.
//! - **Race-free creation.** [`SharedArray::open_or_create`] from any number of processes
//!   makes exactly one store, fully initialised before anyone can open it;
//!   [`SharedArray::create`] never truncates or replaces an existing file. A `truncate`
//!   from outside the crate still kills the processes that map the file (SIGBUS), as with
//!   any memory mapping: see [`SharedArray`].
//!
//! # Features
//!
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod atomic;
pub mod compute;
mod error;
mod ptr;
mod segments;
mod shape;
mod shm;
pub mod traverse;

pub use atomic::{AtomicArray, AtomicElement};
pub use error::{Error, Result};
/// The ndarray views this crate's API hands out (only these: the rest of `ndarray` is not
/// part of this crate's interface, so its releases do not break ours).
pub use ndarray::{ArrayView1, ArrayView2, ArrayViewMut, IxDyn};
pub use ptr::{HandlesAlive, Ptr, eat};
pub use segments::{SegmentMut, SegmentsAlive, Whole, split, split_mut};
pub use shm::SharedArray;

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod static_checks {
    const fn assert_send_sync_static<T: Send + Sync + 'static>() {}
    const _: () = assert_send_sync_static::<crate::Ptr<Vec<u8>>>();
    const _: () = assert_send_sync_static::<crate::SegmentMut<u8>>();
    const _: () = assert_send_sync_static::<crate::AtomicArray<f64>>();
    const _: () = assert_send_sync_static::<crate::SharedArray<i64>>();
}

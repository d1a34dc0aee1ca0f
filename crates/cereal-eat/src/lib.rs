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
//! | the repeated structure itself | [`repeat_rows`], [`broadcast_rows`] (zero-copy), `to_record_batch` (feature `arrow`) | — |
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
//! let segments = cereal_eat::par_for_each(segments, 0, |row| row.iter_mut().for_each(|v| *v += 1));
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
mod compute;
mod error;
mod ptr;
mod segments;
mod shape;
mod shm;
mod traverse;

pub use atomic::{AtomicArray, AtomicElement};
#[cfg(feature = "arrow")]
pub use compute::to_record_batch;
pub use compute::{broadcast_rows, insert_rows, repeat_rows, replace_row};
pub use error::{Error, Result};
pub use ptr::{HandlesAlive, Ptr, eat};
pub use segments::{SegmentMut, SegmentsAlive, Whole, par_for_each, split, split_mut};
pub use shm::SharedArray;
pub use traverse::map_with_pos;
#[cfg(feature = "tokio")]
pub use traverse::spawn_each;

/// Sample rows of a 2-D array as zero-copy views (batched sampling without deep copies).
///
/// ```
/// let table = ndarray::Array2::from_shape_fn((100, 3), |(r, c)| (r * 3 + c) as u32);
/// let batch = cereal_eat::sample_rows(&table.view(), &[7, 42, 99]);
/// assert_eq!(batch[1].to_vec(), [126, 127, 128]);
/// ```
pub fn sample_rows<'a, T>(
    table: &ndarray::ArrayView2<'a, T>,
    rows: &[usize],
) -> Vec<ndarray::ArrayView1<'a, T>> {
    rows.iter().map(|&r| (*table).index_axis_move(ndarray::Axis(0), r)).collect()
}

pub use ndarray;

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

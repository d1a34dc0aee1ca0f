//! `DiskDict` and `DiskList`: a dictionary and a list whose entries live in pages of a
//! memory-mapped file, so RAM use stays bounded however large they grow, and whose contents
//! survive restarts and crashes.
//!
//! This is the "Memory Module" of [PySpeedup](https://pypi.org/project/PySpeedup/) (a dict and
//! a list paged to disk, `size_limit` items per page, `max_pages` pages in memory, persistent
//! across runs) rebuilt as a small storage engine: copy-on-write pages, checksums, an
//! atomically switched header, zero-copy reads through [rkyv](https://docs.rs/rkyv).
//!
//! ```
//! use speedup_paged::{DiskDict, DiskList, Options};
//!
//! // Your own type: one line makes it storable.
//! #[speedup_paged::storable]
//! #[derive(Debug, Clone, PartialEq)]
//! struct Point { x: i32, y: i32 }
//!
//! # let dir = tempfile::tempdir().unwrap();
//! let opts = Options::new().location(dir.path()).size_limit(1024).max_pages(16);
//!
//! let mut d: DiskDict<u64, String> = DiskDict::open_with("test", &opts)?;
//! d.insert(3, "d".to_string())?;
//! assert_eq!(d.get(&3)?.as_deref(), Some("d"));
//! assert_eq!(d.get(&4)?, None);                    // missing is Ok(None), not an error
//!
//! let mut l: DiskList<Point> = DiskList::open_with("points", &opts)?;
//! l.push(Point { x: 7, y: -7 })?;
//! assert_eq!(l.set(0, Point { x: 8, y: -8 })?, Point { x: 7, y: -7 });
//! assert_eq!(l.get(0)?, Some(Point { x: 8, y: -8 }));
//! assert_eq!(l.get(1)?, None);                     // like Vec::get
//!
//! d.flush()?;                                      // durable from here on
//! l.close()?;
//! # Ok::<(), speedup_paged::Error>(())
//! ```
//!
//! # Guarantees
//!
//! - **Complexity.** `DiskDict`: O(1) expected `get`, `insert`, `remove` (extendible hashing;
//!   no per-key index in memory). `DiskList`: O(1) `get`, `set`, `push`, `pop`; `insert` and
//!   `remove` are O(n / size_limit + size_limit). `len` is O(1) without I/O.
//! - **Memory.** Anonymous memory is bounded by the options, not by the number of entries:
//!   at most `size_limit × max_pages` entries (and at most 256 MiB of records) wait in the
//!   write overlay (dict) or sit in resident pages (list), plus a page index of about 200
//!   bytes per page (for a dict: its bucket and at most 16 directory slots; there are at
//!   most 64 plus 4 × entries / `size_limit` buckets, counting the most entries the dict
//!   has held, since buckets are not merged back until [`DiskDict::clear`]). Pages hold at
//!   most `size_limit` entries and about 64 MiB. This holds for every accepted option
//!   (`size_limit(1)` included: 100k entries take 17 MiB) and for any keys: hashes are
//!   seeded per store, and keys whose hashes collide anyway share an oversized page instead
//!   of growing the directory. (A `Hash` impl that ignores the key puts every entry in one
//!   page that each merge rewrites: correct, but O(n) per merge, as a constant hash makes
//!   `HashMap` O(n) per operation.) Reads go through a read-only shared mapping of the
//!   file: those pages are file-backed, so the kernel can drop them under pressure; they
//!   never go to swap.
//! - **Durability.** When [`DiskDict::flush`] / [`DiskList::flush`] returns `Ok`, everything
//!   written before it survives a crash or a power cut. Pages are written copy-on-write and
//!   a new header is switched in only after they are synced; killing the process at any
//!   instant leaves a store that opens with every flushed entry. `close()` flushes and
//!   reports errors; `Drop` flushes and logs errors through `tracing`.
//! - **Integrity.** Every page, the root and each header slot carry an XXH3-64 checksum, and
//!   every archived record is validated by rkyv before it is read without checks. A torn,
//!   truncated or bit-flipped file gives [`Error::Corrupt`], never a panic or wrong data,
//!   with one exception by design: the header has two slots so that a crash while writing
//!   one leaves the other; if the newest slot is damaged the store opens from the older
//!   one, one flush back. After a bit flip that loses an acknowledged flush, so the open
//!   logs a warning and [`DiskDict::header_fallback`] / [`DiskList::header_fallback`]
//!   report it.
//! - **Types.** A store records the structure of its key and value types (field names and
//!   types, recursively; see [`schema_of`]), never their names or modules: moving or
//!   renaming a type keeps its stores, while opening with other fields is
//!   [`Error::TypeMismatch`] showing both schemas. Stores written by format 1 (type names)
//!   open as before and switch on their next flush.
//! - **Processes and threads.** A store is locked exclusively while open: a second handle,
//!   in this or another process, gets [`Error::Locked`], also when several openers create
//!   a new store at the same instant (a new file is linked into place complete, never
//!   over an existing one). Both types are `Send + Sync`: reads take `&self` and run in
//!   parallel without locks; writes take `&mut self`.
//! - **Stable placement.** Keys are placed by a fixed, documented hash (XXH3-64 of the key's
//!   little-endian `Hash` stream, with a seed drawn when the store is created and kept in
//!   its header), so a store finds its keys after any dependency upgrade. The file format
//!   is described in `docs/paged-format.md`.
//!
//! # Files
//!
//! A store named `name` is one file, `<location>/name.spdict` or `<location>/name.splist`.
//! The location defaults to `~/.PySpeedup` (the original's `file_location`); an empty
//! location is the current directory. Several stores share a folder by using different
//! basenames; a store never reads another's files.
//!
//! # Features
//!
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod dict;
mod error;
mod extent;
mod file;
mod hash;
mod header;
mod le;
mod list;
mod options;
mod overlay;
mod page;
mod record;
mod root;
pub mod schema;
mod store;
mod validated;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use dict::{DICT_EXTENSION, DiskDict, Entry, Iter, Keys, Values};
pub use error::{Activity, Error, Result};
pub use header::HeaderFallback;
pub use list::{DiskList, LIST_EXTENSION, ListIter};
pub use options::{DEFAULT_MAX_PAGES, DEFAULT_SIZE_LIMIT, Options};
pub use record::Storable;
pub use schema::{Schema, SchemaWriter, schema_of};

/// Makes your struct or enum storable in one line: derives rkyv's `Archive`, `Serialize`
/// and `Deserialize` (through the rkyv this crate re-exports, so you need no rkyv
/// dependency) and a structural [`Schema`].
///
/// ```
/// use speedup_paged::{DiskDict, Options};
///
/// #[speedup_paged::storable]
/// #[derive(Debug, Clone, PartialEq)]
/// struct Point { x: i32, y: i32 }
///
/// # let dir = tempfile::tempdir().unwrap();
/// let opts = Options::new().location(dir.path());
/// let mut d: DiskDict<String, Point> = DiskDict::open_with("points", &opts)?;
/// d.insert("origin".into(), Point { x: 0, y: 0 })?;
/// assert_eq!(d.get(&"origin".to_string())?, Some(Point { x: 0, y: 0 }));
/// # Ok::<(), speedup_paged::Error>(())
/// ```
///
/// The store records the type's structure: field names and types, recursively, in order
/// (see [`schema_of`]). Moving `Point` to another module or crate, or renaming it, keeps
/// its stores readable; adding, removing, renaming, reordering or retyping a field makes
/// `open` fail with [`Error::TypeMismatch`], which shows both schemas.
///
/// A type that contains itself (a tree) needs rkyv's usual attributes for recursion as well
/// (`#[rkyv(omit_bounds)]` on the recursive field, and the serialize, deserialize and
/// bytecheck bounds that rkyv's documentation gives); they become part of its schema.
///
/// Arguments: `#[storable(version = 2)]` marks an intentional change (stores of another
/// version refuse to open even where the fields match); `#[storable(crate = path)]` says
/// where speedup-paged is if it is neither a direct dependency nor reached through the
/// `pyspeedup` umbrella (both are found on their own). Keys also need `Hash` and `Eq`,
/// derived as usual.
pub use speedup_paged_derive::storable;

// `#[storable]` names this crate `::speedup_paged`; this makes that path work inside the
// crate itself too.
#[allow(unused_extern_crates)]
extern crate self as speedup_paged;

/// Re-exported so that users can derive `Archive`, `Serialize` and `Deserialize` for their
/// own keys and values with the exact rkyv version this crate stores.
pub use rkyv;

#[cfg(test)]
mod static_checks {
    use super::*;
    const fn assert_send_sync<T: Send + Sync>() {}
    const _: () = assert_send_sync::<DiskDict<u64, String>>();
    const _: () = assert_send_sync::<DiskList<String>>();
    const _: () = assert_send_sync::<Error>();
}

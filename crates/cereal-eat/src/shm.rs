//! [`SharedArray`]: an array in a shared file mapping that several processes open by name
//! and update in place: the "distributed systems with shared memory spaces" of the original cereal.
//!
//! # Layout
//!
//! ```text
//! 0    8       magic "CEREALSH"
//! 8    4       format version (1)
//! 12   4       element tag (AtomicElement::TAG)
//! 16   4       number of dimensions D (1..=8)
//! 20   4       zero
//! 24   8 * 8   dimensions (u64 LE; unused ones zero)
//! 88   40      zero (the data starts at 128, a cache-line boundary)
//! 128  8 * N   elements, one 64-bit cell each (N = product of the dimensions)
//! ```
//!
//! The file is exactly `128 + 8 * N` bytes; anything else is refused on open.
//!
//! The guarantees, and what an outside `truncate` still does, are documented on
//! [`SharedArray`] itself.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, Permissions};
use std::marker::PhantomData;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapRaw;

use crate::atomic::{AtomicElement, add_cell};
use crate::error::{Error, Result};
use crate::shape;

const MAGIC: [u8; 8] = *b"CEREALSH";
const VERSION: u32 = 1;
const DATA: usize = 128;
const MAX_DIMS: usize = 8;
/// How often [`SharedArray::open_or_create`] retries when the file keeps disappearing
/// between a failed create and the open (someone removes it as fast as it is made).
const OPEN_OR_CREATE_ATTEMPTS: usize = 64;

/// A fixed-shape array of numbers in a file mapping shared between processes (put the
/// file in `/dev/shm` for memory without disk traffic). Every access is atomic.
///
/// Several processes get the same store with [`SharedArray::open_or_create`].
///
/// # Creating and opening from many processes
///
/// A store is built complete (header, zeroed cells, `fsync`) in a temporary file next to
/// its path and then linked into place with a no-replace rename (`renameat2
/// RENAME_NOREPLACE`, or `link` where that is missing). So the file at a path is always
/// a finished store: an opener never sees a half-made one, exactly one of any number of
/// racing creators wins, and [`SharedArray::create`] never truncates, rewrites or
/// replaces a file that exists (it returns [`Error::AlreadyExists`]).
/// [`SharedArray::open_or_create`] is the race-free way for every party to end up on the
/// same store.
///
/// # Why this is sound
///
/// - Another process may write any cell at any time, so this type never creates a plain
///   `&[u64]` or `&mut` over the mapping: every access, header included, is an atomic
///   operation on one aligned 8-byte word (`AtomicU64::from_ptr`), which is exactly what
///   concurrent access from other processes requires.
/// - The header is checked *after* mapping, against the mapping's own length: the shape
///   must have a size that fits in memory (checked arithmetic) and the mapping must be
///   exactly the size the shape needs, so every cell index below `len()` is inside the
///   mapping whatever the file held or another process did before we mapped it.
/// - This crate never shrinks, truncates or rewrites a store file that exists.
///
/// # What this cannot prevent (SIGBUS on an outside truncate)
///
/// Like every memory mapping, a store is only as safe as the file underneath it:
///
/// - If something outside this crate **truncates** the file (`truncate`, `>`, `ftruncate`,
///   opening it with `O_TRUNC`) while a process has it mapped, that process gets **SIGBUS**
///   on its next access to a cell past the new end, and dies. There is no way for a
///   mapping to survive this; do not let other programs write the file.
/// - If the file is **removed** (or renamed away) while mapped, the processes that have it
///   mapped keep working on the old, now nameless store, while a new `create` or
///   `open_or_create` at the path starts a new one: the two groups no longer see each
///   other's writes. Remove a store only once nobody uses it.
/// - A store is a sparse file: its pages get memory (or disk blocks) when first written.
///   If the filesystem is full at that moment (a full `/dev/shm` included), the writing
///   process gets **SIGBUS** too. Put stores where their full size fits.
/// - A process killed in the middle of `create` may leave a temporary file named
///   `.NAME.XXXXXX.cereal-tmp` next to the store; it is never opened and can be deleted.
///
/// # Examples
///
/// ```
/// use cereal_eat::SharedArray;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("counts");
/// let a: SharedArray<u64> = SharedArray::open_or_create(&path, &[2, 3])?;
/// let b: SharedArray<u64> = SharedArray::open_or_create(&path, &[2, 3])?; // same store
/// a.fetch_add(4, 1);
/// assert_eq!(b.get(4), 1);
/// assert!(a.created() && !b.created());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedArray<T> {
    map: MmapRaw,
    path: PathBuf,
    len: usize,
    shape: Vec<usize>,
    created: bool,
    _elements: PhantomData<T>,
}

impl<T> std::fmt::Debug for SharedArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedArray").field("path", &self.path).field("shape", &self.shape).finish()
    }
}

impl<T: AtomicElement> SharedArray<T> {
    /// Creates a new store at `path` with `shape`, all elements zero.
    ///
    /// The store is built in a temporary file next to `path` and linked into place only
    /// once complete, so no other process ever sees it half-made; if anything exists at
    /// `path` already, nothing is touched and the result is [`Error::AlreadyExists`]. To
    /// join a store that another process may be creating at the same moment, use
    /// [`SharedArray::open_or_create`].
    ///
    /// # Errors
    ///
    /// [`Error::Shape`] for an empty or too-deep shape, or one too large for any file to
    /// hold (the size arithmetic is checked); [`Error::AlreadyExists`]; [`Error::Io`].
    pub fn create(path: impl AsRef<Path>, shape: &[usize]) -> Result<Self> {
        let path = path.as_ref();
        let _span =
            tracing::debug_span!("cereal_eat::SharedArray::create", path = %path.display(), ?shape).entered();
        let bytes = new_store_size(shape)?;
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let (dir, prefix) = temp_place(path).map_err(io)?;
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".cereal-tmp")
            // The mode `File::create` would use (the umask still applies).
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(io)?;
        tmp.as_file().set_len(bytes as u64).map_err(io)?;
        tmp.as_file().write_all_at(&encode_header(T::TAG, shape), 0).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        // Mapped (and checked) before it is published, so that a store too large to map
        // is never left at `path`; the mapping stays valid across the rename.
        let mut array = Self::from_map(map_file(path, tmp.as_file())?, path)?;
        tmp.persist_noclobber(path).map_err(|e| match e.error.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists { path: path.to_path_buf() },
            _ => io(e.error),
        })?;
        array.created = true;
        Ok(array)
    }

    /// Opens the store at `path`, created by [`SharedArray::create`] or
    /// [`SharedArray::open_or_create`] in this or another process, checking the element
    /// type, the header and that the mapping covers every element.
    ///
    /// # Errors
    ///
    /// [`Error::NotShared`] for a foreign file or a corrupt header; [`Error::TypeMismatch`]
    /// for another element type; [`Error::SizeMismatch`] for a file whose size does not
    /// match its header; [`Error::Io`] (kind `NotFound` if there is no file).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let _span = tracing::debug_span!("cereal_eat::SharedArray::open", path = %path.display()).entered();
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size < DATA as u64 {
            // Refused before mapping (an empty file cannot be mapped); `from_map` checks
            // the size again on the mapping itself.
            return Err(not_shared(path, format!("{size} bytes, shorter than the {DATA}-byte header")));
        }
        Self::from_map(map_file(path, &file)?, path)
    }

    /// Opens the store at `path`, or creates it with `shape` (all zero) if there is none:
    /// exactly one of any number of processes and threads calling this at once creates
    /// it, and all of them end up on the same store. [`SharedArray::created`] tells which
    /// one created it.
    ///
    /// # Errors
    ///
    /// [`Error::TypeMismatch`] if the store exists with another element type or shape;
    /// the errors of [`SharedArray::create`] and [`SharedArray::open`].
    pub fn open_or_create(path: impl AsRef<Path>, shape: &[usize]) -> Result<Self> {
        let path = path.as_ref();
        let _span =
            tracing::debug_span!("cereal_eat::SharedArray::open_or_create", path = %path.display(), ?shape)
                .entered();
        new_store_size(shape)?;
        for _ in 0..OPEN_OR_CREATE_ATTEMPTS {
            match Self::open(path) {
                Ok(array) if array.shape == shape => return Ok(array),
                Ok(array) => {
                    return Err(Error::TypeMismatch {
                        path: path.to_path_buf(),
                        expected: format!("shape {shape:?} of {}", T::NAME),
                        found: format!("shape {:?} of {}", array.shape, T::NAME),
                    });
                }
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            // Something that is not a file holds the name (a dangling symlink): creating
            // would be refused every time, so say so at once.
            if path.symlink_metadata().is_ok() && !path.exists() {
                return Err(Error::AlreadyExists { path: path.to_path_buf() });
            }
            match Self::create(path, shape) {
                // Someone else created it between our open and our create: open theirs.
                Err(Error::AlreadyExists { .. }) => {}
                done => return done,
            }
        }
        Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!(
                "the store was removed each time it was created ({OPEN_OR_CREATE_ATTEMPTS} times): \
                 another program keeps deleting it"
            )),
        })
    }

    /// Checks the header in `map` (read atomically) and the mapping's length, and wraps it.
    fn from_map(map: MmapRaw, path: &Path) -> Result<Self> {
        let found = map.len();
        if found < DATA {
            return Err(not_shared(path, format!("{found} bytes, shorter than the {DATA}-byte header")));
        }
        let mut header = [0u8; DATA];
        for (w, bytes) in header.chunks_exact_mut(8).enumerate() {
            bytes.copy_from_slice(&word(&map, 8 * w).load(Ordering::Acquire).to_ne_bytes());
        }
        let (tag, shape) = decode_header(&header).map_err(|reason| not_shared(path, reason))?;
        if tag != T::TAG {
            return Err(Error::TypeMismatch {
                path: path.to_path_buf(),
                expected: format!("elements of {}", T::NAME),
                found: format!("elements of {}", element_name(tag)),
            });
        }
        let Some((len, expected)) =
            shape::element_count(&shape).ok().and_then(|len| Some((len, store_size(len)?)))
        else {
            return Err(not_shared(path, format!("its header claims shape {shape:?}, larger than any file")));
        };
        if found != expected {
            return Err(Error::SizeMismatch {
                path: path.to_path_buf(),
                shape,
                expected: expected as u64,
                found: found as u64,
            });
        }
        Ok(SharedArray { map, path: path.to_path_buf(), len, shape, created: false, _elements: PhantomData })
    }

    fn cell(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.len, "index {i} out of range for a shared array of {} elements", self.len);
        // `i < len` and `from_map` checked `DATA + 8 * len == map.len()`: no overflow.
        word(&self.map, DATA + 8 * i)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the store has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The shape recorded in the header.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The path the store was opened or created at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this handle created the store (with [`SharedArray::create`], or as the one
    /// winner of [`SharedArray::open_or_create`]) rather than opened an existing one.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Element `i`.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn get(&self, i: usize) -> T {
        T::from_bits(self.cell(i).load(Ordering::Acquire))
    }

    /// Stores `value` at `i`.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn set(&self, i: usize, value: T) {
        self.cell(i).store(value.to_bits(), Ordering::Release);
    }

    /// Adds `delta` to element `i` atomically (visible to every process); returns the
    /// previous value.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn fetch_add(&self, i: usize, delta: T) -> T {
        add_cell(self.cell(i), delta)
    }

    /// Writes the mapping to the file (for stores on a disk rather than `/dev/shm`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`].
    pub fn flush(&self) -> Result<()> {
        let _span =
            tracing::debug_span!("cereal_eat::SharedArray::flush", path = %self.path.display()).entered();
        self.map.flush().map_err(|source| Error::Io { path: self.path.clone(), source })
    }
}

/// The aligned 8-byte word at byte `at` of the mapping, as an atomic.
///
/// # Panics
///
/// If the word is not wholly inside the mapping or not 8-aligned (a bug in this module).
fn word(map: &MmapRaw, at: usize) -> &AtomicU64 {
    assert!(at.is_multiple_of(8) && at < map.len() && map.len() - at >= 8, "word {at} outside the mapping");
    let ptr = map.as_mut_ptr().wrapping_add(at).cast::<u64>();
    // SAFETY: the word lies inside the mapping (asserted above), which lives as long as
    // `map`; it is 8-aligned (the mapping is page-aligned and `at` a multiple of 8); and
    // every access to it, in this or any other process, is atomic (`SharedArray` docs,
    // "Why this is sound"). The pointer is the mapping's own raw pointer (`MmapRaw` never
    // hands out a `&[u8]`), so writing through it is allowed; a pointer taken from a
    // shared slice, as this code had before issue 13, is a write through a frozen borrow,
    // which Miri reports. Caught (under Miri, over anonymous mappings) by
    // `miri_cells_stay_inside_the_mapping` and
    // `miri_crafted_headers_never_reach_past_the_mapping`, and on real files by
    // `open_refuses_every_crafted_header_that_does_not_fit` in tests/shapes.rs.
    unsafe { AtomicU64::from_ptr(ptr) }
}

/// Maps `file` read-write, shared. `MmapRaw` gives only raw pointers, never a slice: the
/// bytes may change under us at any time (other processes write them).
fn map_file(path: &Path, file: &File) -> Result<MmapRaw> {
    MmapRaw::map_raw(file).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// The element type a header's tag stands for (the tags of `AtomicElement`).
fn element_name(tag: u32) -> String {
    const NAMES: [&str; 10] = ["u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "f32", "f64"];
    let name = tag.checked_sub(1).and_then(|i| NAMES.get(i as usize));
    name.map_or_else(|| format!("an unknown type (tag {tag})"), |name| (*name).to_string())
}

fn not_shared(path: &Path, reason: String) -> Error {
    Error::NotShared { path: path.to_path_buf(), reason }
}

/// Bytes of a store of `len` elements, if that fits in an `isize` (the most a mapping,
/// or any Rust allocation, can hold).
fn store_size(len: usize) -> Option<usize> {
    len.checked_mul(8)?.checked_add(DATA).filter(|&b| isize::try_from(b).is_ok())
}

/// Bytes of a new store of `shape`, every step checked.
fn new_store_size(shape: &[usize]) -> Result<usize> {
    if shape.is_empty() || shape.len() > MAX_DIMS {
        return Err(Error::Shape {
            reason: format!("a shared store has 1 to {MAX_DIMS} dimensions, not {}", shape.len()),
        });
    }
    let len = shape::element_count(shape)?;
    store_size(len).ok_or_else(|| Error::Shape {
        reason: format!(
            "shape {shape:?} holds {len} elements, which need more than isize::MAX bytes (8 per \
             element and a {DATA}-byte header); no file can be mapped that large"
        ),
    })
}

/// The directory and temporary-name prefix for building the store at `path`.
fn temp_place(path: &Path) -> std::io::Result<(&Path, OsString)> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path does not end in a file name")
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // Short enough, in bytes, that prefix, random part and suffix stay within NAME_MAX (255
    // bytes), whatever the width of the name's characters.
    let mut short = String::new();
    for c in name.to_string_lossy().chars() {
        if short.len() + c.len_utf8() > 64 {
            break;
        }
        short.push(c);
    }
    Ok((dir, OsString::from(format!(".{short}."))))
}

fn encode_header(tag: u32, shape: &[usize]) -> [u8; DATA] {
    let mut header = [0u8; DATA];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&tag.to_le_bytes());
    header[16..20].copy_from_slice(&(shape.len() as u32).to_le_bytes());
    for (i, d) in shape.iter().enumerate() {
        header[24 + 8 * i..32 + 8 * i].copy_from_slice(&(*d as u64).to_le_bytes());
    }
    header
}

/// The element tag and shape in `header`, or why it is not a store's header.
fn decode_header(header: &[u8; DATA]) -> std::result::Result<(u32, Vec<usize>), String> {
    let u32_at = |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    if header[0..8] != MAGIC {
        return Err("no CEREALSH magic at the start".into());
    }
    let (version, tag, dims) = (u32_at(8), u32_at(12), u32_at(16) as usize);
    if version != VERSION {
        return Err(format!("format version {version}, this build reads {VERSION}"));
    }
    if dims == 0 || dims > MAX_DIMS {
        return Err(format!("its header claims {dims} dimensions, not 1 to {MAX_DIMS}"));
    }
    if u32_at(20) != 0
        || (dims..MAX_DIMS).any(|i| u64_at(24 + 8 * i) != 0)
        || header[24 + 8 * MAX_DIMS..].iter().any(|&b| b != 0)
    {
        return Err("bytes of its header that must be zero are not".into());
    }
    (0..dims)
        .map(|i| {
            let d = u64_at(24 + 8 * i);
            usize::try_from(d).map_err(|_| format!("dimension {i} is {d}, more than this platform can count"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(|shape| (tag, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in anonymous memory (Miri cannot map files) holding `header`, `len` bytes.
    fn anonymous<T: AtomicElement>(header: &[u8], len: usize) -> Result<SharedArray<T>> {
        let mut map = memmap2::MmapMut::map_anon(len).unwrap();
        let n = header.len().min(len);
        map[..n].copy_from_slice(&header[..n]);
        SharedArray::from_map(map.into(), Path::new("<anonymous>"))
    }

    #[test]
    fn miri_cells_stay_inside_the_mapping() {
        let a: SharedArray<i64> = anonymous(&encode_header(i64::TAG, &[3, 5]), DATA + 8 * 15).unwrap();
        assert_eq!((a.len(), a.shape()), (15, &[3usize, 5][..]));
        for i in 0..15 {
            a.set(i, -(i as i64));
            assert_eq!(a.fetch_add(i, 10), -(i as i64));
        }
        assert_eq!((0..15).map(|i| a.get(i)).sum::<i64>(), 150 - 105);
        assert!(std::panic::catch_unwind(|| a.get(15)).is_err());
        assert!(std::panic::catch_unwind(|| a.set(usize::MAX, 0)).is_err());
        let empty: SharedArray<u8> = anonymous(&encode_header(u8::TAG, &[0, 7]), DATA).unwrap();
        assert!(empty.is_empty());
        assert!(std::panic::catch_unwind(|| empty.get(0)).is_err());
    }

    #[test]
    fn miri_the_issue_shapes_are_refused() {
        // (1 << 61) + 1 cells: 8 * len wraps to 8, so DATA + 8 * len was 136 bytes.
        assert!(matches!(new_store_size(&[(1 << 61) + 1]), Err(Error::Shape { .. })));
        assert!(matches!(new_store_size(&[usize::MAX]), Err(Error::Shape { .. })));
        assert!(matches!(new_store_size(&[1 << 60]), Err(Error::Shape { .. })));
        assert!(matches!(new_store_size(&[6_148_914_691_236_517_208, 3]), Err(Error::Shape { .. })));
        assert!(matches!(new_store_size(&[1; 9]), Err(Error::Shape { .. })));
        assert!(matches!(new_store_size(&[]), Err(Error::Shape { .. })));
        assert_eq!(new_store_size(&[0]).unwrap(), DATA);
        // The same shapes in a crafted header over a 136-byte mapping.
        for shape in [&[(1usize << 61) + 1][..], &[usize::MAX], &[6_148_914_691_236_517_208, 3]] {
            let r = anonymous::<u64>(&encode_header(u64::TAG, shape), 136);
            assert!(matches!(r, Err(Error::NotShared { .. })), "{shape:?}: {r:?}");
        }
        // A header claiming 10_000_000 cells over a 136-byte mapping.
        let r = anonymous::<u64>(&encode_header(u64::TAG, &[10_000_000]), 136);
        assert!(matches!(r, Err(Error::SizeMismatch { expected: 80_000_128, found: 136, .. })), "{r:?}");
    }

    #[test]
    fn miri_crafted_headers_never_reach_past_the_mapping() {
        let shapes: [&[usize]; 10] = [
            &[0],
            &[1],
            &[3, 5],
            &[2, 0, 9],
            &[1, 1, 1, 1, 1, 1, 1, 16],
            &[(1 << 61) + 1],
            &[usize::MAX],
            &[6_148_914_691_236_517_208, 3],
            &[1 << 60],
            &[0, usize::MAX, usize::MAX],
        ];
        for shape in shapes {
            for map_len in [DATA, DATA + 8, DATA + 8 * 15, DATA + 8 * 15 + 1, DATA + 8 * 16, 512] {
                let Ok(a) = anonymous::<u16>(&encode_header(u16::TAG, shape), map_len) else { continue };
                assert_eq!(DATA + 8 * a.len(), map_len, "{shape:?} over {map_len} bytes");
                for i in 0..a.len() {
                    a.fetch_add(i, 1);
                    assert_eq!(a.get(i), 1);
                }
            }
        }
    }

    #[test]
    fn miri_a_data_area_of_the_wrong_size_names_both_sizes() {
        let r = anonymous::<f64>(&encode_header(f64::TAG, &[4, 4]), 248);
        let message = r.unwrap_err().to_string();
        assert!(message.contains("shape [4, 4]"), "{message}");
        assert!(message.contains("needs 256 bytes"), "{message}");
        assert!(message.contains("the file has 248 bytes"), "{message}");
        let r = anonymous::<f64>(&encode_header(f64::TAG, &[4, 4]), 264);
        assert!(matches!(r, Err(Error::SizeMismatch { expected: 256, found: 264, .. })));
    }

    #[test]
    fn miri_headers_round_trip_and_junk_is_refused() {
        let header = encode_header(f32::TAG, &[2, 0, 9]);
        assert_eq!(decode_header(&header), Ok((f32::TAG, vec![2, 0, 9])));
        let mut bad = header;
        bad[0] ^= 1;
        assert!(decode_header(&bad).is_err(), "magic");
        for (at, value) in [(8, 2u8), (16, 0), (16, 9), (20, 1), (24 + 8 * 3, 1), (127, 1)] {
            let mut bad = header;
            bad[at] = value;
            assert!(decode_header(&bad).is_err(), "byte {at} = {value}");
        }
        let r = anonymous::<f32>(&header[..64], 64);
        assert!(matches!(r, Err(Error::NotShared { .. })), "{r:?}");
        let r = anonymous::<u32>(&header, DATA);
        assert!(matches!(r, Err(Error::TypeMismatch { .. })), "{r:?}");
        assert!(
            r.unwrap_err().to_string().contains("holds elements of f32, but was opened as elements of u32")
        );
        fn named<T: AtomicElement>() -> bool {
            element_name(T::TAG) == T::NAME
        }
        assert!(named::<u8>() && named::<u16>() && named::<u32>() && named::<u64>() && named::<i8>());
        assert!(named::<i16>() && named::<i32>() && named::<i64>() && named::<f32>() && named::<f64>());
        assert_eq!(element_name(0), "an unknown type (tag 0)");
    }

    #[test]
    fn temporary_names_stay_short_and_hidden() {
        let long = "x".repeat(300);
        let (dir, prefix) = temp_place(Path::new(&long)).unwrap();
        assert_eq!(dir, Path::new("."));
        assert_eq!(prefix.len(), 66);
        assert!(temp_place(Path::new("/")).is_err());
        assert!(temp_place(Path::new("a/..")).is_err());
        // Wide characters are counted in bytes: a 240-byte name of 4-byte characters.
        let wide = "\u{1F600}".repeat(60);
        let (_, prefix) = temp_place(Path::new(&wide)).unwrap();
        assert!(prefix.len() <= 66, "{} bytes", prefix.len());
    }

    #[test]
    fn open_or_create_refuses_a_dangling_symlink_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        let err = SharedArray::<u64>::open_or_create(&link, &[4]).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary files left");
    }
}

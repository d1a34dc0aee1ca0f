//! [`SharedArray`]: an array in a shared file mapping that several processes open by name
//! and update in place: the "distributed systems with shared memory spaces" of the seed.
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
//! 128  8 * N   elements, one 64-bit cell each
//! ```
//!
//! # Why this is sound
//!
//! Another process may write any cell at any time, so this module never creates a plain
//! `&[u64]` or `&mut` over the mapping: every access is an atomic operation on one aligned
//! 8-byte cell (`AtomicU64::from_ptr`), which is exactly what concurrent access from other
//! processes requires. The file is never truncated while mapped by us; a process that
//! truncates it anyway would make accesses fault (SIGBUS), which is documented on
//! [`SharedArray::create`].

use std::fs::OpenOptions;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapMut;

use crate::atomic::{AtomicElement, add_cell};
use crate::error::{Error, Result};

const MAGIC: [u8; 8] = *b"CEREALSH";
const VERSION: u32 = 1;
const DATA: usize = 128;
const MAX_DIMS: usize = 8;

/// A fixed-shape array of numbers in a file mapping shared between processes (put the
/// file in `/dev/shm` for memory without disk traffic). Every access is atomic.
pub struct SharedArray<T> {
    map: MmapMut,
    path: PathBuf,
    len: usize,
    shape: Vec<usize>,
    _elements: PhantomData<T>,
}

impl<T> std::fmt::Debug for SharedArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedArray").field("path", &self.path).field("shape", &self.shape).finish()
    }
}

impl<T: AtomicElement> SharedArray<T> {
    /// Creates (or replaces) the store at `path` with `shape`, all elements zero.
    ///
    /// Processes that use the store must not truncate or rewrite the file while it is
    /// mapped (that would make accesses fault); open it only through this type.
    ///
    /// # Errors
    ///
    /// [`Error::Shape`] for an empty or too-deep shape; [`Error::Io`].
    pub fn create(path: impl AsRef<Path>, shape: &[usize]) -> Result<Self> {
        let path = path.as_ref();
        if shape.is_empty() || shape.len() > MAX_DIMS {
            return Err(Error::Shape {
                reason: format!("a shared store has 1 to {MAX_DIMS} dimensions, not {}", shape.len()),
            });
        }
        let len = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| Error::Shape { reason: "too many elements".into() })?;
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).map_err(io)?;
        file.set_len((DATA + 8 * len) as u64).map_err(io)?;
        let mut header = [0u8; DATA];
        header[0..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&T::TAG.to_le_bytes());
        header[16..20].copy_from_slice(&(shape.len() as u32).to_le_bytes());
        for (i, d) in shape.iter().enumerate() {
            header[24 + 8 * i..32 + 8 * i].copy_from_slice(&(*d as u64).to_le_bytes());
        }
        std::os::unix::fs::FileExt::write_all_at(&file, &header, 0).map_err(io)?;
        Self::map(path, &file, len, shape.to_vec())
    }

    /// Opens the store at `path`, created by [`SharedArray::create`] in this or another
    /// process, checking the element type and shape.
    ///
    /// # Errors
    ///
    /// [`Error::NotShared`] for a foreign file; [`Error::TypeMismatch`] for another
    /// element type; [`Error::Io`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len() as usize;
        let mut header = [0u8; DATA];
        if size < DATA
            || std::os::unix::fs::FileExt::read_exact_at(&file, &mut header, 0).is_err()
            || header[0..8] != MAGIC
        {
            return Err(Error::NotShared { path: path.to_path_buf() });
        }
        let u32_at =
            |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        let (version, tag, dims) = (u32_at(8), u32_at(12), u32_at(16) as usize);
        if version != VERSION || dims == 0 || dims > MAX_DIMS {
            return Err(Error::NotShared { path: path.to_path_buf() });
        }
        if tag != T::TAG {
            return Err(Error::TypeMismatch {
                path: path.to_path_buf(),
                expected: format!("elements of {}", T::NAME),
                found: format!("element tag {tag}"),
            });
        }
        let shape: Vec<usize> = (0..dims)
            .map(|i| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&header[24 + 8 * i..32 + 8 * i]);
                u64::from_le_bytes(b) as usize
            })
            .collect();
        let len = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        match len {
            Some(len) if DATA + 8 * len == size => Self::map(path, &file, len, shape),
            _ => Err(Error::TypeMismatch {
                path: path.to_path_buf(),
                expected: format!("a file of {size} bytes"),
                found: format!("shape {shape:?}"),
            }),
        }
    }

    fn map(path: &Path, file: &std::fs::File, len: usize, shape: Vec<usize>) -> Result<Self> {
        // SAFETY: the mapping may change under us (other processes write it): see the
        // module docs, "Why this is sound": we only ever access it through atomics on
        // aligned cells, never through plain references.
        let map = unsafe { MmapMut::map_mut(file) }
            .map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Ok(SharedArray { map, path: path.to_path_buf(), len, shape, _elements: PhantomData })
    }

    fn cell(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.len, "index {i} out of range for a shared array of {} elements", self.len);
        let ptr = self.map.as_ptr().wrapping_add(DATA + 8 * i).cast_mut().cast::<u64>();
        // SAFETY: the cell lies inside the mapping (checked above), which lives as long as
        // `&self`; it is 8-aligned (the mapping is page-aligned, DATA is a multiple of 8);
        // and every access to it, in this or any other process, is atomic (module docs).
        unsafe { AtomicU64::from_ptr(ptr) }
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
        self.map.flush().map_err(|source| Error::Io { path: self.path.clone(), source })
    }
}

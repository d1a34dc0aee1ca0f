//! One store file: its lock, its free space and its read-only mapping; the header slots'
//! layout is in [`crate::header`].
//!
//! # Layout
//!
//! ```text
//! 0     4096  header slot A
//! 4096  4096  header slot B
//! 8192  ..    extents (pages and the root), each at a multiple of 64 bytes
//! ```
//!
//! # Why the mapping is sound
//!
//! memmap2 documents that a mapping is undefined behaviour to read if the file changes
//! underneath it. Three rules keep that from happening (the same rules redb could not prove
//! for its general B-tree, but which hold for our copy-on-write extents):
//! 1. The file is locked exclusively (`File::try_lock`) for as long as it is open, so no
//!    cooperating process writes it.
//! 2. Writes only go to extents the allocator hands out, which no live page or root refers
//!    to, and writes need `&mut self`, so no borrowed page can exist at the time.
//! 3. The file only ever grows while mapped; it is never truncated.
//!
//! Mapped bytes are still untrusted: every extent's checksum (and each record's rkyv
//! validation) is checked before a record is accessed without checks.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::{Advice, Mmap};

use crate::error::{Activity, Error, Result};
use crate::extent::{Extent, Extents};
use crate::header::{
    DATA_START, Header, HeaderFallback, Identity, Kind, encode_slot, read_header, slot_offset, truncate_label,
};

/// Extents at least this long are prefetched as a whole before a full read.
const WILLNEED_MIN: usize = 16 << 10;
/// Growth step of the file (and of the mapping).
const GROW_MIN: u64 = 1 << 16;

/// The file, locked and mapped.
#[derive(Debug)]
pub(crate) struct StoreFile {
    path: PathBuf,
    file: File,
    map: Mmap,
    kind: Kind,
    /// The type identity, as written into each new header slot (cut to `header::MAX_LABEL`).
    label: String,
    fingerprint: u64,
    header: Header,
    fallback: Option<HeaderFallback>,
    extents: Extents,
}

/// XXH3-64, the checksum of every extent and header slot.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

impl StoreFile {
    /// Opens (creating if missing) and locks the store at `path`, holding the types named by
    /// `identity`. The caller must then call [`StoreFile::set_live`] with the extents its
    /// root refers to, before allocating.
    pub(crate) fn open(path: &Path, kind: Kind, identity: &Identity) -> Result<Self> {
        let label = truncate_label(&identity.current);
        let fingerprint = checksum(identity.current.as_bytes());
        let file = open_or_create_locked(path, kind, &label, fingerprint)?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let (header, fallback) = read_header(&file, path, len, kind, identity)?;
        let map = map(&file, path)?;
        Ok(StoreFile {
            path: path.to_path_buf(),
            file,
            map,
            kind,
            label,
            fingerprint,
            header,
            fallback,
            extents: Extents::default(),
        })
    }

    /// Set if the store opened from its older header slot; see [`HeaderFallback`].
    pub(crate) fn fallback(&self) -> Option<&HeaderFallback> {
        self.fallback.as_ref()
    }

    /// The file's length in bytes (it only ever grows).
    pub(crate) fn len(&self) -> u64 {
        self.map.len() as u64
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Which structure the store holds.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// Records which extents the current root refers to (the root itself included), so the
    /// rest of the file becomes free space. Overlaps mean a corrupt root.
    pub(crate) fn set_live(&mut self, live: impl Iterator<Item = Extent>) -> Result<()> {
        let root = self.header.root;
        let ranges = live.chain((root.len > 0).then_some(root)).map(|e| (e.offset, e.footprint())).collect();
        self.extents = Extents::from_live(DATA_START, ranges).map_err(|e| Error::corrupt(&self.path, e))?;
        if self.extents.end() > self.map.len() as u64 {
            return Err(Error::corrupt(&self.path, "an extent lies past the end of the file"));
        }
        Ok(())
    }

    /// The bytes of an extent, after checking that it is inside the file and that its
    /// checksum matches.
    pub(crate) fn read_checked(&self, extent: Extent) -> Result<&[u8]> {
        let bytes = self.read(extent)?;
        self.prefetch(extent);
        if checksum(bytes) != extent.checksum {
            return Err(Error::corrupt(
                &self.path,
                format!("checksum mismatch in the {} bytes at offset {}", extent.len, extent.offset),
            ));
        }
        Ok(bytes)
    }

    /// Says that the whole extent is about to be read, so the kernel reads it in one go:
    /// the mapping is advised random (see `map`) and would otherwise fault it in 4 KiB at a
    /// time. Advice only; an error or an extent outside the file changes nothing.
    pub(crate) fn prefetch(&self, extent: Extent) {
        if extent.len as usize >= WILLNEED_MIN
            && extent.offset.saturating_add(extent.len) <= self.map.len() as u64
        {
            let _ = self.map.advise_range(Advice::WillNeed, extent.offset as usize, extent.len as usize);
        }
    }

    /// The bytes of an extent, bounds-checked but not checksummed.
    pub(crate) fn read(&self, extent: Extent) -> Result<&[u8]> {
        let range = usize::try_from(extent.offset)
            .ok()
            .zip(usize::try_from(extent.len).ok())
            .and_then(|(offset, len)| Some(offset..offset.checked_add(len)?))
            .filter(|r| r.start as u64 >= DATA_START && r.end <= self.map.len());
        match range {
            Some(range) => Ok(&self.map[range]),
            None => Err(Error::corrupt(
                &self.path,
                format!("extent {}+{} lies outside the file", extent.offset, extent.len),
            )),
        }
    }

    /// Writes `bytes` to free space and returns its extent (not yet durable).
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<Extent> {
        let offset = self.extents.allocate(bytes.len() as u64);
        let extent = Extent { offset, len: bytes.len() as u64, checksum: checksum(bytes) };
        let written = self
            .ensure_capacity(self.extents.end())
            .and_then(|()| self.file.write_all_at(bytes, offset).map_err(|e| Error::io(&self.path, e)));
        if let Err(e) = written {
            self.extents.release(extent);
            return Err(e);
        }
        Ok(extent)
    }

    /// Gives an extent back (reused only once no durable header can refer to it).
    pub(crate) fn release(&mut self, extent: Extent) {
        self.extents.release(extent);
    }

    /// Makes `root` (and every extent written before) durable: write the root, sync the data,
    /// write the header into the older slot, sync again. A crash at any point leaves either
    /// the old or the new header current, each complete.
    pub(crate) fn commit(&mut self, root: &[u8], entries: u64) -> Result<()> {
        let root = self.write(root)?;
        let header = Header { generation: self.header.generation + 1, root, entries, ..self.header };
        let slot = encode_slot(self.kind, &self.label, self.fingerprint, &header);
        let synced = self
            .file
            .sync_data()
            .and_then(|()| self.file.write_all_at(&slot, slot_offset(header.generation)))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e));
        if let Err(e) = synced {
            self.extents.release(root);
            return Err(e);
        }
        let old_root = std::mem::replace(&mut self.header, header).root;
        self.extents.release(old_root);
        self.extents.committed();
        Ok(())
    }

    /// Grows the file (and the mapping) to hold `end` bytes. Never shrinks.
    fn ensure_capacity(&mut self, end: u64) -> Result<()> {
        let current = self.map.len() as u64;
        if end <= current {
            return Ok(());
        }
        let target = end.max(current + current / 2).max(current + GROW_MIN).next_multiple_of(1 << 16);
        self.file.set_len(target).map_err(|e| Error::io(&self.path, e))?;
        self.map = map(&self.file, &self.path)?;
        Ok(())
    }
}

/// Maps the whole file read-only.
fn map(file: &File, path: &Path) -> Result<Mmap> {
    // SAFETY: see the module docs, "Why the mapping is sound": the file is locked by us for the
    // life of the mapping, only grows, and is written (through `write_all_at`) only in extents
    // no borrowed page refers to, since writing takes `&mut StoreFile`. The tests
    // `crash::*`, `corruption::*` and `lock::*` exercise these rules.
    let map = unsafe { Mmap::map(file) }.map_err(|e| Error::io(path, e))?;
    // Point reads touch one or two 4 KiB pages of a page (its hash array, then one record).
    // Without this, each fault reads ahead tens of KiB that a store larger than memory
    // evicts again at once (the readahead thrashing that sinks LMDB out of core). Whole
    // extents are asked for explicitly (`read_checked`). Advice only; an error changes nothing.
    let _ = map.advise(Advice::Random);
    Ok(map)
}

/// Opens the store file at `path`, creating it if it is missing, and locks it.
///
/// This is the one place that decides who owns a store, so it must hold against any number
/// of threads and processes opening the same path at once (`tests/open_race.rs`):
/// - A new file is made complete under a unique temporary name and then *linked* into
///   place, which fails if the path exists ([`tempfile`]'s `persist_noclobber`). A file at
///   `path` is therefore never replaced, and never seen half-made.
/// - The lock (`flock`) belongs to the inode we opened. If the path names another inode by
///   the time we hold the lock (a user deleted and recreated the store meanwhile), we let go
///   and open again, so the lock we return is on the file that other openers will find.
fn open_or_create_locked(path: &Path, kind: Kind, label: &str, fingerprint: u64) -> Result<File> {
    // Each retry means another party changed the path between our open and our lock; a
    // handful of them in a row is a file being deleted and recreated in a loop.
    for _ in 0..64 {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create(path, kind, label, fingerprint)?;
                continue;
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: path.into() }),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
        if same_inode(&file, path)? {
            return Ok(file);
        }
    }
    Err(Error::Locked { path: path.into() })
}

/// Whether `path` still names the inode `file` has open (`false` if it is gone).
fn same_inode(file: &File, path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let ours = file.metadata().map_err(|e| Error::io(path, e))?;
    match std::fs::metadata(path) {
        Ok(now) => Ok(now.dev() == ours.dev() && now.ino() == ours.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Creates a new store file atomically: written and synced under a unique temporary name,
/// linked into place only if `path` does not exist yet, then the folder is synced, so a
/// crash never leaves a half-made store and a racing creator never replaces ours. Losing
/// the race is not an error: the caller then opens the winner's file.
fn create(path: &Path, kind: Kind, label: &str, fingerprint: u64) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let prefix = format!(".{}.creating-", path.file_name().and_then(|n| n.to_str()).unwrap_or("store"));
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .tempfile_in(dir)
        .map_err(|e| Error::io_during(path, e, Activity::Creating))?;
    let first = Header::new_store();
    let file = tmp.as_file();
    // Generation 1 goes where generation 1 belongs (slot B), so the first flush (generation
    // 2, slot A) leaves it intact to fall back on.
    file.write_all_at(&encode_slot(kind, label, fingerprint, &first), slot_offset(first.generation))
        .and_then(|()| file.set_len(DATA_START))
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io_during(path, e, Activity::Creating))?;
    match tmp.persist_noclobber(path) {
        Ok(_) => sync_dir(path).map_err(|e| Error::io_during(path, e, Activity::Creating)),
        // Another opener created it first; `tmp` is removed as the error drops it.
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io_during(path, e.error, Activity::Creating)),
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

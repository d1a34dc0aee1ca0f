//! One store file: its lock, its two header slots, its free space and its read-only mapping.
//!
//! # Layout
//!
//! ```text
//! 0     4096  header slot A
//! 4096  4096  header slot B
//! 8192  ..    extents (pages and the root), each at a multiple of 64 bytes
//! ```
//!
//! A header slot (all integers little-endian), format 2:
//!
//! ```text
//! 0     8  magic "SPDPAGED"
//! 8     4  format version (2; format 1 is read and migrated on the next flush)
//! 12    4  kind: 1 = DiskDict, 2 = DiskList
//! 16    4  key hash algorithm (1 = XXH3-64, with the seed below, of the little-endian Hash stream)
//! 20    4  length of the type identity text stored below
//! 24    8  generation (the slot with the larger valid generation is current)
//! 32    8  type fingerprint (XXH3-64 of the whole type identity text)
//! 40   24  root extent: offset, length, XXH3-64 checksum
//! 64    8  number of entries
//! 72    8  key hash seed (random per store, fixed for its life; 0 in format 1)
//! 80    4  flags: bit 0 = the dict's directory depth is capped (stores created by format 2)
//! 84    4  zero
//! 88    ..  type identity, UTF-8, cut to 4000 bytes (for messages; the fingerprint decides)
//! 4088  8  XXH3-64 of bytes 0..4088
//! ```
//!
//! Format 1 has no seed field: its type label (`type_name`-based) starts at byte 72.
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

use memmap2::Mmap;

use crate::error::{Activity, Error, Result};
use crate::extent::{Extent, Extents};
use crate::hash::HASH_ALGORITHM;
use crate::le::{u32_at, u64_at};

const MAGIC: [u8; 8] = *b"SPDPAGED";
/// The on-disk format this build writes.
pub(crate) const FORMAT_VERSION: u32 = 2;
/// The format before the structural type identity and the per-store hash seed; still read.
const FORMAT_1: u32 = 1;
const SLOT: u64 = 4096;
const SLOT_CHECKSUM_AT: usize = 4088;
const SEED_AT: usize = 72;
const FLAGS_AT: usize = 80;
const LABEL_AT: usize = 88;
/// Header flag: the store was created with the dict directory's depth cap in force, so
/// its directory may be checked against that cap on open (migrated stores are not).
pub(crate) const FLAG_DEPTH_CAPPED: u32 = 1;
const LABEL_AT_FORMAT_1: usize = 72;
const MAX_LABEL: usize = 4000;
/// Where the first extent may start.
pub(crate) const DATA_START: u64 = 2 * SLOT;
/// Growth step of the file (and of the mapping).
const GROW_MIN: u64 = 1 << 16;

/// Which structure a store file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dict = 1,
    List = 2,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Dict => "DiskDict",
            Kind::List => "DiskList",
        }
    }
}

/// The current header.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub(crate) generation: u64,
    pub(crate) root: Extent,
    pub(crate) entries: u64,
    /// Seed of the key hash (see [`crate::hash`]).
    pub(crate) hash_seed: u64,
    /// `FLAG_*` bits.
    pub(crate) flags: u32,
}

/// The type identity an opener brings, in both the current and the format-1 form.
#[derive(Debug)]
pub(crate) struct Identity {
    /// Structural: `DiskDict<schema of K, schema of V>` (see [`crate::schema`]).
    pub(crate) current: String,
    /// What format 1 recorded for the same types (`type_name`-based).
    pub(crate) format_1: String,
}

/// The newest header slot was damaged and the store opened from the older one: whatever the
/// last flush wrote is not in the store. A crash while a header was being written does this
/// by design (that flush never returned `Ok`); a bit flip afterwards does it to a flush that
/// did. Reported by `DiskDict::header_fallback` / `DiskList::header_fallback` and logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderFallback {
    /// The byte offset of the damaged slot in the file (0 or 4096).
    pub damaged_slot_offset: u64,
    /// The generation (number of flushes) of the header the store opened from.
    pub opened_generation: u64,
}

/// The file, locked and mapped.
#[derive(Debug)]
pub(crate) struct StoreFile {
    path: PathBuf,
    file: File,
    map: Mmap,
    kind: Kind,
    /// The type identity, as written into each new header slot (cut to [`MAX_LABEL`]).
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

    pub(crate) fn path(&self) -> &Path {
        &self.path
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
        if checksum(bytes) != extent.checksum {
            return Err(Error::corrupt(
                &self.path,
                format!("checksum mismatch in the {} bytes at offset {}", extent.len, extent.offset),
            ));
        }
        Ok(bytes)
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
            .and_then(|()| self.file.write_all_at(&slot, (header.generation % 2) * SLOT))
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
    unsafe { Mmap::map(file) }.map_err(|e| Error::io(path, e))
}

fn truncate_label(label: &str) -> String {
    if label.len() <= MAX_LABEL {
        return label.to_string();
    }
    let mut cut = MAX_LABEL;
    while !label.is_char_boundary(cut) {
        cut -= 1;
    }
    label[..cut].to_string()
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
    let first = Header {
        generation: 1,
        root: Extent::default(),
        entries: 0,
        hash_seed: random_seed(),
        flags: FLAG_DEPTH_CAPPED,
    };
    let file = tmp.as_file();
    file.write_all_at(&encode_slot(kind, label, fingerprint, &first), 0)
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

/// A seed for a new store's key hash: unpredictable, so that keys cannot be crafted to
/// collide in a store (std's `RandomState` draws its keys from the operating system).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

fn encode_slot(kind: Kind, label: &str, fingerprint: u64, header: &Header) -> Vec<u8> {
    let mut slot = vec![0u8; SLOT as usize];
    slot[0..8].copy_from_slice(&MAGIC);
    slot[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    slot[12..16].copy_from_slice(&(kind as u32).to_le_bytes());
    slot[16..20].copy_from_slice(&HASH_ALGORITHM.to_le_bytes());
    slot[20..24].copy_from_slice(&(label.len() as u32).to_le_bytes());
    slot[24..32].copy_from_slice(&header.generation.to_le_bytes());
    slot[32..40].copy_from_slice(&fingerprint.to_le_bytes());
    slot[40..48].copy_from_slice(&header.root.offset.to_le_bytes());
    slot[48..56].copy_from_slice(&header.root.len.to_le_bytes());
    slot[56..64].copy_from_slice(&header.root.checksum.to_le_bytes());
    slot[64..72].copy_from_slice(&header.entries.to_le_bytes());
    slot[SEED_AT..SEED_AT + 8].copy_from_slice(&header.hash_seed.to_le_bytes());
    slot[FLAGS_AT..FLAGS_AT + 4].copy_from_slice(&header.flags.to_le_bytes());
    slot[LABEL_AT..LABEL_AT + label.len()].copy_from_slice(label.as_bytes());
    let sum = checksum(&slot[..SLOT_CHECKSUM_AT]);
    slot[SLOT_CHECKSUM_AT..].copy_from_slice(&sum.to_le_bytes());
    slot
}

/// What one slot holds, if its checksum is right.
struct Slot {
    format: u32,
    kind: u32,
    hash: u32,
    fingerprint: u64,
    label: String,
    header: Header,
}

fn decode_slot(b: &[u8]) -> Option<Slot> {
    if b[0..8] != MAGIC || u64_at(b, SLOT_CHECKSUM_AT) != checksum(&b[..SLOT_CHECKSUM_AT]) {
        return None;
    }
    let format = u32_at(b, 8);
    let (label_at, hash_seed, flags) = if format == FORMAT_1 {
        (LABEL_AT_FORMAT_1, 0, 0)
    } else {
        (LABEL_AT, u64_at(b, SEED_AT), u32_at(b, FLAGS_AT))
    };
    let label_len = (u32_at(b, 20) as usize).min(MAX_LABEL);
    Some(Slot {
        format,
        kind: u32_at(b, 12),
        hash: u32_at(b, 16),
        fingerprint: u64_at(b, 32),
        label: String::from_utf8_lossy(&b[label_at..label_at + label_len]).into_owned(),
        header: Header {
            generation: u64_at(b, 24),
            root: Extent { offset: u64_at(b, 40), len: u64_at(b, 48), checksum: u64_at(b, 56) },
            entries: u64_at(b, 64),
            hash_seed,
            flags,
        },
    })
}

/// Reads both slots and returns the current header, after checking it fits this opener,
/// and whether the newest slot was damaged (see [`HeaderFallback`]).
fn read_header(
    file: &File,
    path: &Path,
    len: u64,
    kind: Kind,
    identity: &Identity,
) -> Result<(Header, Option<HeaderFallback>)> {
    if len < DATA_START {
        return Err(if len < 8 || !starts_with_magic(file) {
            Error::NotAStore { path: path.into() }
        } else {
            Error::corrupt(path, format!("the file is {len} bytes, shorter than its two header slots"))
        });
    }
    let mut slots = vec![0u8; DATA_START as usize];
    file.read_exact_at(&mut slots, 0).map_err(|e| Error::io(path, e))?;
    let (a, b) = slots.split_at(SLOT as usize);
    // A slot that was never written is all zeros (slot B until the second flush); any other
    // slot that fails to decode was torn or damaged.
    let damaged = |bytes: &[u8]| bytes.iter().any(|&x| x != 0);
    let (slot_a, slot_b) = (decode_slot(a), decode_slot(b));
    let (current, damaged_offset) = match (slot_a, slot_b) {
        (Some(a), Some(b)) => (if a.header.generation >= b.header.generation { a } else { b }, None),
        (Some(s), None) => (s, damaged(b).then_some(SLOT)),
        (None, Some(s)) => (s, damaged(a).then_some(0)),
        (None, None) if a[0..8] != MAGIC && b[0..8] != MAGIC => {
            return Err(Error::NotAStore { path: path.into() });
        }
        (None, None) => {
            return Err(Error::corrupt(path, "both header slots fail their checksum"));
        }
    };
    if current.format != FORMAT_VERSION && current.format != FORMAT_1 {
        return Err(Error::UnsupportedFormat {
            path: path.into(),
            found: current.format,
            supported: FORMAT_VERSION,
        });
    }
    if current.kind != kind as u32 {
        let found = if current.kind == Kind::Dict as u32 { Kind::Dict } else { Kind::List };
        return Err(Error::TypeMismatch {
            path: path.into(),
            expected: format!("a {}", kind.name()),
            found: format!("a {}", found.name()),
        });
    }
    if current.hash != HASH_ALGORITHM {
        return Err(Error::UnsupportedFormat {
            path: path.into(),
            found: current.hash,
            supported: HASH_ALGORITHM,
        });
    }
    let fits = if current.format == FORMAT_1 {
        current.fingerprint == checksum(truncate_label(&identity.format_1).as_bytes())
    } else {
        current.fingerprint == checksum(identity.current.as_bytes())
    };
    if !fits {
        let expected = if current.format == FORMAT_1 {
            format!(
                "{} (a format-1 store records type names; these types are named {})",
                identity.current, identity.format_1
            )
        } else {
            identity.current.clone()
        };
        return Err(Error::TypeMismatch { path: path.into(), expected, found: current.label });
    }
    let root = current.header.root;
    if root.len > 0
        && root.offset.checked_add(root.len).is_none_or(|end| root.offset < DATA_START || end > len)
    {
        return Err(Error::corrupt(path, "the root extent lies outside the file"));
    }
    let fallback = damaged_offset.map(|offset| {
        let report = HeaderFallback { damaged_slot_offset: offset, opened_generation: current.header.generation };
        tracing::warn!(
            path = %path.display(),
            damaged_slot_offset = offset,
            opened_generation = report.opened_generation,
            "store header slot is damaged (a torn write or a bit flip): opened from the previous flush; whatever the last flush wrote is not in the store"
        );
        report
    });
    Ok((current.header, fallback))
}

fn starts_with_magic(file: &File) -> bool {
    let mut m = [0; 8];
    file.read_exact_at(&mut m, 0).is_ok() && m == MAGIC
}

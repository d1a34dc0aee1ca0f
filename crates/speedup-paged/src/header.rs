//! The header: two 4096-byte slots at the start of a store file, each a complete,
//! checksummed description of the store (format, kind, types, key hash, root, entries).
//! A flush writes the older slot, so a torn write always leaves the other one intact.
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
//! 80    4  flags: none defined yet (zero)
//! 84    4  zero
//! 88    ..  type identity, UTF-8, cut to 4000 bytes (for messages; the fingerprint decides)
//! 4088  8  XXH3-64 of bytes 0..4088
//! ```
//!
//! Format 1 has no seed field: its type label (`type_name`-based) starts at byte 72.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::extent::Extent;
use crate::file::checksum;
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
const LABEL_AT_FORMAT_1: usize = 72;
const MAX_LABEL: usize = 4000;
/// Where the first extent may start: after both slots.
pub(crate) const DATA_START: u64 = 2 * SLOT;

/// Which structure a store file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dict = 1,
    List = 2,
}

impl Kind {
    /// The public type that holds this kind: `DiskDict` or `DiskList`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Dict => "DiskDict",
            Kind::List => "DiskList",
        }
    }

    /// The file name extension of this kind's stores.
    pub(crate) fn extension(self) -> &'static str {
        match self {
            Kind::Dict => crate::DICT_EXTENSION,
            Kind::List => crate::LIST_EXTENSION,
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

impl Header {
    /// The first header of a new store: generation 1, empty, a fresh random hash seed.
    pub(crate) fn new_store() -> Self {
        Header { generation: 1, root: Extent::default(), entries: 0, hash_seed: random_seed(), flags: 0 }
    }
}

/// Where the header of `generation` is written: the slots alternate, so a flush always
/// overwrites the older one.
pub(crate) fn slot_offset(generation: u64) -> u64 {
    (generation % 2) * SLOT
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

pub(crate) fn truncate_label(label: &str) -> String {
    if label.len() <= MAX_LABEL {
        return label.to_string();
    }
    let mut cut = MAX_LABEL;
    while !label.is_char_boundary(cut) {
        cut -= 1;
    }
    label[..cut].to_string()
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

pub(crate) fn encode_slot(kind: Kind, label: &str, fingerprint: u64, header: &Header) -> Vec<u8> {
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
pub(crate) fn read_header(
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
    let (slot_a, slot_b) = (decode_slot(a), decode_slot(b));
    let (current, damaged_offset) = match (slot_a, slot_b) {
        (Some(a), Some(b)) => (if a.header.generation >= b.header.generation { a } else { b }, None),
        (Some(s), None) => {
            let lost = may_have_been_newer(b, s.header.generation);
            (s, lost.then_some(SLOT))
        }
        (None, Some(s)) => {
            let lost = may_have_been_newer(a, s.header.generation);
            (s, lost.then_some(0))
        }
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
        let found = match current.kind {
            1 => Kind::Dict,
            2 => Kind::List,
            other => {
                return Err(Error::corrupt(
                    path,
                    format!(
                        "the header names store kind {other}, which is neither a DiskDict (1) nor a DiskList (2)"
                    ),
                ));
            }
        };
        return Err(Error::TypeMismatch {
            path: path.into(),
            expected: format!("a {}", kind.name()),
            found: format!("a {}", found.name()),
        });
    }
    if current.hash != HASH_ALGORITHM {
        return Err(Error::UnsupportedHash {
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

/// Whether a slot that fails to decode may have held a newer header than the valid one, of
/// generation `current`; if so, the last flush is not in the store.
fn may_have_been_newer(bytes: &[u8], current: u64) -> bool {
    if bytes.iter().all(|&x| x == 0) {
        // Never written: a new store has one blank slot until its second flush (generation 1
        // is in slot B; stores made before format 2 wrote it into slot A and flushed once
        // into A again). Past that, a blank slot was wiped.
        return current > 2;
    }
    // A damaged slot whose magic and generation field still read `current - 1` was the older
    // one, and nothing newer was lost. Anything else may have been `current + 1`.
    !(bytes[0..8] == MAGIC && u64_at(bytes, 24) == current.wrapping_sub(1))
}

fn starts_with_magic(file: &File) -> bool {
    let mut m = [0; 8];
    file.read_exact_at(&mut m, 0).is_ok() && m == MAGIC
}

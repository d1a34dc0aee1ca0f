//! Names and bytes in Redis: the namespace of one cache, its keys, and the framing that
//! lets a reader reject anything this cache did not write.
//!
//! ```text
//! value key   speedup:<name>:<fingerprint>:v:<rkyv bytes of K>
//! lease key   speedup:<name>:<fingerprint>:l:<rkyv bytes of K>
//! waiters     speedup:<name>:<fingerprint>:w:<rkyv bytes of K>   (set while a worker waits)
//! channel     speedup:<name>:<fingerprint>:done
//! value       "SPC2" | 4 zero bytes | fingerprint u64 LE | XXH3-64 of the value key's name u64 LE
//!             | XXH3-64 of the archive u64 LE | rkyv archive of V
//! ```
//!
//! The fingerprint is XXH3-64 of the key and value type names, their archived sizes and
//! alignments, and the user's version: two programs, or two versions of one, never read
//! each other's values. rkyv zeroes padding, so equal keys give equal bytes. The hash of
//! the value key's name ties a value to its key: a value copied or renamed to another key
//! is rejected, not returned as that key's value.

use speedup_paged::Storable;
use speedup_paged::rkyv::{self, rancor, util::AlignedVec};
use xxhash_rust::xxh3::xxh3_64;

const MAGIC: &[u8; 4] = b"SPC2";
const HEADER: usize = 32;

/// The Redis names of one cache.
#[derive(Debug, Clone)]
pub(super) struct Namespace {
    prefix: Vec<u8>,
    pub(super) fingerprint: u64,
    pub(super) channel: String,
}

impl Namespace {
    pub(super) fn new<K: Storable, V: Storable>(name: &str, version: u64) -> Self {
        let label =
            format!("speedup-cache redis tier 3\0{}\0{}\0{version}", type_label::<K>(), type_label::<V>());
        let fingerprint = xxh3_64(label.as_bytes());
        let prefix = format!("speedup:{name}:{fingerprint:016x}:");
        Namespace { channel: format!("{prefix}done"), prefix: prefix.into_bytes(), fingerprint }
    }

    pub(super) fn value_key(&self, key: &[u8]) -> Vec<u8> {
        self.name(b"v:", key)
    }

    /// The three Redis keys of one cache key.
    pub(super) fn names(&self, key: &[u8]) -> Names {
        Names { value: self.value_key(key), lease: self.name(b"l:", key), waiters: self.name(b"w:", key) }
    }

    fn name(&self, kind: &[u8], key: &[u8]) -> Vec<u8> {
        let mut name = Vec::with_capacity(self.prefix.len() + kind.len() + key.len());
        name.extend_from_slice(&self.prefix);
        name.extend_from_slice(kind);
        name.extend_from_slice(key);
        name
    }
}

/// The Redis keys of one cache key: its value, its lease, and the marker that says another
/// worker waits for it (so that values nobody waits for are not announced).
#[derive(Debug, Clone)]
pub(super) struct Names {
    pub(super) value: Vec<u8>,
    pub(super) lease: Vec<u8>,
    pub(super) waiters: Vec<u8>,
}

/// A type's structure (field names and types, recursively: `speedup_paged::schema_of`) and
/// archived layout: what the fingerprint covers. Workers built from different crates, or
/// after a type moved to another module, share values; a changed field does not.
fn type_label<T: Storable>() -> String {
    format!(
        "{} [{}/{}]",
        speedup_paged::schema_of::<T>(),
        size_of::<T::Archived>(),
        align_of::<T::Archived>()
    )
}

/// The rkyv archive of `value`.
pub(super) fn archive<T: Storable>(value: &T) -> Result<AlignedVec, String> {
    let mut bytes = AlignedVec::new();
    rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, &mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// A value as stored in Redis under `value_key`: header, then archive.
pub(super) fn frame<V: Storable>(value: &V, fingerprint: u64, value_key: &[u8]) -> Result<Vec<u8>, String> {
    let archive = archive(value)?;
    let mut framed = Vec::with_capacity(HEADER + archive.len());
    framed.extend_from_slice(MAGIC);
    framed.extend_from_slice(&[0; 4]);
    framed.extend_from_slice(&fingerprint.to_le_bytes());
    framed.extend_from_slice(&xxh3_64(value_key).to_le_bytes());
    framed.extend_from_slice(&xxh3_64(&archive).to_le_bytes());
    framed.extend_from_slice(&archive);
    Ok(framed)
}

/// The value in a framed record read from `value_key`, after checking the header (types,
/// version, key), the checksum and the archive.
pub(super) fn unframe<V: Storable>(bytes: &[u8], fingerprint: u64, value_key: &[u8]) -> Result<V, String> {
    let (header, archive) = bytes.split_at_checked(HEADER).ok_or_else(|| {
        format!("{} bytes are too short for a value written by speedup-cache (header: {HEADER})", bytes.len())
    })?;
    if &header[..4] != MAGIC {
        return Err("not a value written by this version of speedup-cache (no SPC2 header)".into());
    }
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or_default());
    if word(8) != fingerprint {
        return Err(format!(
            "written for other key/value types or another version (fingerprint {:016x}, expected {fingerprint:016x})",
            word(8)
        ));
    }
    if word(16) != xxh3_64(value_key) {
        return Err(format!(
            "written under another key (key hash {:016x}, expected {:016x}): it was copied or renamed here",
            word(16),
            xxh3_64(value_key)
        ));
    }
    if word(24) != xxh3_64(archive) {
        return Err(format!("checksum mismatch over {} bytes: the value is corrupt", archive.len()));
    }
    // Redis hands back unaligned bytes; rkyv reads archives in place, so align them first.
    let mut aligned = AlignedVec::<16>::with_capacity(archive.len());
    aligned.extend_from_slice(archive);
    rkyv::api::high::from_bytes::<V, rancor::Error>(&aligned)
        .map_err(|e| format!("the archive does not validate as the value type: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_frames() {
        let ns = Namespace::new::<u64, Vec<String>>("t", 1);
        let v = vec!["a".to_string(), "bc".repeat(40)];
        let framed = frame(&v, ns.fingerprint, b"k").unwrap();
        assert_eq!(unframe::<Vec<String>>(&framed, ns.fingerprint, b"k").unwrap(), v);
    }

    #[test]
    fn every_damage_is_reported() {
        let fp = Namespace::new::<u64, u64>("t", 1).fingerprint;
        let framed = frame(&7u64, fp, b"k").unwrap();
        assert!(unframe::<u64>(&framed[..10], fp, b"k").unwrap_err().contains("too short"));
        let mut bad = framed.clone();
        bad[0] = b'X';
        assert!(unframe::<u64>(&bad, fp, b"k").unwrap_err().contains("SPC2"));
        assert!(unframe::<u64>(&framed, fp ^ 1, b"k").unwrap_err().contains("other key/value types"));
        assert!(unframe::<u64>(&framed, fp, b"other").unwrap_err().contains("written under another key"));
        let mut flipped = framed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(unframe::<u64>(&flipped, fp, b"k").unwrap_err().contains("checksum"));
        // A right header over an archive of another type (a String where a u64 belongs).
        let archive = archive(&"not a number, longer than inline".to_string()).unwrap();
        let mut forged = framed[..24].to_vec();
        forged.extend_from_slice(&xxh3_64(&archive).to_le_bytes());
        forged.extend_from_slice(&archive);
        let fp_v = Namespace::new::<u64, Vec<u64>>("t", 1).fingerprint;
        forged[8..16].copy_from_slice(&fp_v.to_le_bytes());
        assert!(unframe::<Vec<u64>>(&forged, fp_v, b"k").unwrap_err().contains("does not validate"));
    }

    #[test]
    fn namespaces_separate_names_types_and_versions() {
        let a = Namespace::new::<u64, u64>("a", 1);
        assert_ne!(a.fingerprint, Namespace::new::<u64, u64>("a", 2).fingerprint);
        assert_ne!(a.fingerprint, Namespace::new::<u64, u32>("a", 1).fingerprint);
        assert_ne!(a.fingerprint, Namespace::new::<i64, u64>("a", 1).fingerprint);
        assert_ne!(a.value_key(b"k"), Namespace::new::<u64, u64>("b", 1).value_key(b"k"));
        let names = a.names(b"k");
        assert_ne!(names.value, names.lease);
        assert_ne!(names.value, names.waiters);
        assert_ne!(names.lease, names.waiters);
        // Equal keys give equal names (rkyv zeroes padding).
        let k1 = archive(&(1u8, 2u64)).unwrap();
        let k2 = archive(&(1u8, 2u64)).unwrap();
        assert_eq!(k1.as_slice(), k2.as_slice());
    }
}

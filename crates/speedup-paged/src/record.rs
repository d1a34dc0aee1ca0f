//! How keys, values and list items become bytes: rkyv archives, each a self-contained,
//! position-independent run of bytes ("a record") whose root sits at its end.
//!
//! Because a record only holds relative pointers into itself, it can be copied verbatim
//! from the write overlay into a page, or from one page into another, without being
//! serialized again, as long as it lands on a [`RECORD_ALIGN`]-aligned offset.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema::{Schema, schema_of};

/// Every record starts at a multiple of this (the alignment of `AlignedVec`, which is what
/// rkyv's serializer assumes for position 0).
pub(crate) const RECORD_ALIGN: usize = 16;

/// A type that can be stored in a [`DiskDict`](crate::DiskDict) or
/// [`DiskList`](crate::DiskList): rkyv `Archive + Serialize + Deserialize` with a
/// validatable archived form, and a structural [`Schema`] that the store records so that it
/// is never read back as another type.
///
/// It is implemented for every such type; you never implement it by hand. The standard
/// types have it already; for your own struct or enum, one line does it:
/// [`#[storable]`](crate::storable).
///
/// ```
/// #[speedup_paged::storable]
/// #[derive(Debug, PartialEq)]
/// struct Point { x: i32, y: i32 }
///
/// fn assert_storable<T: speedup_paged::Storable>() {}
/// assert_storable::<Point>();
/// assert_storable::<(u64, String)>();
/// assert_storable::<Vec<Option<f64>>>();
/// ```
pub trait Storable:
    Archive<
        Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                      + Deserialize<Self, HighDeserializer<rancor::Error>>,
    > + for<'a, 'b> Serialize<HighSerializer<&'b mut AlignedVec, ArenaHandle<'a>, rancor::Error>>
    + Schema
    + Sized
{
}

impl<T> Storable for T where
    T: Archive<
            Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                          + Deserialize<T, HighDeserializer<rancor::Error>>,
        > + for<'a, 'b> Serialize<HighSerializer<&'b mut AlignedVec, ArenaHandle<'a>, rancor::Error>>
        + Schema
{
}

/// Where a record sits inside a buffer: `start` is aligned, the root ends at `start + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

impl Span {
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// Pads `buf` to [`RECORD_ALIGN`].
pub(crate) fn pad(buf: &mut AlignedVec) {
    let padded = buf.len().next_multiple_of(RECORD_ALIGN);
    buf.resize(padded, 0);
}

/// Appends `value` as a record to `buf` and returns its span. On failure `buf` is left as it
/// was, so a page buffer never loses the records it already holds.
pub(crate) fn append<T: Storable>(buf: &mut AlignedVec, value: &T) -> Result<Span> {
    let before = buf.len();
    pad(buf);
    let start = buf.len();
    // The serializer writes through `&mut AlignedVec`, so an error cannot consume the buffer.
    let result = rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, &mut *buf).map(|_| ());
    let end = buf.len();
    let fail = |reason: String, buf: &mut AlignedVec| {
        buf.resize(before, 0);
        Err(Error::Serialize { reason })
    };
    if let Err(e) = result {
        return fail(e.to_string(), buf);
    }
    match (u32::try_from(start), u32::try_from(end - start)) {
        (Ok(start), Ok(len)) => Ok(Span { start, len }),
        _ => fail("a page buffer would exceed 4 GiB; lower Options::size_limit".into(), buf),
    }
}

/// Checks that `bytes` (one record) holds a valid archived `T`.
pub(crate) fn check<T: Storable>(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < size_of::<T::Archived>() {
        return Err(format!("a record of {} bytes is shorter than its type", bytes.len()));
    }
    let root = bytes.len() - size_of::<T::Archived>();
    rkyv::api::high::access_pos::<T::Archived, rancor::Error>(bytes, root)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Borrows the archived `T` in a record.
///
/// # Safety
///
/// `bytes` must be a record that passed [`check::<T>`], or that [`append::<T>`] produced,
/// and must still hold the same bytes.
pub(crate) unsafe fn archived<T: Storable>(bytes: &[u8]) -> &T::Archived {
    let root = bytes.len() - size_of::<T::Archived>();
    // SAFETY: the caller guarantees a valid archived `T` rooted at the record's end
    // (validated by `check`, or written by our own serializer for this very type). A
    // caller that broke this is caught by `tests/fuzz_smoke.rs` (crafted pages) and
    // `records_round_trip_at_aligned_offsets` below (run under Miri by `cargo xtask miri`).
    unsafe { rkyv::api::access_pos_unchecked::<T::Archived>(bytes, root) }
}

/// Deserializes an archived value into an owned one.
pub(crate) fn to_owned<T: Storable>(archived: &T::Archived) -> Result<T> {
    rkyv::api::high::deserialize::<T, rancor::Error>(archived)
        .map_err(|e| Error::Serialize { reason: format!("cannot deserialize a stored value: {e}") })
}

/// The identity a store records for `T`: its structural schema plus the size and alignment
/// of its archived form (a belt-and-braces check on hand-written [`Schema`] impls). Stable
/// across module moves, renames and compiler upgrades; see [`crate::schema`].
pub(crate) fn type_identity<T: Storable>() -> String {
    format!("{} [{}/{}]", schema_of::<T>(), size_of::<T::Archived>(), align_of::<T::Archived>())
}

/// The identity store format 1 recorded: `type_name` plus archived size and alignment.
/// Only compared when opening a format-1 store, which is then migrated on its next flush.
pub(crate) fn legacy_type_label<T: Storable>() -> String {
    format!(
        "{} (archived: {} bytes, align {})",
        std::any::type_name::<T>(),
        size_of::<T::Archived>(),
        align_of::<T::Archived>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_at_aligned_offsets() {
        let mut buf = AlignedVec::<16>::new();
        let a = append(&mut buf, &7u8).unwrap();
        let b = append(&mut buf, &"a string longer than eight".to_string()).unwrap();
        let c = append(&mut buf, &vec![1u64, 2, 3]).unwrap();
        for span in [a, b, c] {
            assert_eq!(span.start as usize % RECORD_ALIGN, 0);
        }
        check::<String>(&buf[b.range()]).unwrap();
        // SAFETY: produced by `append::<String>` above.
        let s: String = to_owned::<String>(unsafe { archived::<String>(&buf[b.range()]) }).unwrap();
        assert_eq!(s, "a string longer than eight");
        // Copying a record elsewhere (aligned) keeps it valid: relative pointers only.
        let mut moved = AlignedVec::<16>::new();
        moved.extend_from_slice(&[0; 32]);
        moved.extend_from_slice(&buf[c.range()]);
        let copy = &moved[32..];
        check::<Vec<u64>>(copy).unwrap();
        // SAFETY: checked just above.
        let v: Vec<u64> = to_owned::<Vec<u64>>(unsafe { archived::<Vec<u64>>(copy) }).unwrap();
        assert_eq!(v, [1, 2, 3]);
    }

    #[test]
    fn garbage_fails_the_check() {
        let mut buf = AlignedVec::<16>::new();
        let s = append(&mut buf, &"hello, world, longer than inline".to_string()).unwrap();
        let mut bytes = buf[s.range()].to_vec();
        let n = bytes.len();
        bytes[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes()); // relative pointer far away
        let mut aligned = AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes);
        assert!(check::<String>(&aligned).is_err());
        assert!(check::<u64>(&[1, 2]).is_err());
    }
}

//! Free-space bookkeeping for the store file: which byte ranges may be written.
//!
//! **Invariant:** a range referenced by the last durable header is never handed out before
//! the next header is durable. Ranges freed during an epoch wait in `pending` and join the
//! free list only in [`Extents::committed`]; ranges both allocated and freed within the same
//! epoch were never durable and are reused at once.

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Extents start and end on multiples of this.
pub(crate) const EXTENT_ALIGN: u64 = 64;

/// A written byte range of the store file with the checksum of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Extent {
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) checksum: u64,
}

impl Extent {
    /// The bytes the extent occupies in the file, padding included (saturating: a crafted
    /// length near `u64::MAX` is caught as lying past the end of the file, not a panic).
    pub(crate) fn footprint(&self) -> u64 {
        self.len.checked_next_multiple_of(EXTENT_ALIGN).unwrap_or(u64::MAX)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Extents {
    /// offset -> length of free ranges, coalesced.
    by_offset: BTreeMap<u64, u64>,
    /// (length, offset) of the same ranges, for best-fit allocation.
    by_size: BTreeSet<(u64, u64)>,
    /// Freed this epoch, still referenced by the last durable header.
    pending: Vec<(u64, u64)>,
    /// Allocated this epoch (not referenced by any durable header).
    fresh: HashSet<u64>,
    /// Everything at or past this offset is free.
    end: u64,
}

impl Extents {
    /// Free space of a file whose live ranges are `live` (offset, footprint), data from `start`.
    /// Returns the first overlapping pair, if any, as an error message.
    pub(crate) fn from_live(start: u64, mut live: Vec<(u64, u64)>) -> Result<Self, String> {
        live.sort_unstable();
        let mut this = Extents { end: start, ..Default::default() };
        for (offset, len) in live {
            if offset < this.end {
                return Err(format!("extent at {offset} overlaps the one before it or the header"));
            }
            if offset > this.end {
                this.insert_free(this.end, offset - this.end);
            }
            this.end = offset.checked_add(len).ok_or_else(|| format!("extent at {offset} ends past 2^64"))?;
        }
        Ok(this)
    }

    /// Allocates `len` bytes (rounded up to [`EXTENT_ALIGN`]); returns the offset.
    pub(crate) fn allocate(&mut self, len: u64) -> u64 {
        let size = len.max(1).next_multiple_of(EXTENT_ALIGN);
        let offset = match self.by_size.range((size, 0)..).next().copied() {
            Some((free_len, offset)) => {
                self.remove_free(offset, free_len);
                if free_len > size {
                    self.insert_free(offset + size, free_len - size);
                }
                offset
            }
            None => {
                let offset = self.end;
                self.end += size;
                offset
            }
        };
        self.fresh.insert(offset);
        offset
    }

    /// Releases an extent: at once if it was allocated this epoch, else after the next commit.
    pub(crate) fn release(&mut self, extent: Extent) {
        if extent.len == 0 {
            return;
        }
        if self.fresh.remove(&extent.offset) {
            self.insert_free(extent.offset, extent.footprint());
        } else {
            self.pending.push((extent.offset, extent.footprint()));
        }
    }

    /// The header that stops referencing the pending ranges is durable: they are free now.
    pub(crate) fn committed(&mut self) {
        for (offset, len) in std::mem::take(&mut self.pending) {
            self.insert_free(offset, len);
        }
        self.fresh.clear();
    }

    /// One past the last byte that may be in use.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    fn insert_free(&mut self, mut offset: u64, mut len: u64) {
        if let Some((&prev, &prev_len)) = self.by_offset.range(..offset).next_back()
            && prev + prev_len == offset
        {
            self.remove_free(prev, prev_len);
            offset = prev;
            len += prev_len;
        }
        if let Some(&next_len) = self.by_offset.get(&(offset + len)) {
            self.remove_free(offset + len, next_len);
            len += next_len;
        }
        if offset + len == self.end {
            self.end = offset; // the tail shrinks back instead of becoming a free range
            return;
        }
        self.by_offset.insert(offset, len);
        self.by_size.insert((len, offset));
    }

    fn remove_free(&mut self, offset: u64, len: u64) {
        self.by_offset.remove(&offset);
        self.by_size.remove(&(len, offset));
    }

    #[cfg(test)]
    fn free_bytes(&self) -> u64 {
        self.by_offset.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(offset: u64, len: u64) -> Extent {
        Extent { offset, len, checksum: 0 }
    }

    #[test]
    fn durable_ranges_are_not_reused_before_commit() {
        let mut e = Extents::from_live(128, vec![(128, 64)]).unwrap();
        e.release(ext(128, 64)); // referenced by the durable header
        let a = e.allocate(64);
        assert_ne!(a, 128, "a durable extent was reused in the same epoch");
        e.committed();
        let b = e.allocate(64);
        assert_eq!(b, 128);
    }

    #[test]
    fn fresh_ranges_are_reused_at_once_and_coalesce() {
        let mut e = Extents::from_live(0, vec![]).unwrap();
        let a = e.allocate(10);
        let b = e.allocate(100);
        let _c = e.allocate(64);
        e.release(ext(a, 10));
        e.release(ext(b, 100));
        assert_eq!(e.free_bytes(), 64 + 128, "a and b coalesced");
        assert_eq!(e.allocate(150), 0, "best fit uses the coalesced hole");
    }

    #[test]
    fn gaps_between_live_extents_are_free_and_overlaps_are_reported() {
        let e = Extents::from_live(64, vec![(256, 64), (64, 64)]).unwrap();
        assert_eq!(e.free_bytes(), 128);
        assert_eq!(e.end(), 320);
        assert!(Extents::from_live(64, vec![(64, 128), (128, 64)]).is_err());
        assert!(Extents::from_live(64, vec![(0, 64)]).is_err());
    }

    #[test]
    fn freeing_the_tail_shrinks_the_end() {
        let mut e = Extents::from_live(0, vec![]).unwrap();
        let a = e.allocate(64);
        e.release(ext(a, 64));
        assert_eq!(e.end(), 0);
    }
}

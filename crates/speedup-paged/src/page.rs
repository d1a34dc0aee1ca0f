//! The page format: a header, then (for dict pages) the sorted key hashes, then one span per
//! record, then the records themselves.
//!
//! ```text
//! offset  size        field
//! 0       4           magic "SPPG"
//! 4       4           n: entries in the page (u32 LE)
//! 8       4           width: records per entry (1 for lists, 2 for dicts: key, value)
//! 12      4           flags: bit 0 = a hash array is present
//! 16      8 * n       hashes (u64 LE, non-decreasing), only with flag bit 0
//! ..      8 * n * w   spans: (start u32 LE, len u32 LE) per record, start relative to the page
//! ..      ..          records, each starting at a multiple of 16
//! ```
//!
//! [`PageView::parse`] checks all of the structure (bounds, alignment, order) so that the
//! accessors after it cannot go out of bounds; the caller checks the records' archived
//! contents with [`crate::record::check`] once per page.

use rkyv::util::AlignedVec;

use crate::record::{RECORD_ALIGN, Span, pad};

const MAGIC: [u8; 4] = *b"SPPG";
const HEADER: usize = 16;
const FLAG_HASHES: u32 = 1;

/// Encodes a page from records given as byte slices, `width` per entry, in entry order.
pub(crate) fn encode(hashes: Option<&[u64]>, width: usize, records: &[&[u8]]) -> AlignedVec {
    let n = records.len() / width;
    debug_assert_eq!(n * width, records.len());
    debug_assert!(hashes.is_none_or(|h| h.len() == n));
    let hash_bytes = if hashes.is_some() { 8 * n } else { 0 };
    let table_end = (HEADER + hash_bytes + 8 * records.len()).next_multiple_of(RECORD_ALIGN);
    let body: usize = records.iter().map(|r| r.len().next_multiple_of(RECORD_ALIGN)).sum();
    let mut out = AlignedVec::with_capacity(table_end + body);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(if hashes.is_some() { FLAG_HASHES } else { 0 }).to_le_bytes());
    for h in hashes.unwrap_or(&[]) {
        out.extend_from_slice(&h.to_le_bytes());
    }
    let mut at = table_end;
    for r in records {
        out.extend_from_slice(&(at as u32).to_le_bytes());
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        at += r.len().next_multiple_of(RECORD_ALIGN);
    }
    out.resize(table_end, 0);
    for r in records {
        out.extend_from_slice(r);
        pad(&mut out);
    }
    out
}

/// A parsed, structurally valid page borrowed from its bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageView<'a> {
    bytes: &'a [u8],
    n: usize,
    width: usize,
    spans_at: usize,
}

impl<'a> PageView<'a> {
    /// Parses and checks the structure. `width` and `hashed` are what the caller expects.
    pub(crate) fn parse(bytes: &'a [u8], width: usize, hashed: bool) -> Result<Self, String> {
        if bytes.len() < HEADER {
            return Err(format!("page of {} bytes is shorter than its header", bytes.len()));
        }
        if bytes[..4] != MAGIC {
            return Err("page magic is wrong".into());
        }
        let n = read_u32(bytes, 4) as usize;
        let found_width = read_u32(bytes, 8) as usize;
        let flags = read_u32(bytes, 12);
        if found_width != width || (flags & FLAG_HASHES != 0) != hashed || flags & !FLAG_HASHES != 0 {
            return Err(format!(
                "page layout (width {found_width}, flags {flags:#x}) is not the expected one"
            ));
        }
        let hash_bytes = if hashed { 8 * n } else { 0 };
        let table_end = n
            .checked_mul(8 * width)
            .and_then(|s| s.checked_add(HEADER + hash_bytes))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| format!("page claims {n} entries, more than its {} bytes hold", bytes.len()))?;
        let view = PageView { bytes, n, width, spans_at: HEADER + hash_bytes };
        for r in 0..n * width {
            let s = view.span_at(r);
            let end = s.start as usize + s.len as usize;
            if (s.start as usize) < table_end || end > bytes.len() || s.start as usize % RECORD_ALIGN != 0 {
                return Err(format!("record {r} ({}..{end}) lies outside the page body", s.start));
            }
        }
        if hashed && (1..n).any(|i| view.hash(i - 1) > view.hash(i)) {
            return Err("page hashes are not sorted".into());
        }
        Ok(view)
    }

    /// Reads the header of a page that [`PageView::parse`] accepted before, without checking
    /// it again. (Accessors stay bounds-checked, so a lie here is a panic, never UB.)
    pub(crate) fn trusted(bytes: &'a [u8], width: usize, hashed: bool) -> Self {
        let n = read_u32(bytes, 4) as usize;
        PageView { bytes, n, width, spans_at: HEADER + if hashed { 8 * n } else { 0 } }
    }

    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// The hash of entry `i` (dict pages only).
    pub(crate) fn hash(&self, i: usize) -> u64 {
        read_u64(self.bytes, HEADER + 8 * i)
    }

    /// The first entry whose hash is `>= hash` (dict pages only).
    pub(crate) fn lower_bound(&self, hash: u64) -> usize {
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.hash(mid) < hash {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Record `slot` of entry `i`.
    pub(crate) fn record(&self, i: usize, slot: usize) -> &'a [u8] {
        &self.bytes[self.span_at(i * self.width + slot).range()]
    }

    fn span_at(&self, r: usize) -> Span {
        let at = self.spans_at + 8 * r;
        Span { start: read_u32(self.bytes, at), len: read_u32(self.bytes, at + 4) }
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{append, archived, check, to_owned};
    use proptest::prelude::*;

    fn dict_page(entries: &[(u64, u64, String)]) -> AlignedVec {
        let mut buf = AlignedVec::<16>::new();
        let spans: Vec<_> = entries
            .iter()
            .flat_map(|(_, k, v)| [append(&mut buf, k).unwrap(), append(&mut buf, v).unwrap()])
            .collect();
        let records: Vec<&[u8]> = spans.iter().map(|s| &buf[s.range()]).collect();
        let hashes: Vec<u64> = entries.iter().map(|e| e.0).collect();
        encode(Some(&hashes), 2, &records)
    }

    #[test]
    fn a_dict_page_round_trips() {
        let entries = [(1, 10, "ten".to_string()), (5, 50, "fifty".repeat(10)), (5, 51, String::new())];
        let page = dict_page(&entries);
        let view = PageView::parse(&page, 2, true).unwrap();
        assert_eq!(view.len(), 3);
        assert_eq!(view.lower_bound(5), 1);
        assert_eq!(view.lower_bound(6), 3);
        for (i, (h, k, v)) in entries.iter().enumerate() {
            assert_eq!(view.hash(i), *h);
            check::<u64>(view.record(i, 0)).unwrap();
            check::<String>(view.record(i, 1)).unwrap();
            // SAFETY: both records were checked just above.
            unsafe {
                assert_eq!(to_owned::<u64>(archived::<u64>(view.record(i, 0))).unwrap(), *k);
                assert_eq!(&to_owned::<String>(archived::<String>(view.record(i, 1))).unwrap(), v);
            }
        }
    }

    #[test]
    fn an_empty_page_parses() {
        let page = encode(None, 1, &[]);
        assert_eq!(PageView::parse(&page, 1, false).unwrap().len(), 0);
        assert!(PageView::parse(&page, 2, false).is_err(), "width is checked");
        assert!(PageView::parse(&page, 1, true).is_err(), "flags are checked");
    }

    #[test]
    fn unsorted_hashes_are_rejected() {
        let page = dict_page(&[(9, 1, "a".into()), (3, 2, "b".into())]);
        assert!(PageView::parse(&page, 2, true).unwrap_err().contains("sorted"));
    }

    proptest! {
        /// The page decoder never panics and never hands out an out-of-bounds record,
        /// whatever the bytes (the same property the fuzz target checks, time-boxed).
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), width in 1usize..3, hashed: bool) {
            let mut aligned = AlignedVec::<16>::new();
            aligned.extend_from_slice(&bytes);
            if let Ok(view) = PageView::parse(&aligned, width, hashed) {
                for i in 0..view.len() {
                    for slot in 0..width {
                        let _ = check::<u64>(view.record(i, slot));
                    }
                }
            }
        }

        /// Flipping any byte of a valid page is caught by the structural check or the
        /// record check, or leaves a page that still decodes to in-bounds records.
        #[test]
        fn bit_flips_never_escape(at in 0usize..4096, bit in 0u8..8) {
            let page = dict_page(&[(1, 10, "ten".into()), (2, 20, "twenty, long enough to be out of line".into())]);
            let mut bytes = page.to_vec();
            let at = at % bytes.len();
            bytes[at] ^= 1 << bit;
            let mut aligned = AlignedVec::<16>::new();
            aligned.extend_from_slice(&bytes);
            if let Ok(view) = PageView::parse(&aligned, 2, true) {
                for i in 0..view.len() {
                    if check::<u64>(view.record(i, 0)).is_ok() && check::<String>(view.record(i, 1)).is_ok() {
                        // SAFETY: checked just above.
                        let s = to_owned::<String>(unsafe { archived::<String>(view.record(i, 1)) }).unwrap();
                        prop_assert!(s.len() < 4096);
                    }
                }
            }
        }
    }
}

//! The page format: a header, then (for dict pages) the sorted key hashes, then the records,
//! either as a dense array per slot (when all records of a slot have the same length) or
//! located through a span table.
//!
//! ```text
//! offset  size        field
//! 0       4           magic "SPPG"
//! 4       4           n: entries in the page (u32 LE)
//! 8       2           width: records per entry (1 for lists, 2 for dicts: key, value)
//! 10      2           flags: bit 0 = a hash array is present, bit 1 = fixed layout
//! 12      4           zero
//! 16      8 * n       hashes (u64 LE, non-decreasing), only with flag bit 0
//! fixed layout (flag bit 1):
//! ..      4 * w       record length of each slot (u32 LE)
//! ..      ..          from a multiple of 16: n entries at a fixed stride, each entry
//!                     holding its records at fixed offsets
//! span layout:
//! ..      8 * n * w   spans: (start u32 LE, len u32 LE) per record, start relative to the page
//! ..      ..          records, each starting at a multiple of 16
//! ```
//!
//! In the fixed layout a record of `L` bytes is aligned to `L` when `L` is a power of two up
//! to 16 (nothing inside a record of `L` bytes can need a larger alignment), otherwise to
//! 16; an entry's records are adjacent (a key and its value share a cache line), and the
//! entry stride keeps every entry aligned. A page of `u64 -> u64` entries costs 24 bytes
//! per entry: 8 for the hash, 16 for the key and value.
//!
//! [`PageView::parse`] checks all of the structure (bounds, alignment, order) so that the
//! accessors after it cannot go out of bounds; the caller checks the records' archived
//! contents with [`crate::record::check`] once per page.

use std::ops::Range;

use rkyv::util::AlignedVec;

use crate::le::{u16_at, u32_at, u64_at};
use crate::record::{RECORD_ALIGN, Span, pad};

const MAGIC: [u8; 4] = *b"SPPG";
const HEADER: usize = 16;
const FLAG_HASHES: u16 = 1;
const FLAG_FIXED: u16 = 2;
/// Pages have at most two records per entry.
const MAX_WIDTH: usize = 2;

/// The alignment a fixed-layout record of `len` bytes gets.
fn record_align(len: usize) -> usize {
    if len.is_power_of_two() && len <= RECORD_ALIGN { len } else { RECORD_ALIGN }
}

/// (offset of each record in an entry, entry stride) for records of the given lengths.
fn fixed_offsets(lens: &[usize]) -> ([usize; MAX_WIDTH], usize) {
    let mut offsets = [0; MAX_WIDTH];
    let (mut at, mut max_align) = (0usize, 1usize);
    for (s, &len) in lens.iter().enumerate() {
        let align = record_align(len);
        offsets[s] = at.next_multiple_of(align);
        at = offsets[s] + len;
        max_align = max_align.max(align);
    }
    (offsets, at.next_multiple_of(max_align))
}

/// The stores keep pages under about this many bytes (splitting by size as well as by
/// `size_limit`), so a page stays far below the 4 GiB its u32 offsets can address and a merge
/// holds a bounded amount of it in memory.
pub(crate) const MAX_PAGE_BYTES: usize = 64 << 20;

/// Encodes a page from records given as byte slices, `width` per entry, in entry order.
/// Fails, writing nothing, if the page could not address its records (over 4 GiB).
pub(crate) fn encode(hashes: Option<&[u64]>, width: usize, records: &[&[u8]]) -> Result<AlignedVec, String> {
    let n = records.len() / width;
    let total: usize =
        HEADER + 8 * n + 8 * records.len() + records.iter().map(|r| r.len() + RECORD_ALIGN).sum::<usize>();
    if u32::try_from(total).is_err() {
        return Err(format!(
            "a page of {n} entries would take {total} bytes, more than the 4 GiB a page can address"
        ));
    }
    debug_assert!(n * width == records.len() && (1..=MAX_WIDTH).contains(&width));
    debug_assert!(hashes.is_none_or(|h| h.len() == n));
    let hash_bytes = if hashes.is_some() { 8 * n } else { 0 };
    let mut fixed_len = [0usize; MAX_WIDTH];
    let fixed = n > 0
        && (0..width).all(|s| {
            fixed_len[s] = records[s].len();
            records.iter().skip(s).step_by(width).all(|r| r.len() == fixed_len[s])
        });
    let mut flags = if hashes.is_some() { FLAG_HASHES } else { 0 };
    let table = if fixed {
        flags |= FLAG_FIXED;
        4 * width
    } else {
        8 * records.len()
    };
    let table_end = (HEADER + hash_bytes + table).next_multiple_of(RECORD_ALIGN);
    let mut out = AlignedVec::with_capacity(table_end + records.iter().map(|r| r.len() + 16).sum::<usize>());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&(width as u16).to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for h in hashes.unwrap_or(&[]) {
        out.extend_from_slice(&h.to_le_bytes());
    }
    if fixed {
        for len in &fixed_len[..width] {
            out.extend_from_slice(&(*len as u32).to_le_bytes());
        }
        out.resize(table_end, 0);
        let (offsets, entry) = fixed_offsets(&fixed_len[..width]);
        for (i, entry_records) in records.chunks(width).enumerate() {
            let start = table_end + i * entry;
            for (s, r) in entry_records.iter().enumerate() {
                out.resize(start + offsets[s], 0);
                out.extend_from_slice(r);
            }
        }
        out.resize(table_end + n * entry, 0);
        return Ok(out);
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
    Ok(out)
}

/// How records are found in a page; cached per page once the page is validated, so that
/// reads do not touch the page header again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Entries from `base`, `entry` bytes apart; per slot: (offset in the entry, length).
    Fixed { base: usize, entry: usize, slots: [(usize, usize); MAX_WIDTH] },
    /// The span table starts here.
    Spans(usize),
}

impl Layout {
    /// Where record `slot` of entry `i` lies in its page, by arithmetic alone: `None` for a
    /// span layout, whose records are found through the page's span table.
    ///
    /// The range is inside the page only if `i` is below the entry count the layout was
    /// validated with; the caller still slices with a checked `get`.
    #[inline]
    pub(crate) fn fixed_record(&self, i: usize, slot: usize) -> Option<Range<usize>> {
        match *self {
            Layout::Fixed { base, entry, slots } => {
                let (offset, len) = slots[slot];
                let start = base + i * entry + offset;
                Some(start..start + len)
            }
            Layout::Spans(_) => None,
        }
    }
}

/// A parsed, structurally valid page borrowed from its bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageView<'a> {
    bytes: &'a [u8],
    n: usize,
    width: usize,
    layout: Layout,
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
        let n = u32_at(bytes, 4) as usize;
        let found_width = u16_at(bytes, 8) as usize;
        let flags = u16_at(bytes, 10);
        if found_width != width
            || (flags & FLAG_HASHES != 0) != hashed
            || flags & !(FLAG_HASHES | FLAG_FIXED) != 0
            || u32_at(bytes, 12) != 0
        {
            return Err(format!(
                "page layout (width {found_width}, flags {flags:#x}) is not the expected one"
            ));
        }
        let too_big = || format!("page claims {n} entries, more than its {} bytes hold", bytes.len());
        let hash_bytes = if hashed { n.checked_mul(8).ok_or_else(too_big)? } else { 0 };
        if HEADER + hash_bytes > bytes.len() {
            return Err(too_big());
        }
        let view = if flags & FLAG_FIXED != 0 {
            let lens_at = HEADER + hash_bytes;
            if lens_at + 4 * width > bytes.len() {
                return Err(too_big());
            }
            let (layout, end) = fixed_layout(bytes, n, width, lens_at);
            if end.is_none_or(|end| end > bytes.len()) {
                return Err(too_big());
            }
            PageView { bytes, n, width, layout }
        } else {
            let table_end = n
                .checked_mul(8 * width)
                .and_then(|s| s.checked_add(HEADER + hash_bytes))
                .filter(|&end| end <= bytes.len())
                .ok_or_else(too_big)?;
            let view = PageView { bytes, n, width, layout: Layout::Spans(HEADER + hash_bytes) };
            for r in 0..n * width {
                let s = view.span_at(r);
                let end = s.start as usize + s.len as usize;
                if (s.start as usize) < table_end
                    || end > bytes.len()
                    || !(s.start as usize).is_multiple_of(RECORD_ALIGN)
                {
                    return Err(format!("record {r} ({}..{end}) lies outside the page body", s.start));
                }
            }
            view
        };
        if hashed && (1..n).any(|i| view.hash(i - 1) > view.hash(i)) {
            return Err("page hashes are not sorted".into());
        }
        Ok(view)
    }

    /// A page that [`PageView::parse`] accepted before, with the layout it found then and
    /// the entry count the caller knows: no header read. (Accessors stay bounds-checked, so
    /// a lie here is a panic, never UB.)
    pub(crate) fn known(bytes: &'a [u8], n: usize, width: usize, layout: Layout) -> Self {
        PageView { bytes, n, width, layout }
    }

    /// The layout, to pass to [`PageView::known`] later.
    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// The hash of entry `i` (dict pages only).
    pub(crate) fn hash(&self, i: usize) -> u64 {
        u64_at(self.bytes, HEADER + 8 * i)
    }

    /// The first entry whose hash is `>= hash` (dict pages only).
    ///
    /// Hashes are uniform, so `hash × n / 2^64` lands within a few entries of the answer:
    /// gallop from there to a small window, then bisect it. A lookup touches two or three
    /// cache lines instead of the ~log2(n) of a plain binary search.
    pub(crate) fn lower_bound(&self, hash: u64) -> usize {
        let n = self.n;
        if n == 0 {
            return 0;
        }
        let guess = (((hash as u128) * (n as u128)) >> 64) as usize;
        let (mut lo, mut hi);
        if self.hash(guess) < hash {
            // The answer is past `guess`.
            let mut step = 1;
            lo = guess + 1;
            loop {
                let probe = guess + step;
                if probe >= n {
                    hi = n;
                    break;
                }
                if self.hash(probe) >= hash {
                    hi = probe;
                    break;
                }
                lo = probe + 1;
                step *= 2;
            }
        } else {
            // The answer is at or before `guess`.
            let mut step = 1;
            hi = guess;
            loop {
                if step > guess {
                    lo = 0;
                    break;
                }
                let probe = guess - step;
                if self.hash(probe) < hash {
                    lo = probe + 1;
                    break;
                }
                hi = probe;
                step *= 2;
            }
        }
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
        match self.layout.fixed_record(i, slot) {
            Some(range) => &self.bytes[range],
            None => &self.bytes[self.span_at(i * self.width + slot).range()],
        }
    }

    fn span_at(&self, r: usize) -> Span {
        let Layout::Spans(spans_at) = self.layout else {
            unreachable!("span_at is only called on span-layout pages");
        };
        let at = spans_at + 8 * r;
        Span { start: u32_at(self.bytes, at), len: u32_at(self.bytes, at + 4) }
    }
}

/// The fixed layout of a page whose record lengths start at `lens_at`, and where its
/// entries end (`None` on overflow).
fn fixed_layout(bytes: &[u8], n: usize, width: usize, lens_at: usize) -> (Layout, Option<usize>) {
    let mut lens = [0; MAX_WIDTH];
    for (s, len) in lens.iter_mut().enumerate().take(width) {
        *len = u32_at(bytes, lens_at + 4 * s) as usize;
    }
    let (offsets, entry) = fixed_offsets(&lens[..width]);
    let base = (lens_at + 4 * width).next_multiple_of(RECORD_ALIGN);
    let mut slots = [(0, 0); MAX_WIDTH];
    for s in 0..width {
        slots[s] = (offsets[s], lens[s]);
    }
    let end = n.checked_mul(entry).and_then(|size| size.checked_add(base));
    (Layout::Fixed { base, entry, slots }, end)
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
        encode(Some(&hashes), 2, &records).unwrap()
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
    fn equal_length_records_use_the_dense_layout() {
        let mut buf = AlignedVec::<16>::new();
        let spans: Vec<_> = (0..5u64)
            .flat_map(|i| [append(&mut buf, &i).unwrap(), append(&mut buf, &(i as u32)).unwrap()])
            .collect();
        let records: Vec<&[u8]> = spans.iter().map(|s| &buf[s.range()]).collect();
        let page = encode(Some(&[1, 2, 3, 4, 5]), 2, &records).unwrap();
        assert_eq!(
            page.len(),
            16 + 40 + 8 + 5 * 16,
            "header, hashes, lengths, 5 entries of u64 + u32 (+padding)"
        );
        let parsed = PageView::parse(&page, 2, true).unwrap();
        for view in [parsed, PageView::known(&page, 5, 2, parsed.layout())] {
            for i in 0..5 {
                check::<u64>(view.record(i, 0)).unwrap();
                check::<u32>(view.record(i, 1)).unwrap();
                // SAFETY: checked just above.
                unsafe {
                    assert_eq!(to_owned::<u64>(archived::<u64>(view.record(i, 0))).unwrap(), i as u64);
                    assert_eq!(to_owned::<u32>(archived::<u32>(view.record(i, 1))).unwrap(), i as u32);
                }
            }
        }
    }

    #[test]
    fn an_empty_page_parses() {
        let page = encode(None, 1, &[]).unwrap();
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
        /// Interpolation + galloping finds the same slot as a plain binary search.
        #[test]
        fn lower_bound_matches_partition_point(mut hashes in proptest::collection::vec(any::<u64>(), 0..200), probes in proptest::collection::vec(any::<u64>(), 1..20), dup in 0usize..5) {
            if let Some(&h) = hashes.first() {
                hashes.extend(std::iter::repeat_n(h, dup));
            }
            hashes.sort_unstable();
            let mut buf = AlignedVec::<16>::new();
            let spans: Vec<_> = hashes.iter().map(|h| append(&mut buf, h).unwrap()).collect();
            let records: Vec<&[u8]> = spans.iter().map(|s| &buf[s.range()]).collect();
            let page = encode(Some(&hashes), 1, &records).unwrap();
            let view = PageView::parse(&page, 1, true).unwrap();
            for p in probes.into_iter().chain(hashes.iter().copied()).chain([0, u64::MAX]) {
                prop_assert_eq!(view.lower_bound(p), hashes.partition_point(|&h| h < p));
            }
        }

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

//! The two roots, one per kind of store (see `docs/paged-format.md`): the list of a dict's
//! buckets ("SPDR") and of a list's pages in order ("SPLR"). A root is one extent, written
//! at each flush and named by the header.

use crate::extent::Extent;
use crate::le::{u32_at, u64_at};
use crate::options::MAX_SIZE_LIMIT;

const DICT_MAGIC: [u8; 4] = *b"SPDR";
const LIST_MAGIC: [u8; 4] = *b"SPLR";
const BUCKET_BYTES: usize = 48;
const PAGE_BYTES: usize = 32;

/// One bucket of a dict root: local depth (u8) + 7 zero bytes, prefix, page offset, page
/// length, page checksum, entry count (u64 each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BucketEntry {
    pub(crate) local_depth: u8,
    pub(crate) prefix: u64,
    /// `len == 0`: the bucket is empty and has no page.
    pub(crate) page: Extent,
    pub(crate) count: u32,
}

/// One page of a list root, in list order: offset, length, checksum, item count (u64 each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageEntry {
    pub(crate) page: Extent,
    pub(crate) count: u32,
}

/// `magic`, the entry count (u32), then the entries.
fn encode<E>(
    magic: [u8; 4],
    entry_bytes: usize,
    entries: impl ExactSizeIterator<Item = E>,
    put: impl Fn(&mut Vec<u8>, E),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + entries.len() * entry_bytes);
    out.extend_from_slice(&magic);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        put(&mut out, e);
    }
    out
}

/// Checks magic and length; returns the entry count.
fn entries(bytes: &[u8], magic: [u8; 4], entry_bytes: usize, what: &str) -> Result<usize, String> {
    if bytes.len() < 8 || bytes[..4] != magic {
        return Err("the root's magic is wrong".into());
    }
    let n = u32_at(bytes, 4) as usize;
    if bytes.len() != 8 + n * entry_bytes {
        return Err(format!("the root's length does not match its {n} {what}"));
    }
    Ok(n)
}

fn extent_at(bytes: &[u8], at: usize) -> Extent {
    Extent { offset: u64_at(bytes, at), len: u64_at(bytes, at + 8), checksum: u64_at(bytes, at + 16) }
}

pub(crate) fn encode_dict(buckets: impl ExactSizeIterator<Item = BucketEntry>) -> Vec<u8> {
    encode(DICT_MAGIC, BUCKET_BYTES, buckets, |out, b| {
        out.extend_from_slice(&[b.local_depth, 0, 0, 0, 0, 0, 0, 0]);
        for v in [b.prefix, b.page.offset, b.page.len, b.page.checksum, u64::from(b.count)] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    })
}

/// Decodes a dict root, checking each bucket on its own (depth at most `max_depth`, prefix
/// within its depth, a page exactly when it has entries); at least one bucket.
pub(crate) fn decode_dict(bytes: &[u8], max_depth: u8) -> Result<Vec<BucketEntry>, String> {
    let n = entries(bytes, DICT_MAGIC, BUCKET_BYTES, "buckets")?;
    if n == 0 {
        return Err("the root has no buckets".into());
    }
    (0..n)
        .map(|i| {
            let at = 8 + i * BUCKET_BYTES;
            let local_depth = bytes[at];
            let prefix = u64_at(bytes, at + 8);
            let page = extent_at(bytes, at + 16);
            let count =
                u32::try_from(u64_at(bytes, at + 40)).map_err(|_| format!("bucket {i} count is absurd"))?;
            if local_depth > max_depth || prefix >> local_depth != 0 {
                return Err(format!("bucket {i} has depth {local_depth} and prefix {prefix:#x}"));
            }
            // Every entry of a dict page has an 8-byte hash.
            if (page.len == 0) != (count == 0) || u64::from(count) * 8 > page.len {
                return Err(format!("bucket {i} has {count} entries but a page of {} bytes", page.len));
            }
            Ok(BucketEntry { local_depth, prefix, page, count })
        })
        .collect()
}

pub(crate) fn encode_list(pages: impl ExactSizeIterator<Item = PageEntry>) -> Vec<u8> {
    encode(LIST_MAGIC, PAGE_BYTES, pages, |out, p| {
        for v in [p.page.offset, p.page.len, p.page.checksum, u64::from(p.count)] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    })
}

/// Decodes a list root; every page must be non-empty.
pub(crate) fn decode_list(bytes: &[u8]) -> Result<Vec<PageEntry>, String> {
    let n = entries(bytes, LIST_MAGIC, PAGE_BYTES, "pages")?;
    (0..n)
        .map(|i| {
            let at = 8 + i * PAGE_BYTES;
            let page = extent_at(bytes, at);
            // A list page never holds more than the largest `size_limit`: a crafted count of
            // billions of zero-sized items would otherwise take minutes to validate.
            let count = u32::try_from(u64_at(bytes, at + 24))
                .ok()
                .filter(|&c| c > 0 && c as usize <= MAX_SIZE_LIMIT && page.len > 0);
            let count = count.ok_or_else(|| format!("page {i} has an impossible item count"))?;
            Ok(PageEntry { page, count })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_round_trip_and_reject_damage() {
        let e = |o| Extent { offset: o, len: 64, checksum: o ^ 7 };
        let buckets = [
            BucketEntry { local_depth: 1, prefix: 0, page: e(8192), count: 3 },
            BucketEntry { local_depth: 1, prefix: 1, page: Extent::default(), count: 0 },
        ];
        let bytes = encode_dict(buckets.iter().copied());
        assert_eq!(decode_dict(&bytes, 30).unwrap(), buckets);
        assert!(decode_dict(&bytes[..bytes.len() - 1], 30).is_err());
        assert!(decode_dict(&bytes, 0).is_err(), "depth over the limit");
        let pages = [PageEntry { page: e(8256), count: 9 }];
        let bytes = encode_list(pages.iter().copied());
        assert_eq!(decode_list(&bytes).unwrap(), pages);
        assert!(decode_dict(&bytes, 30).is_err(), "a list root is not a dict root");
        assert!(decode_list(&encode_list([PageEntry { page: e(1), count: 0 }].into_iter())).is_err());
    }
}

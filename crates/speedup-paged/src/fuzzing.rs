//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`; not a stable
//! API). Each must return normally for every input: a panic or a crash is a bug.

use rkyv::util::AlignedVec;

use crate::page::PageView;
use crate::record::{archived, check, to_owned};
use crate::{DiskDict, DiskList, Options};

/// Decodes `data` as a page of every layout, validating and reading every record the way
/// the stores do.
pub fn decode_page(data: &[u8]) {
    let mut aligned = AlignedVec::<16>::new();
    aligned.extend_from_slice(data);
    for (width, hashed) in [(1, false), (2, true)] {
        let Ok(view) = PageView::parse(&aligned, width, hashed) else { continue };
        if hashed {
            let _ = view.lower_bound(view.len() as u64);
        }
        for i in 0..view.len() {
            for slot in 0..width {
                let record = view.record(i, slot);
                if check::<String>(record).is_ok() {
                    // SAFETY: checked on the line above.
                    let _ = to_owned::<String>(unsafe { archived::<String>(record) });
                }
                if check::<u64>(record).is_ok() {
                    // SAFETY: checked on the line above.
                    let _ = to_owned::<u64>(unsafe { archived::<u64>(record) });
                }
            }
        }
    }
}

/// Writes `data` as a store file and opens it as a dict and as a list, reading everything.
pub fn open_store(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let opts = Options::new().location(dir.path());
    if std::fs::write(dir.path().join("f.spdict"), data).is_ok()
        && let Ok(d) = DiskDict::<u64, String>::open_with("f", &opts)
    {
        for entry in d.iter().take(10_000) {
            let _ = entry;
        }
        let _ = d.get(&0);
        d.discard();
    }
    if std::fs::write(dir.path().join("f.splist"), data).is_ok()
        && let Ok(l) = DiskList::<String>::open_with("f", &opts)
    {
        for item in l.iter().take(10_000) {
            let _ = item;
        }
        l.discard();
    }
}

//! Simulated power cuts: writes that were not synced may be lost, each 4 KiB block on its
//! own. The commit protocol writes pages and the root, syncs, then writes the header into
//! the older of two slots and syncs again, so two cut points matter:
//!
//! - before the data sync: any subset of the new data blocks reached the disk, the header
//!   did not: the store must open exactly as of the last flush;
//! - during the header write: all new data reached the disk, the header slot may be torn:
//!   the store must open exactly as of the last flush or exactly as of the new one.
//!
//! Size knob: `SPEEDUP_POWER_CUT_ROUNDS` (default 20).

use std::collections::BTreeMap;
use std::path::Path;

use speedup_paged::{DiskDict, Options};

const BLOCK: usize = 4096;
const HEADER: usize = 8192;

fn contents(dir: &Path) -> BTreeMap<u64, String> {
    let d: DiskDict<u64, String> =
        DiskDict::open_with("cut", &Options::new().location(dir)).expect("the store opens after a power cut");
    let all = d.iter().map(|r| r.expect("every entry reads back")).collect();
    d.discard();
    all
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn a_power_cut_never_loses_flushed_entries() {
    let rounds: u64 =
        std::env::var("SPEEDUP_POWER_CUT_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::new().location(dir.path()).size_limit(8).max_pages(2);
        let path = dir.path().join("cut.spdict");

        // Session 1: some entries, flushed: the durable state S1.
        let mut d: DiskDict<u64, String> = DiskDict::open_with("cut", &opts).unwrap();
        for k in 0..(50 + rng.next() % 200) {
            d.insert(k, format!("v1-{k}")).unwrap();
        }
        d.close().unwrap();
        let s1 = std::fs::read(&path).unwrap();
        let e1 = contents(dir.path());

        // Session 2: overwrite, remove and add, then one flush: the new state F2.
        let mut d: DiskDict<u64, String> = DiskDict::open_with("cut", &opts).unwrap();
        for k in 0..(50 + rng.next() % 200) {
            match rng.next() % 3 {
                0 => drop(d.remove(&k).unwrap()),
                _ => drop(d.insert(k + rng.next() % 100, format!("v2-{k}")).unwrap()),
            }
        }
        d.close().unwrap();
        let f2 = std::fs::read(&path).unwrap();
        let e2 = contents(dir.path());

        let block_of = |bytes: &[u8], b: usize| -> Vec<u8> {
            let start = b * BLOCK;
            (start..start + BLOCK).map(|i| bytes.get(i).copied().unwrap_or(0)).collect()
        };
        let blocks = f2.len().max(s1.len()).div_ceil(BLOCK);

        // Cut before the data sync: old header, a random subset of the new data blocks.
        for _ in 0..4 {
            let mut cut = Vec::with_capacity(f2.len());
            for b in 0..blocks {
                let new_data = b * BLOCK >= HEADER && rng.next().is_multiple_of(2);
                cut.extend(block_of(if new_data { &f2 } else { &s1 }, b));
            }
            let len = if rng.next().is_multiple_of(2) { s1.len() } else { f2.len() }; // size change may be lost too
            cut.truncate(len.max(HEADER));
            std::fs::write(&path, &cut).unwrap();
            assert_eq!(contents(dir.path()), e1, "round {round}: cut before the data sync");
        }

        // Cut during the header write: all new data, the header slots torn byte-range-wise.
        for _ in 0..4 {
            let mut cut = f2.clone();
            let (a, b) = ((rng.next() as usize) % HEADER, (rng.next() as usize) % HEADER);
            let (from, to) = (a.min(b), a.max(b));
            cut[from..to].copy_from_slice(&s1[from..to]);
            std::fs::write(&path, &cut).unwrap();
            let got = contents(dir.path());
            assert!(got == e1 || got == e2, "round {round}: a torn header gave a third state");
        }
    }
}

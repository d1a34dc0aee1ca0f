//! Files written by earlier releases keep opening: `tests/fixtures/` holds a small store of
//! each kind written by store format 1. Regenerate them only when adding a new format
//! version (and keep the old ones): `SPEEDUP_WRITE_FIXTURES=1 cargo test --test compat`.

use std::path::{Path, PathBuf};

use speedup_paged::{DiskDict, DiskList, Options};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn value(i: u64) -> String {
    format!("entry {i}: {}", "abc".repeat((i % 7) as usize))
}

/// Both layouts (fixed-stride for `u64 -> u64`, spans for strings), several pages, a removal.
fn write_fixtures(dir: &Path) {
    let opts = Options::new().location(dir).size_limit(16);
    let mut d: DiskDict<String, String> = DiskDict::open_with("format1", &opts).unwrap();
    for i in 0..100 {
        d.insert(format!("key {i}"), value(i)).unwrap();
    }
    d.remove(&"key 50".to_string()).unwrap();
    d.close().unwrap();
    let mut n: DiskDict<u64, u64> = DiskDict::open_with("format1-u64", &opts).unwrap();
    for i in 0..100 {
        n.insert(i, i * i).unwrap();
    }
    n.close().unwrap();
    let mut l: DiskList<u32> = DiskList::open_with("format1", &opts).unwrap();
    for i in 0..100 {
        l.push(i * 3).unwrap();
    }
    l.insert(0, 7).unwrap();
    l.close().unwrap();
}

#[test]
fn format_1_stores_open_and_read_back() {
    if std::env::var_os("SPEEDUP_WRITE_FIXTURES").is_some() {
        write_fixtures(&fixtures());
    }
    // Work on a copy: opening takes a lock and a flush could rewrite the header.
    let dir = tempfile::tempdir().unwrap();
    for name in ["format1.spdict", "format1-u64.spdict", "format1.splist"] {
        std::fs::copy(fixtures().join(name), dir.path().join(name))
            .unwrap_or_else(|e| panic!("fixture {name} is missing ({e}): see this file's docs"));
    }
    let opts = Options::new().location(dir.path());
    let d: DiskDict<String, String> = DiskDict::open_with("format1", &opts).unwrap();
    assert_eq!(d.len(), 99);
    for i in 0..100 {
        let want = (i != 50).then(|| value(i));
        assert_eq!(d.get(&format!("key {i}")).unwrap(), want);
    }
    let n: DiskDict<u64, u64> = DiskDict::open_with("format1-u64", &opts).unwrap();
    assert_eq!(
        (0..100).map(|i| n.get(&i).unwrap().unwrap()).sum::<u64>(),
        (0..100u64).map(|i| i * i).sum::<u64>()
    );
    let l: DiskList<u32> = DiskList::open_with("format1", &opts).unwrap();
    let items: Vec<u32> = l.iter().map(Result::unwrap).collect();
    assert_eq!(items[0], 7);
    assert_eq!(&items[1..], (0..100).map(|i| i * 3).collect::<Vec<_>>());
}

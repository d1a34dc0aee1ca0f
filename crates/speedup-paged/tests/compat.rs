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

fn format_of(path: &Path) -> u32 {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).unwrap();
    let mut slots = [[0u8; 4]; 2];
    file.read_exact_at(&mut slots[0], 8).unwrap();
    file.read_exact_at(&mut slots[1], 4096 + 8).unwrap();
    // The current slot is the one a flush wrote last; format 1 stores had both slots in use.
    slots.iter().map(|s| u32::from_le_bytes(*s)).max().unwrap()
}

/// A format-1 store opens as it is, and its first flush migrates it to the current format
/// (structural type identity, seed 0 kept so its keys stay where they are).
#[test]
fn format_1_stores_migrate_on_their_first_flush() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["format1.spdict", "format1.splist"] {
        std::fs::copy(fixtures().join(name), dir.path().join(name)).unwrap();
    }
    let opts = Options::new().location(dir.path());
    let path = dir.path().join("format1.spdict");
    assert_eq!(format_of(&path), 1);
    {
        let mut d: DiskDict<String, String> = DiskDict::open_with("format1", &opts).unwrap();
        d.insert("key 50".into(), "back".into()).unwrap();
        d.close().unwrap();
        let mut l: DiskList<u32> = DiskList::open_with("format1", &opts).unwrap();
        l.push(1_000).unwrap();
        l.close().unwrap();
    }
    assert_eq!(format_of(&path), 2);
    assert_eq!(format_of(&dir.path().join("format1.splist")), 2);
    let d: DiskDict<String, String> = DiskDict::open_with("format1", &opts).unwrap();
    assert_eq!(d.len(), 100);
    for i in 0..100 {
        let want = if i == 50 { "back".to_string() } else { value(i) };
        assert_eq!(d.get(&format!("key {i}")).unwrap(), Some(want));
    }
    let l: DiskList<u32> = DiskList::open_with("format1", &opts).unwrap();
    assert_eq!(l.len(), 102);
    assert_eq!(l.get(101).unwrap(), Some(1_000));
    // Migrated, the store now checks structure: other types are refused with both schemas.
    drop(d);
    let err = DiskDict::<String, u64>::open_with("format1", &opts).unwrap_err();
    assert!(err.to_string().contains("DiskDict<string [8/4], string [8/4]>"), "{err}");
}

/// A format-1 store opened with other types is refused, naming what it recorded.
#[test]
fn format_1_stores_refuse_other_types() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("format1-u64.spdict"), dir.path().join("format1-u64.spdict")).unwrap();
    let opts = Options::new().location(dir.path());
    let err = DiskDict::<u64, String>::open_with("format1-u64", &opts).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("format-1"), "{message}");
    assert!(message.contains("u64 (archived: 8 bytes, align 8)"), "{message}");
}

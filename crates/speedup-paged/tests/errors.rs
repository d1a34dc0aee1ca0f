//! Bad input gets a typed error with an actionable message; nothing panics, nothing is lost.

use std::fs;
use std::io::{Seek, SeekFrom, Write};

use speedup_paged::{DiskDict, DiskList, Error, Options};

fn opts(dir: &tempfile::TempDir) -> Options {
    Options::new().location(dir.path()).size_limit(8).max_pages(2)
}

fn filled_dict(dir: &tempfile::TempDir, n: u64) -> std::path::PathBuf {
    let mut d: DiskDict<u64, String> = DiskDict::open_with("d", &opts(dir)).unwrap();
    for i in 0..n {
        d.insert(i, format!("value number {i}, long enough to live out of line")).unwrap();
    }
    let path = d.path().to_path_buf();
    d.close().unwrap();
    path
}

#[test]
fn a_second_handle_gets_locked_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let _d: DiskDict<u64, u64> = DiskDict::open_with("d", &opts(&dir)).unwrap();
    let err = DiskDict::<u64, u64>::open_with("d", &opts(&dir)).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("d.spdict"), "{err}");
}

#[test]
fn reopening_with_other_types_is_a_type_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    filled_dict(&dir, 3);
    let err = DiskDict::<u64, u32>::open_with("d", &opts(&dir)).unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("DiskDict<u64 [8/8], string [8/4]>"),
        "the message shows the stored schema: {err}"
    );
    assert!(err.to_string().contains("DiskDict<u64 [8/8], u32 [4/4]>"), "and the asked-for one: {err}");
    // Still readable with the right types afterwards: the failed open changed nothing.
    let d: DiskDict<u64, String> = DiskDict::open_with("d", &opts(&dir)).unwrap();
    assert_eq!(d.len(), 3);
}

#[test]
fn a_list_file_is_not_a_dict_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled_dict(&dir, 1);
    fs::copy(&path, dir.path().join("l.splist")).unwrap();
    let err = DiskList::<u64>::open_with("l", &opts(&dir)).unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err}");
}

#[test]
fn foreign_files_are_not_stores() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("x.spdict"), b"just some text, not a store at all").unwrap();
    let err = DiskDict::<u64, u64>::open_with("x", &opts(&dir)).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    fs::write(dir.path().join("y.spdict"), vec![7u8; 20_000]).unwrap();
    let err = DiskDict::<u64, u64>::open_with("y", &opts(&dir)).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
}

#[test]
fn truncated_files_are_corrupt_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled_dict(&dir, 200);
    let full = fs::read(&path).unwrap();
    for cut in [10, 4096, 8192, 8192 + 100, full.len() / 2, full.len() - 1] {
        fs::write(&path, &full[..cut]).unwrap();
        match DiskDict::<u64, String>::open_with("d", &opts(&dir)) {
            Err(Error::Corrupt { .. } | Error::NotAStore { .. }) => {}
            Err(e) => panic!("cut at {cut}: unexpected error {e}"),
            // The cut only removed free space or padding: every entry must still be right.
            Ok(d) => {
                for i in 0..200u64 {
                    match d.get(&i) {
                        Ok(v) => {
                            assert_eq!(v, Some(format!("value number {i}, long enough to live out of line")))
                        }
                        Err(Error::Corrupt { .. }) => {}
                        Err(e) => panic!("cut at {cut}: {e}"),
                    }
                }
            }
        }
    }
}

/// Flip bits all over a store: every read either returns the right value or `Corrupt`.
#[test]
fn bit_flips_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled_dict(&dir, 300);
    let pristine = fs::read(&path).unwrap();
    let mut detected = 0;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..150 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let at = (rng as usize) % pristine.len();
        let mut bytes = pristine.clone();
        bytes[at] ^= 1 << (round % 8);
        fs::write(&path, &bytes).unwrap();
        let d = match DiskDict::<u64, String>::open_with("d", &opts(&dir)) {
            Ok(d) => d,
            Err(Error::Corrupt { .. } | Error::NotAStore { .. }) => {
                detected += 1;
                continue;
            }
            Err(e) => panic!("flip at {at}: unexpected error {e}"),
        };
        // A hit header slot is reported; the store is then the newest flush or, if the hit
        // slot may have been the newer one, the flush before (here the empty new store).
        let rolled_back = d.header_fallback().is_some() && d.is_empty();
        if d.header_fallback().is_some() {
            detected += 1;
        }
        for i in 0..300u64 {
            match d.get(&i) {
                Ok(v) => assert_eq!(
                    v,
                    (!rolled_back).then(|| format!("value number {i}, long enough to live out of line")),
                    "flip at {at}"
                ),
                Err(Error::Corrupt { .. }) => detected += 1,
                Err(e) => panic!("flip at {at}: {e}"),
            }
        }
        let all: Vec<_> = d.iter().collect();
        assert!(all.iter().filter(|r| r.is_ok()).count() <= 300);
        d.discard(); // never write back a corrupt file
    }
    assert!(detected > 0, "no flip was ever detected");
}

#[test]
fn a_torn_header_slot_falls_back_to_the_other_one() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir);
    let mut d: DiskDict<u64, u64> = DiskDict::open_with("d", &o).unwrap();
    d.insert(1, 10).unwrap();
    d.flush().unwrap(); // generation 2, slot 0
    d.insert(2, 20).unwrap();
    let path = d.path().to_path_buf();
    d.close().unwrap(); // generation 3, slot 1
    // Tear the newest slot (generation 3 lives in slot 1, at 4096).
    let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(4096 + 100)).unwrap();
    f.write_all(&[0xAB; 64]).unwrap();
    drop(f);
    let d: DiskDict<u64, u64> = DiskDict::open_with("d", &o).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(10), "the older, complete header is used");
    assert_eq!(d.len(), 1);
    // ... and the caller can find out that the last flush was lost.
    let fallback = d.header_fallback().expect("the fallback is reported");
    assert_eq!((fallback.damaged_slot_offset, fallback.opened_generation), (4096, 2));
    let mut d = d;
    d.insert(3, 30).unwrap();
    d.close().unwrap(); // rewrites the damaged slot
    let d: DiskDict<u64, u64> = DiskDict::open_with("d", &o).unwrap();
    assert_eq!(d.header_fallback(), None, "repaired by the next flush");
    assert_eq!(d.len(), 2);
}

#[test]
fn an_undamaged_store_reports_no_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir);
    let mut d: DiskDict<u64, u64> = DiskDict::open_with("d", &o).unwrap();
    assert_eq!(d.header_fallback(), None, "a new store (slot B never written)");
    d.insert(1, 1).unwrap();
    d.close().unwrap();
    let mut l: DiskList<u64> = DiskList::open_with("l", &o).unwrap();
    l.push(1).unwrap();
    l.flush().unwrap();
    l.push(2).unwrap();
    l.close().unwrap();
    assert_eq!(DiskDict::<u64, u64>::open_with("d", &o).unwrap().header_fallback(), None);
    assert_eq!(DiskList::<u64>::open_with("l", &o).unwrap().header_fallback(), None);
}

#[test]
fn list_indexing_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut l: DiskList<u64> = DiskList::open_with("l", &opts(&dir)).unwrap();
    l.push(1).unwrap();
    assert_eq!(l.get(1).unwrap(), None, "get past the end is Ok(None), like Vec::get");
    let err = l.set(5, 0).unwrap_err();
    assert!(matches!(err, Error::IndexOutOfRange { index: 5, len: 1 }), "{err}");
    assert_eq!(err.to_string(), "index 5 is out of range for a list of length 1");
    assert!(matches!(l.remove(1), Err(Error::IndexOutOfRange { .. })));
    assert!(matches!(l.insert(2, 0), Err(Error::IndexOutOfRange { .. })));
    l.insert(1, 2).unwrap(); // insert at len is push
    assert_eq!(l.pop().unwrap(), Some(2));
    assert_eq!(l.pop().unwrap(), Some(1));
    assert_eq!(l.pop().unwrap(), None);
}

#[test]
fn bad_names_and_locations() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["", "a/b", ".."] {
        let err = DiskDict::<u64, u64>::open_with(bad, &opts(&dir)).unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
    }
    let file = dir.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    let err = DiskDict::<u64, u64>::open_with("d", &Options::new().location(file.join("sub"))).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let err = DiskDict::<u64, u64>::open_with(
        "d",
        &Options::new().location(dir.path().join("missing")).create_location(false),
    )
    .unwrap_err();
    assert!(matches!(err, Error::LocationMissing { .. }), "{err}");
}

/// The original picked up files of another store whose name started with this one's.
#[test]
fn stores_sharing_a_prefix_do_not_mix() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir);
    let mut a: DiskDict<u64, u64> = DiskDict::open_with("test", &o).unwrap();
    let mut b: DiskDict<u64, u64> = DiskDict::open_with("test2", &o).unwrap();
    a.insert(1, 1).unwrap();
    b.insert(2, 2).unwrap();
    a.close().unwrap();
    b.close().unwrap();
    let a: DiskDict<u64, u64> = DiskDict::open_with("test", &o).unwrap();
    assert_eq!((a.len(), a.get(&2).unwrap()), (1, None));
}

#[test]
fn default_location_is_home_pyspeedup() {
    let home = tempfile::tempdir().unwrap();
    // A child process, so that changing HOME cannot race with other tests.
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_open_default_location", "--nocapture", "--test-threads=1"])
        .env("HOME", home.path())
        .env("SPEEDUP_CHILD", "1")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(child.success());
    assert!(home.path().join(".PySpeedup").join("test.spdict").is_file());
}

#[test]
fn child_open_default_location() {
    if std::env::var_os("SPEEDUP_CHILD").is_none() {
        return;
    }
    let mut d: DiskDict<u64, String> = DiskDict::open("test").unwrap();
    d.insert(3, "d".into()).unwrap();
    d.close().unwrap();
}

/// Rewrites the header slot at `offset` with `edit` applied, and a valid checksum again
/// (what a deliberate attacker, not a bit flip, would do).
fn forge_slot(path: &std::path::Path, offset: u64, edit: impl FnOnce(&mut [u8])) {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut slot = vec![0u8; 4096];
    file.read_exact_at(&mut slot, offset).unwrap();
    edit(&mut slot);
    let sum = xxhash_rust::xxh3::xxh3_64(&slot[..4088]);
    slot[4088..].copy_from_slice(&sum.to_le_bytes());
    file.write_all_at(&slot, offset).unwrap();
}

fn generation_at(path: &std::path::Path, offset: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let file = fs::File::open(path).unwrap();
    let mut g = [0u8; 8];
    file.read_exact_at(&mut g, offset + 24).unwrap();
    u64::from_le_bytes(g)
}

#[test]
fn a_torn_first_flush_falls_back_to_the_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir);
    let mut d: DiskDict<u64, u64> = DiskDict::open_with("d", &o).unwrap();
    d.insert(1, 10).unwrap();
    let path = d.path().to_path_buf();
    d.close().unwrap(); // generation 2
    assert_eq!(generation_at(&path, 4096), 1, "creation wrote generation 1 into slot B");
    assert_eq!(generation_at(&path, 0), 2, "the first flush wrote slot A, keeping slot B");
    let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(2048)).unwrap();
    f.write_all(&[0xAB; 2048]).unwrap(); // tear slot A
    drop(f);
    let d: DiskDict<u64, u64> = DiskDict::open_with("d", &o).unwrap();
    assert_eq!(d.len(), 0, "back to the empty store of generation 1");
    assert_eq!(d.header_fallback().map(|f| f.opened_generation), Some(1));
}

#[test]
fn damage_to_the_older_slot_is_not_reported_as_a_lost_flush() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir);
    let mut d: DiskDict<u64, u64> = DiskDict::open_with("d", &o).unwrap();
    for k in 0..3 {
        d.insert(k, k).unwrap();
        d.flush().unwrap(); // generations 2, 3, 4: A = 4, B = 3
    }
    let path = d.path().to_path_buf();
    drop(d);
    let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(4096 + 500)).unwrap();
    f.write_all(&[0xFF]).unwrap(); // a bit flip in the older slot's label
    drop(f);
    let d: DiskDict<u64, u64> = DiskDict::open_with("d", &o).unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(d.header_fallback(), None, "nothing newer was lost");
}

#[test]
fn a_wiped_newest_slot_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir);
    let mut d: DiskDict<u64, u64> = DiskDict::open_with("d", &o).unwrap();
    for k in 0..4 {
        d.insert(k, k).unwrap();
        d.flush().unwrap(); // generations 2..=5: B = 5, A = 4
    }
    let path = d.path().to_path_buf();
    drop(d);
    let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(4096)).unwrap();
    f.write_all(&[0; 4096]).unwrap();
    drop(f);
    let d: DiskDict<u64, u64> = DiskDict::open_with("d", &o).unwrap();
    assert_eq!(d.len(), 3, "the last flush is gone with its slot");
    let fallback = d.header_fallback().expect("and that is reported");
    assert_eq!((fallback.damaged_slot_offset, fallback.opened_generation), (4096, 4));
}

#[test]
fn a_forged_hash_seed_is_corrupt_not_missing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir);
    let path = filled_dict(&dir, 100);
    let current = if generation_at(&path, 0) > generation_at(&path, 4096) { 0 } else { 4096 };
    forge_slot(&path, current, |slot| slot[72] ^= 1);
    let d: DiskDict<u64, String> = DiskDict::open_with("d", &o).unwrap();
    assert_eq!(d.len(), 100);
    let err = (0..100).find_map(|k| d.get(&k).err()).expect("a lookup notices the forged seed");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("stored hash"), "{err}");
}

#[test]
fn unknown_hash_algorithms_and_kinds_get_their_own_messages() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir);
    let path = filled_dict(&dir, 3);
    let current = if generation_at(&path, 0) > generation_at(&path, 4096) { 0 } else { 4096 };
    forge_slot(&path, current, |slot| slot[16] = 2);
    let err = DiskDict::<u64, String>::open_with("d", &o).unwrap_err();
    assert!(matches!(err, Error::UnsupportedHash { found: 2, supported: 1, .. }), "{err}");
    assert!(err.to_string().contains("hash algorithm 2"), "{err}");
    forge_slot(&path, current, |slot| {
        slot[16] = 1;
        slot[12] = 7;
    });
    let err = DiskDict::<u64, String>::open_with("d", &o).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }) && err.to_string().contains("kind 7"), "{err}");
}

#[test]
fn crafted_extents_near_u64_max_are_corrupt_not_panics() {
    for (offset, len) in [(u64::MAX - 63, 64), (8192, u64::MAX), (u64::MAX, u64::MAX)] {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(&dir);
        let path = filled_dict(&dir, 3);
        let current = if generation_at(&path, 0) > generation_at(&path, 4096) { 0 } else { 4096 };
        forge_slot(&path, current, |slot| {
            slot[40..48].copy_from_slice(&offset.to_le_bytes());
            slot[48..56].copy_from_slice(&len.to_le_bytes());
        });
        let err = DiskDict::<u64, String>::open_with("d", &o).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{offset}+{len}: {err}");
    }
}

/// A root of 32 empty buckets whose depths would need a 2^30-slot (4 GiB) directory, in a
/// file of a few KiB: refused before anything is allocated.
#[test]
fn a_crafted_deep_root_is_refused_before_allocating() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir);
    let path = filled_dict(&dir, 0);
    let mut root = b"SPDR".to_vec();
    let mut buckets = vec![(30u8, 0u64)];
    buckets.extend((1..=30u8).map(|d| (d, 1u64 << (d - 1))));
    root.extend_from_slice(&(buckets.len() as u32).to_le_bytes());
    for (depth, prefix) in &buckets {
        root.extend_from_slice(&[*depth, 0, 0, 0, 0, 0, 0, 0]);
        for v in [*prefix, 0, 0, 0, 0] {
            root.extend_from_slice(&v.to_le_bytes());
        }
    }
    let file = fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let at = file.metadata().unwrap().len().next_multiple_of(64);
    file.write_all_at(&root, at).unwrap();
    file.set_len(at + (root.len() as u64).next_multiple_of(64)).unwrap();
    drop(file);
    let sum = xxhash_rust::xxh3::xxh3_64(&root);
    let current = if generation_at(&path, 0) > generation_at(&path, 4096) { 0 } else { 4096 };
    forge_slot(&path, current, |slot| {
        for (i, v) in [at, root.len() as u64, sum, 0].into_iter().enumerate() {
            slot[40 + 8 * i..48 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        slot[80..84].copy_from_slice(&0u32.to_le_bytes());
    });
    let err = DiskDict::<u64, String>::open_with("d", &o).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }) && err.to_string().contains("deeper"), "{err}");
}

//! The std-shaped collection API: keys/values, entry, extend, clear, retain, truncate,
//! first/last, double-ended iteration; each checked against std and across a reopen.

use std::collections::HashMap;

use speedup_paged::{DiskDict, DiskList, Options};

fn opts(dir: &tempfile::TempDir) -> Options {
    Options::new().location(dir.path()).size_limit(8).max_pages(2)
}

#[test]
fn dict_keys_values_and_into_iterator() {
    let dir = tempfile::tempdir().unwrap();
    let mut d: DiskDict<u32, String> = DiskDict::open_with("d", &opts(&dir)).unwrap();
    d.extend((0..100).map(|i| (i, format!("v{i}")))).unwrap();
    d.flush().unwrap();
    d.extend((90..110).map(|i| (i, format!("w{i}")))).unwrap(); // some in the overlay, some overriding
    assert_eq!(d.len(), 110);
    let mut keys: Vec<u32> = d.keys().map(Result::unwrap).collect();
    keys.sort();
    assert_eq!(keys, (0..110).collect::<Vec<_>>());
    let mut values: Vec<String> = d.values().map(Result::unwrap).collect();
    values.sort();
    let mut want: Vec<String> =
        (0..90).map(|i| format!("v{i}")).chain((90..110).map(|i| format!("w{i}"))).collect();
    want.sort();
    assert_eq!(values, want);
    let mut n = 0;
    for entry in &d {
        let (k, v) = entry.unwrap();
        assert_eq!(v, if k < 90 { format!("v{k}") } else { format!("w{k}") });
        n += 1;
    }
    assert_eq!(n, 110);
}

#[test]
fn dict_entry_or_insert() {
    let dir = tempfile::tempdir().unwrap();
    let mut d: DiskDict<String, u64> = DiskDict::open_with("e", &opts(&dir)).unwrap();
    let mut model: HashMap<String, u64> = HashMap::new();
    for i in 0..500u64 {
        let k = format!("k{}", i % 37);
        assert_eq!(d.entry(k.clone()).or_insert(i).unwrap(), *model.entry(k.clone()).or_insert(i));
        let mut called = false;
        let got = d
            .entry(k.clone())
            .or_insert_with(|| {
                called = true;
                0
            })
            .unwrap();
        assert!(!called, "or_insert_with runs only for a missing key");
        assert_eq!(got, model[&k]);
    }
    assert_eq!(d.entry("fresh".into()).or_default().unwrap(), 0);
    assert_eq!(d.len(), 38);
    assert_eq!(d.entry("x".into()).key(), "x");
}

#[test]
fn dict_clear_and_retain_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut d: DiskDict<u64, u64> = DiskDict::open_with("r", &opts(&dir)).unwrap();
        d.extend((0..1_000).map(|i| (i, i * 2))).unwrap();
        d.flush().unwrap();
        d.insert(5_000, 1).unwrap(); // pending in the overlay
        d.retain(|k, v| k % 3 == 0 && *v != 2).unwrap();
        let mut keys: Vec<u64> = d.keys().map(Result::unwrap).collect();
        keys.sort();
        let want: Vec<u64> = (0..1_000).filter(|k| k % 3 == 0).collect();
        assert_eq!(keys, want);
        assert_eq!(d.len(), want.len());
        d.close().unwrap();
    }
    let mut d: DiskDict<u64, u64> = DiskDict::open_with("r", &opts(&dir)).unwrap();
    assert_eq!(d.len(), 334);
    assert_eq!(d.get(&999).unwrap(), Some(1_998));
    assert_eq!(d.get(&998).unwrap(), None);
    d.clear();
    assert!(d.is_empty());
    assert_eq!(d.get(&999).unwrap(), None);
    assert_eq!(d.iter().count(), 0);
    d.insert(1, 1).unwrap();
    d.close().unwrap();
    let d: DiskDict<u64, u64> = DiskDict::open_with("r", &opts(&dir)).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d.get(&1).unwrap(), Some(1));
    // A clear without a flush is rolled back by discard, like any other change.
    let mut d = d;
    d.clear();
    d.discard();
    let d: DiskDict<u64, u64> = DiskDict::open_with("r", &opts(&dir)).unwrap();
    assert_eq!(d.len(), 1);
}

#[test]
fn list_first_last_extend_truncate_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut l: DiskList<u64> = DiskList::open_with("l", &opts(&dir)).unwrap();
    assert_eq!((l.first().unwrap(), l.last().unwrap()), (None, None));
    l.extend(0..100).unwrap();
    l.flush().unwrap();
    let mut model: Vec<u64> = (0..100).collect();
    assert_eq!((l.first().unwrap(), l.last().unwrap()), (Some(0), Some(99)));
    for cut in [100, 150, 77, 64, 63, 9, 1] {
        l.truncate(cut).unwrap();
        model.truncate(cut);
        assert_eq!(l.len(), model.len(), "truncate({cut})");
        assert_eq!(l.iter().map(Result::unwrap).collect::<Vec<_>>(), model);
    }
    l.extend(10..20).unwrap();
    model.extend(10..20);
    l.close().unwrap();
    let mut l: DiskList<u64> = DiskList::open_with("l", &opts(&dir)).unwrap();
    assert_eq!(l.iter().map(Result::unwrap).collect::<Vec<_>>(), model);
    l.truncate(0).unwrap();
    assert!(l.is_empty());
    l.push(5).unwrap();
    l.clear();
    assert_eq!(l.len(), 0);
    assert_eq!(l.get(0).unwrap(), None);
    l.push(6).unwrap();
    l.close().unwrap();
    let l: DiskList<u64> = DiskList::open_with("l", &opts(&dir)).unwrap();
    assert_eq!(l.iter().map(Result::unwrap).collect::<Vec<_>>(), [6]);
}

#[test]
fn list_iterates_from_both_ends_with_an_exact_length() {
    let dir = tempfile::tempdir().unwrap();
    let mut l: DiskList<u32> = DiskList::open_with("i", &opts(&dir)).unwrap();
    l.extend(0..50).unwrap();
    let back: Vec<u32> = l.iter().rev().map(Result::unwrap).collect();
    assert_eq!(back, (0..50).rev().collect::<Vec<_>>());
    let mut it = l.iter();
    assert_eq!(it.len(), 50);
    assert_eq!(it.next().unwrap().unwrap(), 0);
    assert_eq!(it.next_back().unwrap().unwrap(), 49);
    assert_eq!(it.len(), 48);
    assert_eq!(it.nth(10).unwrap().unwrap(), 11);
    assert_eq!(it.by_ref().map(Result::unwrap).collect::<Vec<_>>(), (12..49).collect::<Vec<_>>());
    assert!(it.next().is_none() && it.next_back().is_none());
    let mut it = l.iter();
    assert!(it.nth(usize::MAX).is_none(), "nth past the end");
    assert_eq!((&l).into_iter().len(), 50);
}

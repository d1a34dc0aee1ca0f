//! Model-based tests: random operation sequences against `HashMap` / `Vec`, with flushes,
//! reopens and simulated crashes in between, on tiny pages so that merges, splits and
//! evictions happen all the time.

use std::collections::HashMap;

use proptest::prelude::*;
use speedup_paged::{DiskDict, DiskList, Error, Options};
use speedup_test_support::within;

#[derive(Debug, Clone)]
enum DictOp {
    Insert(u16, String),
    Remove(u16),
    Get(u16),
    Flush,
    /// Drop (which flushes) and open again.
    Reopen,
    /// Close without flushing: the store must come back as of the last flush.
    Crash,
    Iterate,
}

fn dict_op() -> impl Strategy<Value = DictOp> {
    prop_oneof![
        8 => (0u16..300, "[a-z]{0,40}").prop_map(|(k, v)| DictOp::Insert(k, v)),
        3 => (0u16..300).prop_map(DictOp::Remove),
        4 => (0u16..300).prop_map(DictOp::Get),
        1 => Just(DictOp::Flush),
        1 => Just(DictOp::Reopen),
        1 => Just(DictOp::Crash),
        1 => Just(DictOp::Iterate),
    ]
}

fn key(k: u16) -> String {
    // String keys: their hash must survive reopening (the original's did not).
    format!("key-{k}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn dict_behaves_like_a_hashmap(ops in proptest::collection::vec(dict_op(), 1..300), size_limit in 1usize..8, max_pages in 1usize..4) {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::new().location(dir.path()).size_limit(size_limit).max_pages(max_pages);
        let mut d: DiskDict<String, String> = DiskDict::open_with("model", &opts).unwrap();
        let mut model: HashMap<String, String> = HashMap::new();
        let mut flushed = model.clone();
        for op in ops {
            match op {
                DictOp::Insert(k, v) => prop_assert_eq!(d.insert(key(k), v.clone()).unwrap(), model.insert(key(k), v)),
                DictOp::Remove(k) => prop_assert_eq!(d.remove(&key(k)).unwrap(), model.remove(&key(k))),
                DictOp::Get(k) => {
                    prop_assert_eq!(d.get(&key(k)).unwrap(), model.get(&key(k)).cloned());
                    prop_assert_eq!(d.contains_key(&key(k)).unwrap(), model.contains_key(&key(k)));
                }
                DictOp::Flush => {
                    d.flush().unwrap();
                    flushed = model.clone();
                }
                DictOp::Reopen => {
                    drop(d);
                    d = DiskDict::open_with("model", &opts).unwrap();
                    flushed = model.clone();
                }
                DictOp::Crash => {
                    d.discard();
                    d = DiskDict::open_with("model", &opts).unwrap();
                    model = flushed.clone();
                }
                DictOp::Iterate => {
                    let mut got: Vec<(String, String)> = d.iter().collect::<Result<_, Error>>().unwrap();
                    got.sort();
                    let mut want: Vec<(String, String)> = model.clone().into_iter().collect();
                    want.sort();
                    prop_assert_eq!(got, want);
                }
            }
            prop_assert_eq!(d.len(), model.len());
        }
    }
}

#[derive(Debug, Clone)]
enum ListOp {
    Push(u32),
    Pop,
    Get(usize),
    Set(usize, u32),
    Insert(usize, u32),
    Remove(usize),
    Flush,
    Reopen,
    Crash,
    Iterate,
}

fn list_op() -> impl Strategy<Value = ListOp> {
    prop_oneof![
        8 => any::<u32>().prop_map(ListOp::Push),
        2 => Just(ListOp::Pop),
        4 => (0usize..200).prop_map(ListOp::Get),
        3 => (0usize..200, any::<u32>()).prop_map(|(i, v)| ListOp::Set(i, v)),
        3 => (0usize..200, any::<u32>()).prop_map(|(i, v)| ListOp::Insert(i, v)),
        3 => (0usize..200).prop_map(ListOp::Remove),
        1 => Just(ListOp::Flush),
        1 => Just(ListOp::Reopen),
        1 => Just(ListOp::Crash),
        1 => Just(ListOp::Iterate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn list_behaves_like_a_vec(ops in proptest::collection::vec(list_op(), 1..300), size_limit in 1usize..6, max_pages in 1usize..4) {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::new().location(dir.path()).size_limit(size_limit).max_pages(max_pages);
        let mut l: DiskList<u32> = DiskList::open_with("model", &opts).unwrap();
        let mut model: Vec<u32> = Vec::new();
        let mut flushed = model.clone();
        for op in ops {
            match op {
                ListOp::Push(v) => { l.push(v).unwrap(); model.push(v); }
                ListOp::Pop => prop_assert_eq!(l.pop().unwrap(), model.pop()),
                ListOp::Get(i) => prop_assert_eq!(l.get(i).unwrap(), model.get(i).copied()),
                ListOp::Set(i, v) => match model.get_mut(i) {
                    Some(slot) => prop_assert_eq!(l.set(i, v).unwrap(), std::mem::replace(slot, v)),
                    None => prop_assert!(matches!(l.set(i, v), Err(Error::IndexOutOfRange { .. })), "expected IndexOutOfRange"),
                },
                ListOp::Insert(i, v) => if i <= model.len() {
                    l.insert(i, v).unwrap();
                    model.insert(i, v);
                } else {
                    prop_assert!(matches!(l.insert(i, v), Err(Error::IndexOutOfRange { .. })), "expected IndexOutOfRange");
                },
                ListOp::Remove(i) => if i < model.len() {
                    prop_assert_eq!(l.remove(i).unwrap(), model.remove(i));
                } else {
                    prop_assert!(matches!(l.remove(i), Err(Error::IndexOutOfRange { .. })), "expected IndexOutOfRange");
                },
                ListOp::Flush => { l.flush().unwrap(); flushed = model.clone(); }
                ListOp::Reopen => {
                    drop(l);
                    l = DiskList::open_with("model", &opts).unwrap();
                    flushed = model.clone();
                }
                ListOp::Crash => {
                    l.discard();
                    l = DiskList::open_with("model", &opts).unwrap();
                    model = flushed.clone();
                }
                ListOp::Iterate => {
                    let got: Vec<u32> = l.iter().collect::<Result<_, Error>>().unwrap();
                    prop_assert_eq!(&got, &model);
                }
            }
            prop_assert_eq!(l.len(), model.len());
        }
    }
}

/// The smallest settings (one item per page, one page in memory) at scale: 100k operations
/// (`SPEEDUP_SMALL_OPS`) on both stores, against `HashMap` / `Vec`, with flushes and a
/// reopen. Tiny pages used to split the directory to 2^30 slots on colliding hash bits.
#[test]
fn smallest_settings_at_scale_behave_like_std() {
    let ops: u64 = std::env::var("SPEEDUP_SMALL_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    // 100k operations on one-item pages take seconds; five minutes is a hang.
    within(300, move || {
        let dir = tempfile::tempdir().unwrap();
        // size_limit(0) is clamped to 1, like the original's minimum.
        let opts = Options::new().location(dir.path()).size_limit(0).max_pages(1);
        assert_eq!(opts.get_size_limit(), 1);
        let mut d: DiskDict<u64, u64> = DiskDict::open_with("small", &opts).unwrap();
        let mut l: DiskList<u64> = DiskList::open_with("small", &opts).unwrap();
        let mut model = HashMap::new();
        let mut list = Vec::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..ops {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 40_000;
            match x % 10 {
                0..=5 => assert_eq!(d.insert(k, i).unwrap(), model.insert(k, i)),
                6 => assert_eq!(d.remove(&k).unwrap(), model.remove(&k)),
                _ => assert_eq!(d.get(&k).unwrap(), model.get(&k).copied()),
            }
            match x % 7 {
                0 if !list.is_empty() => assert_eq!(l.pop().unwrap(), list.pop()),
                1 if !list.is_empty() => {
                    let at = (k as usize) % list.len();
                    assert_eq!(l.set(at, i).unwrap(), std::mem::replace(&mut list[at], i));
                }
                _ => {
                    l.push(i).unwrap();
                    list.push(i);
                }
            }
            if i % 25_000 == 24_999 {
                d.flush().unwrap();
                l.flush().unwrap();
            }
        }
        d.close().unwrap();
        l.close().unwrap();
        let d: DiskDict<u64, u64> = DiskDict::open_with("small", &opts).unwrap();
        let l: DiskList<u64> = DiskList::open_with("small", &opts).unwrap();
        assert_eq!(d.len(), model.len());
        for (k, v) in &model {
            assert_eq!(d.get(k).unwrap(), Some(*v));
        }
        assert_eq!(l.iter().map(Result::unwrap).collect::<Vec<_>>(), list);
    });
}

//! One small test per sub-crate, reached through the umbrella: a cheap guard that the
//! re-exports stay wired (crossbeam's `tests/subcrates.rs`).

#[cfg(feature = "paged")]
#[test]
fn paged() {
    use pyspeedup::paged::{DiskList, Options};
    let dir = tempfile::tempdir().unwrap();
    let mut l: DiskList<u32> = DiskList::open_with("l", &Options::new().location(dir.path())).unwrap();
    l.push(7).unwrap();
    assert_eq!(l.get(0).unwrap(), Some(7));
}

#[cfg(feature = "cache")]
#[test]
fn cache() {
    use pyspeedup::cache::Cache;
    let square = Cache::new(|_: &Cache<u32, u32>, n| n * n);
    assert_eq!(square.get(9), 81);
    assert!(square.contains_key(&9));
}

#[cfg(feature = "buffer")]
#[test]
fn buffer() {
    use pyspeedup::buffer::Buffer;
    let count = Buffer::new(0u32..);
    assert_eq!(count.get(15), Some(&15));
}

#[cfg(feature = "eat")]
#[test]
fn eat() {
    use pyspeedup::eat::{Ptr, eat};
    let yum: Vec<Ptr<Vec<i32>>> = eat(vec![1, 2], 3).collect();
    yum[2].write()[0] = 9;
    assert_eq!(yum[0].read()[0], 9);
}

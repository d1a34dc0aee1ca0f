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

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

/// `#[storable]` through the umbrella. A crate that depends on `pyspeedup` alone gets the
/// `pyspeedup::paged` path found from its Cargo.toml; here, where speedup-paged is a
/// dependency too, the path is given to exercise that form.
#[cfg(feature = "paged")]
#[test]
fn paged_storable_through_the_umbrella() {
    use pyspeedup::paged::{DiskDict, Options};

    #[pyspeedup::prelude::storable(crate = pyspeedup::paged)]
    #[derive(Debug, PartialEq)]
    struct Point {
        x: i32,
        y: i32,
    }

    let dir = tempfile::tempdir().unwrap();
    let mut d: DiskDict<u8, Point> = DiskDict::open_with("p", &Options::new().location(dir.path())).unwrap();
    d.insert(1, Point { x: 1, y: 2 }).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(Point { x: 1, y: 2 }));
    assert_eq!(pyspeedup::paged::schema_of::<Point>(), "struct{x:i32,y:i32}");
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

/// With `tokio`, the prelude has the async types too.
#[cfg(all(feature = "buffer", feature = "cache", feature = "tokio"))]
#[test]
fn async_types_in_the_prelude() {
    use pyspeedup::prelude::{AsyncBuffer, AsyncCache};
    assert!(std::any::type_name::<AsyncCache<u32, u32>>().contains("AsyncCache"));
    assert!(std::any::type_name::<AsyncBuffer<u32>>().contains("AsyncBuffer"));
}

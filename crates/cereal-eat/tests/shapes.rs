//! Property tests: no shape and no file header gets a length past its memory. Each property
//! compares the crate with a model computed in `u128` (which cannot wrap for these
//! inputs): a call succeeds exactly when the model says the shape is possible, and then
//! every length the crate hands out is the model's.
//!
//! Dimensions are drawn to be hostile: 0, small, powers of two and their neighbours,
//! `usize::MAX`, `isize::MAX`, and 6148914691236517208 (times 3 it wraps to 8).
//! `PROPTEST_CASES` sets the number of cases (256 by default). The `miri_*` properties
//! touch no files and also run under Miri (`cargo xtask miri`, 4 cases).

use std::path::Path;

use cereal_eat::{Error, SharedArray, split, split_mut};
use proptest::prelude::*;

const WRAPS_TO_8: usize = 6_148_914_691_236_517_208;
const HEADER: u128 = 128;

fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..6,
        1 => (0u32..64).prop_map(|b| 1usize << b),
        1 => (1u32..64).prop_map(|b| (1usize << b) + 1),
        1 => (1u32..64).prop_map(|b| (1usize << b) - 1),
        1 => prop_oneof![Just(WRAPS_TO_8), Just(usize::MAX), Just(isize::MAX as usize), Just(3)],
        1 => any::<usize>(),
    ]
}

fn shape(max_dims: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(dim(), 0..=max_dims)
}

/// Elements in `shape` if a buffer of it can exist (non-zero dimensions multiply to at
/// most `isize::MAX`), in arithmetic that cannot wrap.
fn model_count(shape: &[usize]) -> Option<usize> {
    let nonzero = shape.iter().filter(|&&d| d != 0).try_fold(1u128, |n, &d| {
        let n = n * d as u128;
        (n <= isize::MAX as u128).then_some(n)
    })?;
    Some(if shape.contains(&0) { 0 } else { nonzero as usize })
}

/// Which segments `split(len, shape, n)` must give: `None` for an error.
fn model_split(shape: &[usize], len: usize, n: usize) -> Option<Vec<usize>> {
    let count = model_count(shape)?;
    let rows = *shape.first()?;
    if count != len || n == 0 || n > rows.max(1) {
        return None;
    }
    let row_len = model_count(&shape[1..])?;
    Some((0..n).map(|pos| (rows / n + usize::from(pos < rows % n)) * row_len).collect())
}

/// A data length that often matches the shape (so the success path is exercised too).
fn shape_and_len() -> impl Strategy<Value = (Vec<usize>, usize, usize)> {
    (shape(4), prop::bool::weighted(0.8), 0usize..70, 0usize..9).prop_map(|(shape, matching, other, n)| {
        let len = match model_count(&shape) {
            Some(count) if matching && !shape.is_empty() => count,
            _ => other,
        };
        (shape, len, n)
    })
}

proptest! {
    #[test]
    fn miri_split_gives_exactly_the_models_segments((shape, len, n) in shape_and_len()) {
        // Zero-sized elements: a `Vec` of any length costs nothing, so huge shapes that are
        // possible really succeed, and wrong ones must not.
        let result = split(vec![(); len], &shape, n);
        match (model_split(&shape, len, n), result) {
            (Some(lengths), Ok((whole, segments))) => {
                prop_assert_eq!(segments.iter().map(|s| s.len()).collect::<Vec<_>>(), lengths);
                let mut segments = segments;
                for s in &mut segments {
                    prop_assert_eq!(model_count(s.shape()), Some(s.len()));
                    // The n-dimensional view of any accepted shape exists (no panic).
                    let shape = s.shape().to_vec();
                    let view = s.view_mut();
                    prop_assert_eq!(view.shape(), &shape[..]);
                }
                prop_assert_eq!(whole.join(segments).expect("every segment back").len(), len);
            }
            (None, Err(Error::Shape { .. })) => {}
            (model, result) => prop_assert!(false, "{shape:?} len {len} n {n}: model {model:?}, got {:?}", result.map(|r| r.1.len())),
        }
    }

    #[test]
    fn miri_split_writes_stay_inside_each_segment((shape, len, n) in shape_and_len()) {
        if len > 4096 {
            return Ok(()); // too big to fill; `miri_split_gives_exactly_the_models_segments` covers it
        }
        let result = split(vec![u16::MAX; len], &shape, n);
        match (model_split(&shape, len, n), result) {
            (Some(_), Ok((whole, mut segments))) => {
                for s in &mut segments {
                    let pos = s.pos() as u16;
                    s.iter_mut().for_each(|v| *v = pos);
                    let view = s.view_mut();
                    prop_assert_eq!(view.len(), view.shape().iter().product::<usize>());
                }
                let data = whole.join(segments).expect("every segment back");
                prop_assert!(data.windows(2).all(|w| w[0] <= w[1]), "segments in order, each written once: {data:?}");
                prop_assert!(data.iter().all(|&v| (v as usize) < n));
            }
            (None, Err(Error::Shape { .. })) => {}
            (model, result) => prop_assert!(false, "{shape:?} len {len} n {n}: model {model:?}, got {:?}", result.map(|r| r.1.len())),
        }
    }

    #[test]
    fn miri_split_mut_gives_the_same_segments_or_an_error((shape, len, n) in shape_and_len()) {
        let mut data = vec![(); len];
        match (model_split(&shape, len, n), split_mut(&mut data, &shape, n)) {
            (Some(lengths), Ok(segments)) => {
                prop_assert_eq!(segments.iter().map(|s| s.len()).collect::<Vec<_>>(), lengths);
            }
            (None, Err(Error::Shape { .. })) => {}
            (model, result) => prop_assert!(false, "{shape:?} len {len} n {n}: model {model:?}, got {:?}", result.map(|r| r.len())),
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
    fn create_accepts_exactly_the_shapes_that_fit(shape in shape(9)) {
        let bytes = model_count(&shape)
            .map(|count| HEADER + 8 * count as u128)
            .filter(|&b| (1..=8).contains(&shape.len()) && b <= isize::MAX as u128);
        // Possible but huge stores would be real (sparse) files: leave them to the unit tests.
        if bytes.is_some_and(|b| b > 1 << 20) {
            return Ok(());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        match (bytes, SharedArray::<u64>::create(&path, &shape)) {
            (Some(bytes), Ok(store)) => {
                prop_assert_eq!(std::fs::metadata(&path).unwrap().len() as u128, bytes);
                prop_assert_eq!(store.len() as u128, (bytes - HEADER) / 8);
                if let Some(last) = store.len().checked_sub(1) {
                    store.set(last, 7);
                    prop_assert_eq!(SharedArray::<u64>::open(&path).unwrap().get(last), 7);
                }
            }
            (None, Err(Error::Shape { .. })) => {
                prop_assert!(!path.exists());
            }
            (model, result) => prop_assert!(false, "{shape:?}: model {model:?} bytes, got {result:?}"),
        }
        prop_assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), usize::from(bytes.is_some()), "no temporary file left");
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
    fn open_refuses_every_crafted_header_that_does_not_fit(h in crafted()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crafted");
        std::fs::write(&path, h.bytes()).unwrap();
        let bytes = h.bytes();
        match (model_open(&bytes), SharedArray::<u64>::open(&path)) {
            (Ok(shape), Ok(store)) => {
                let len = model_count(&shape).unwrap();
                prop_assert_eq!(store.len(), len);
                prop_assert_eq!(store.shape(), &shape[..]);
                for i in [0, len / 2, len.wrapping_sub(1)].into_iter().filter(|&i| i < len) {
                    store.set(i, 0);
                    store.fetch_add(i, 1);
                    prop_assert_eq!(store.get(i), 1);
                }
                prop_assert!(std::panic::catch_unwind(|| store.get(len)).is_err());
                return Ok(());
            }
            (Err(Refusal::NotShared), Err(Error::NotShared { .. }))
            | (Err(Refusal::Type), Err(Error::TypeMismatch { .. })) => {}
            (Err(Refusal::Size(want)), Err(Error::SizeMismatch { expected, found, .. })) => {
                prop_assert_eq!((expected as u128, found as usize), (want, bytes.len()));
            }
            (model, result) => prop_assert!(false, "{h:?}: model {model:?}, got {result:?}"),
        }
        // Nothing about a refused file is changed.
        prop_assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}

/// A file that may or may not be a store: every header field, and the file's length,
/// chosen to be right most of the time and hostile the rest.
#[derive(Debug, Clone)]
struct Crafted {
    magic_ok: bool,
    version: u32,
    tag: u32,
    ndims: u32,
    dims: Vec<usize>,
    junk: Option<(usize, u8)>,
    file_len: usize,
}

#[derive(Debug)]
enum Refusal {
    NotShared,
    Type,
    Size(u128),
}

impl Crafted {
    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.file_len.max(128)];
        if self.magic_ok {
            b[..8].copy_from_slice(b"CEREALSH");
        }
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.tag.to_le_bytes());
        b[16..20].copy_from_slice(&self.ndims.to_le_bytes());
        for (i, d) in self.dims.iter().enumerate() {
            b[24 + 8 * i..32 + 8 * i].copy_from_slice(&(*d as u64).to_le_bytes());
        }
        if let Some((at, v)) = self.junk {
            b[at] = v;
        }
        b.truncate(self.file_len);
        b
    }
}

/// What opening `file` as `u64` must give, read from its bytes independently of the crate
/// (the layout in the `shm` module docs): the shape, or why not.
fn model_open(file: &[u8]) -> Result<Vec<usize>, Refusal> {
    let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().unwrap());
    if file.len() < 128 || &file[..8] != b"CEREALSH" || u32_at(8) != 1 {
        return Err(Refusal::NotShared);
    }
    let ndims = u32_at(16) as usize;
    if !(1..=8).contains(&ndims)
        || u32_at(20) != 0
        || (ndims..8).any(|i| u64_at(24 + 8 * i) != 0)
        || file[88..128].iter().any(|&b| b != 0)
    {
        return Err(Refusal::NotShared);
    }
    if u32_at(12) != 4 {
        return Err(Refusal::Type);
    }
    let shape: Vec<usize> = (0..ndims).map(|i| u64_at(24 + 8 * i) as usize).collect();
    let count = model_count(&shape).ok_or(Refusal::NotShared)?;
    let bytes = HEADER + 8 * count as u128;
    if bytes > isize::MAX as u128 {
        return Err(Refusal::NotShared);
    }
    if bytes != file.len() as u128 {
        return Err(Refusal::Size(bytes));
    }
    Ok(shape)
}

fn crafted() -> impl Strategy<Value = Crafted> {
    let dims = prop_oneof![4 => prop::collection::vec(0usize..40, 1..=3), 2 => shape(8)];
    (
        prop::bool::weighted(0.95),
        prop_oneof![9 => Just(1u32), 1 => any::<u32>()],
        prop_oneof![8 => Just(4u32), 2 => 0u32..12],
        dims,
        prop_oneof![8 => Just(None), 1 => Just(Some(1)), 1 => any::<u32>().prop_map(Some)],
        prop_oneof![9 => Just(None), 1 => (8usize..128, any::<u8>()).prop_map(Some)],
        prop_oneof![4 => Just(0i64), 2 => -17i64..17, 1 => -2048i64..2048],
    )
        .prop_map(|(magic_ok, version, tag, dims, extra_dims, junk, delta)| {
            // Usually the header's dimension count is right; sometimes it claims more (the
            // extra dimensions read as 0) or anything at all.
            let ndims = match extra_dims {
                None => dims.len() as u32,
                Some(extra) => (dims.len() as u32).wrapping_add(extra),
            };
            let ideal = model_count(&dims).map(|c| HEADER + 8 * c as u128).filter(|&b| b <= 1 << 20);
            let base = ideal.map_or(128, |b| b as i64);
            let file_len = (base + delta).clamp(0, 1 << 20) as usize;
            Crafted { magic_ok, version, tag, ndims, dims, junk, file_len }
        })
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot map files")]
fn issue_13_examples() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    assert!(matches!(SharedArray::<u64>::create(p("a"), &[(1 << 61) + 1]), Err(Error::Shape { .. })));
    assert!(!Path::new(&p("a")).exists());
    assert!(matches!(split(vec![0u8; 8], &[WRAPS_TO_8, 3], 3), Err(Error::Shape { .. })));
    assert!(matches!(split_mut(&mut [0u8; 8], &[WRAPS_TO_8, 3], 3), Err(Error::Shape { .. })));
    // A store whose header is rewritten to claim 10_000_000 cells over a 136-byte file.
    SharedArray::<u64>::create(p("b"), &[1]).unwrap();
    let mut bytes = std::fs::read(p("b")).unwrap();
    bytes[24..32].copy_from_slice(&10_000_000u64.to_le_bytes());
    std::fs::write(p("c"), &bytes).unwrap();
    let e = SharedArray::<u64>::open(p("c")).unwrap_err();
    assert!(matches!(e, Error::SizeMismatch { expected: 80_000_128, found: 136, .. }), "{e}");
}

//! A shared store updated in place by real child processes.

use std::process::{Command, Stdio};

use cereal_eat::{Error, SharedArray};

const N: usize = 100_000;
const ROUNDS: u64 = 20;

#[test]
fn child_add_to_half() {
    let (Ok(path), Ok(half)) = (std::env::var("CEREAL_SHM"), std::env::var("CEREAL_HALF")) else { return };
    let store: SharedArray<u64> = SharedArray::open(&path).unwrap();
    let half: usize = half.parse().unwrap();
    for _ in 0..ROUNDS {
        for i in half * N / 2..(half + 1) * N / 2 {
            store.fetch_add(i, 1);
        }
        store.fetch_add(N, 1); // one element everybody updates
    }
}

#[test]
fn two_processes_update_one_store_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.shm");
    let store: SharedArray<u64> = SharedArray::create(&path, &[N + 1]).unwrap();
    let children: Vec<_> = (0..2)
        .map(|half| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child_add_to_half", "--test-threads=1"])
                .env("CEREAL_SHM", &path)
                .env("CEREAL_HALF", half.to_string())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert!((0..N).all(|i| store.get(i) == ROUNDS), "every element updated by its process");
    assert_eq!(store.get(N), 2 * ROUNDS, "concurrent updates of one element are not lost");
}

#[test]
fn opening_checks_type_and_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    SharedArray::<f64>::create(&path, &[4, 4]).unwrap().set(5, 2.5);
    let same: SharedArray<f64> = SharedArray::open(&path).unwrap();
    assert_eq!((same.shape(), same.get(5)), (&[4usize, 4][..], 2.5));
    assert!(matches!(SharedArray::<i64>::open(&path), Err(Error::TypeMismatch { .. })));
    std::fs::write(dir.path().join("foreign"), b"not a store, just text of some length......................................................................................................").unwrap();
    assert!(matches!(SharedArray::<f64>::open(dir.path().join("foreign")), Err(Error::NotShared { .. })));
    assert!(matches!(SharedArray::<f64>::open(dir.path().join("missing")), Err(Error::Io { .. })));
    assert!(matches!(SharedArray::<f64>::create(dir.path().join("x"), &[]), Err(Error::Shape { .. })));
}

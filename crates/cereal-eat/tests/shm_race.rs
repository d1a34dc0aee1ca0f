//! Many processes create or open one shared array at the same moment, round after round;
//! `create` beside a live mapping; and what an outside `truncate` does. The children are
//! this test binary re-run with `CEREAL_RACE_ROLE` set. A child that dies of a signal
//! (SIGBUS, SIGSEGV, ...) counts as a failure, as does a lost update or a round with other
//! than exactly one creator.
//!
//! Size knobs: `CEREAL_RACE_ROUNDS` (default 20 per mode) and `CEREAL_RACE_PROCS`
//! (default 6 processes per round); e.g. `CEREAL_RACE_ROUNDS=200 cargo test --release -p
//! cereal-eat --test shm_race` for a soak.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cereal_eat::{Error, SharedArray};
use speedup_test_support::within;

const CELLS: usize = 4096;
const DEADLINE: Duration = Duration::from_secs(60);

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn spawn_child(role: &str, dir: &Path, id: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("CEREAL_RACE_ROLE", role)
        .env("CEREAL_RACE_DIR", dir)
        .env("CEREAL_RACE_ID", id.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Waits for `path` to exist, polling; false after the deadline.
fn wait_for(path: &Path) -> bool {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > DEADLINE {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

/// Waits for `child` at most [`DEADLINE`]; kills it and fails the test past that.
fn wait_with_deadline(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > DEADLINE {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("a child did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The child: announces itself, waits for "go", gets the store the way its role says,
/// adds 1 to every cell and prints whether it created the store.
#[test]
fn child() {
    let (Ok(role), Some(dir), Ok(id)) = (
        std::env::var("CEREAL_RACE_ROLE"),
        std::env::var_os("CEREAL_RACE_DIR").map(PathBuf::from),
        std::env::var("CEREAL_RACE_ID"),
    ) else {
        return;
    };
    let store_path = dir.join("store");
    match role.as_str() {
        "open_or_create" | "create" | "mixed" => {
            std::fs::write(dir.join(format!("ready-{id}")), b"").unwrap();
            assert!(wait_for(&dir.join("go")), "no go signal");
            let use_create = role == "create" || (role == "mixed" && id.parse::<usize>().unwrap() % 2 == 1);
            let store: SharedArray<u64> = if use_create {
                match SharedArray::create(&store_path, &[CELLS]) {
                    Ok(store) => store,
                    Err(Error::AlreadyExists { .. }) => SharedArray::open(&store_path).unwrap(),
                    Err(e) => panic!("create: {e}"),
                }
            } else {
                SharedArray::open_or_create(&store_path, &[CELLS]).unwrap()
            };
            for i in 0..CELLS {
                store.fetch_add(i, 1);
            }
            println!("created={}", store.created());
        }
        "mapper" => {
            // Maps the store, then updates cell 0 until told to stop.
            let store: SharedArray<u64> = SharedArray::open(&store_path).unwrap();
            std::fs::write(dir.join("mapped"), b"").unwrap();
            let mut n = 0;
            while !dir.join("stop").exists() {
                store.fetch_add(0, 1);
                store.fetch_add(CELLS - 1, 1);
                n += 1;
            }
            println!("updates={n}");
        }
        "truncated" => {
            let store: SharedArray<u64> = SharedArray::open(&store_path).unwrap();
            std::fs::write(dir.join("mapped"), b"").unwrap();
            assert!(wait_for(&dir.join("truncated")));
            // The file is now 0 bytes long: this access faults, as the docs say.
            let v = store.get(CELLS - 1);
            println!("survived the truncate, read {v}");
        }
        other => panic!("unknown role {other}"),
    }
}

#[derive(Debug, Default)]
struct Tally {
    rounds: usize,
    processes: usize,
    signals: usize,
    failed_exits: usize,
    lost_update_rounds: usize,
    wrong_creator_rounds: usize,
    leftover_files: usize,
}

fn race(role: &str) -> Tally {
    let (rounds, procs) = (knob("CEREAL_RACE_ROUNDS", 20), knob("CEREAL_RACE_PROCS", 6));
    let mut t = Tally::default();
    for _ in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let mut children: Vec<Child> = (0..procs).map(|id| spawn_child(role, dir.path(), id)).collect();
        for id in 0..procs {
            assert!(wait_for(&dir.path().join(format!("ready-{id}"))), "child {id} never started");
        }
        std::fs::write(dir.path().join("go"), b"").unwrap();
        let mut creators = 0;
        for child in &mut children {
            let status = wait_with_deadline(child);
            let out = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
            // libtest may print "test child ... " on the same line: look for the marker.
            creators += out.matches("created=true").count();
            match status.signal() {
                Some(sig) => {
                    eprintln!("{role}: a child died of signal {sig}");
                    t.signals += 1;
                }
                None if !status.success() => t.failed_exits += 1,
                None => {}
            }
        }
        t.rounds += 1;
        t.processes += procs;
        t.wrong_creator_rounds += usize::from(creators != 1);
        let store: SharedArray<u64> = SharedArray::open(dir.path().join("store")).unwrap();
        t.lost_update_rounds += usize::from((0..CELLS).any(|i| store.get(i) != procs as u64));
        // Left: ready-*, go, store. A temporary file left behind would show here.
        t.leftover_files += std::fs::read_dir(dir.path()).unwrap().count() - (procs + 2);
    }
    eprintln!("{role}: {t:?}");
    t
}

fn assert_clean(t: &Tally) {
    assert_eq!(
        (t.signals, t.failed_exits, t.lost_update_rounds, t.wrong_creator_rounds, t.leftover_files),
        (0, 0, 0, 0, 0),
        "{t:?}"
    );
}

#[test]
fn processes_racing_open_or_create_share_one_store() {
    assert_clean(&race("open_or_create"));
}

#[test]
fn processes_racing_create_get_one_winner_and_no_signal() {
    assert_clean(&race("create"));
    assert_clean(&race("mixed"));
}

#[test]
fn threads_racing_open_or_create_share_one_store() {
    within(DEADLINE.as_secs(), move || {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..knob("CEREAL_RACE_ROUNDS", 20) {
            let path = Arc::new(dir.path().join("store"));
            let _ = std::fs::remove_file(&*path);
            let start = Arc::new(Barrier::new(8));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let (path, start) = (Arc::clone(&path), Arc::clone(&start));
                    std::thread::spawn(move || {
                        start.wait();
                        let s: SharedArray<i32> = SharedArray::open_or_create(&*path, &[4, 4]).unwrap();
                        s.fetch_add(15, 1);
                        s.created()
                    })
                })
                .collect();
            let creators = threads.into_iter().map(|t| t.join().unwrap()).filter(|&c| c).count();
            let s: SharedArray<i32> = SharedArray::open(&*path).unwrap();
            assert_eq!((creators, s.get(15)), (1, 8));
        }
    });
}

#[test]
fn create_beside_a_live_mapping_is_refused_and_the_mapper_survives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store: SharedArray<u64> = SharedArray::create(&path, &[CELLS]).unwrap();
    store.set(7, 42);
    let mut child = spawn_child("mapper", dir.path(), 0);
    assert!(wait_for(&dir.path().join("mapped")));
    for shape in [&[CELLS][..], &[CELLS / 2], &[2 * CELLS], &[1]] {
        let e = SharedArray::<u64>::create(&path, shape).unwrap_err();
        assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
        assert!(matches!(SharedArray::<f64>::create(&path, shape), Err(Error::AlreadyExists { .. })));
    }
    std::fs::write(dir.path().join("stop"), b"").unwrap();
    let status = wait_with_deadline(&mut child);
    let out = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
    assert_eq!(status.signal(), None, "the mapper died of a signal");
    assert!(status.success());
    let updates: u64 = out
        .split("updates=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no update count in {out:?}"));
    assert_eq!((store.get(0), store.get(CELLS - 1), store.get(7)), (updates, updates, 42));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 128 + 8 * CELLS as u64, "never truncated");
    // Shape or type that differs from the existing store: a typed error, not a new store.
    let e = SharedArray::<u64>::open_or_create(&path, &[CELLS / 2]).unwrap_err();
    assert!(matches!(e, Error::TypeMismatch { .. }), "{e}");
    assert!(matches!(SharedArray::<f32>::open_or_create(&path, &[CELLS]), Err(Error::TypeMismatch { .. })));
}

/// Documents the one hazard left: a truncate from outside the crate kills a process that
/// has the store mapped with SIGBUS, as with any memory mapping (see the `shm` module docs).
#[test]
fn an_outside_truncate_gives_sigbus_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    drop(SharedArray::<u64>::create(&path, &[CELLS]).unwrap());
    let mut child = spawn_child("truncated", dir.path(), 0);
    assert!(wait_for(&dir.path().join("mapped")));
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
    std::fs::write(dir.path().join("truncated"), b"").unwrap();
    let status = wait_with_deadline(&mut child);
    // SIGBUS is 7 on Linux, 10 on the BSDs and macOS.
    let sigbus = if cfg!(target_os = "linux") { 7 } else { 10 };
    assert_eq!(status.signal(), Some(sigbus), "SIGBUS, got {status:?}");
    // And opening what is left is a typed error, not a fault.
    assert!(matches!(SharedArray::<u64>::open(&path), Err(Error::NotShared { .. })));
}

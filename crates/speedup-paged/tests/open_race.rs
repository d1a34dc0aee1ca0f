//! Many openers of one store that does not exist yet, at the same instant: exactly one gets a
//! handle at a time, every other one gets `Error::Locked` (never an I/O error from the race),
//! and every flush that returned `Ok` is in the store afterwards.
//!
//! Size knob: `SPEEDUP_RACE_ROUNDS` (default 20 for threads and for processes); `cargo xtask
//! soak` runs more.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use speedup_paged::{DiskDict, DiskList, Error, Options};
use speedup_test_support::within;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn opts(dir: &Path) -> Options {
    Options::new().location(dir).size_limit(8).max_pages(2)
}

/// Opens the store once every racer is done. A lock can outlive `close` by a moment when
/// another test of this binary forks a child at that instant: the child holds a copy of
/// every descriptor until its `exec` closes them (flock belongs to the open file, which the
/// copy shares). So `Locked` is retried briefly here; any other error fails.
fn reopen(dir: &Path) -> DiskDict<u64, u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match DiskDict::<u64, u64>::open_with("race", &opts(dir)) {
            Ok(d) => return d,
            Err(Error::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("the store does not reopen after the race: {e}"),
        }
    }
}

/// What one opener did: `Some(id)` if it held the store and flushed its entry.
fn open_insert_flush_hold(dir: &Path, id: u64, holders: Option<&AtomicUsize>) -> Option<u64> {
    match DiskDict::<u64, u64>::open_with("race", &opts(dir)) {
        Ok(mut d) => {
            if let Some(holders) = holders {
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                assert_eq!(now, 1, "two live handles to one store");
            }
            d.insert(id, id * 10).unwrap();
            d.flush().unwrap();
            std::thread::sleep(Duration::from_millis(5));
            if let Some(holders) = holders {
                holders.fetch_sub(1, Ordering::SeqCst);
            }
            d.close().unwrap();
            Some(id)
        }
        Err(Error::Locked { .. }) => None,
        Err(e) => panic!("opener {id}: expected a handle or Error::Locked, got: {e}"),
    }
}

#[test]
fn threads_racing_to_create_one_store_get_one_handle_and_lose_no_flush() {
    let rounds = knob("SPEEDUP_RACE_ROUNDS", 20);
    within(120, move || {
        let (mut won, mut locked) = (0, 0);
        for round in 0..rounds {
            let dir = tempfile::tempdir().unwrap();
            let threads = 8;
            let barrier = Arc::new(Barrier::new(threads));
            let holders = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..threads as u64)
                .map(|id| {
                    let (barrier, holders, dir) =
                        (barrier.clone(), holders.clone(), dir.path().to_path_buf());
                    std::thread::spawn(move || {
                        barrier.wait();
                        open_insert_flush_hold(&dir, id, Some(&holders))
                    })
                })
                .collect();
            let acknowledged: Vec<u64> = handles.into_iter().filter_map(|h| h.join().unwrap()).collect();
            assert!(!acknowledged.is_empty(), "round {round}: nobody got the store");
            won += acknowledged.len();
            locked += threads - acknowledged.len();
            let d = reopen(dir.path());
            for id in &acknowledged {
                assert_eq!(d.get(id).unwrap(), Some(id * 10), "round {round}: a flushed entry was lost");
            }
            assert_eq!(d.len(), acknowledged.len(), "round {round}");
            // No temporary files are left behind by the losers.
            let names: Vec<_> =
                std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names.len(), 1, "round {round}: {names:?}");
        }
        eprintln!("{rounds} rounds x 8 threads: {won} handles, {locked} Locked, 0 other errors");
    });
}

#[test]
fn dict_and_list_openers_race_on_their_own_files() {
    // Same basename, different kinds: separate files, so both always open.
    within(60, || {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let barrier = Arc::new(Barrier::new(2));
            let (b, p) = (barrier.clone(), dir.path().to_path_buf());
            let list = std::thread::spawn(move || {
                b.wait();
                DiskList::<u64>::open_with("race", &opts(&p)).map(|_| ())
            });
            barrier.wait();
            DiskDict::<u64, u64>::open_with("race", &opts(dir.path())).unwrap();
            list.join().unwrap().unwrap();
        }
    });
}

/// Child: waits for the start instant, then opens, inserts its id, flushes and holds the
/// store a moment. Prints `held <id>` only after its flush returned `Ok`.
#[test]
fn child_racer() {
    let (Ok(dir), Ok(id), Ok(start)) =
        (std::env::var("RACE_DIR"), std::env::var("RACE_ID"), std::env::var("RACE_START_NANOS"))
    else {
        return;
    };
    let (id, start): (u64, u128) = (id.parse().unwrap(), start.parse().unwrap());
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        if now >= start {
            break;
        }
        std::thread::sleep(Duration::from_micros(((start - now) / 1000).min(500) as u64));
    }
    if open_insert_flush_hold(Path::new(&dir), id, None).is_some() {
        println!("held {id}");
    } else {
        println!("locked {id}");
    }
}

#[test]
fn processes_racing_to_create_one_store_get_one_handle_and_lose_no_flush() {
    let rounds = knob("SPEEDUP_RACE_ROUNDS", 20);
    let started = Instant::now();
    let (mut won, mut locked) = (0, 0);
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() + 150_000_000;
        let children: Vec<_> = (0..6u64)
            .map(|id| {
                Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "child_racer", "--nocapture", "--test-threads=1"])
                    .env("RACE_DIR", dir.path())
                    .env("RACE_ID", id.to_string())
                    .env("RACE_START_NANOS", start.to_string())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut acknowledged = Vec::new();
        for child in children {
            let out = wait_with_deadline(child, Duration::from_secs(60));
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "round {round}: a child failed ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            match stdout.split("held ").nth(1) {
                Some(id) => acknowledged.push(id.split_whitespace().next().unwrap().parse::<u64>().unwrap()),
                None => assert!(stdout.contains("locked "), "round {round}: {stdout}"),
            }
        }
        won += acknowledged.len();
        locked += 6 - acknowledged.len();
        let d = reopen(dir.path());
        for id in &acknowledged {
            assert_eq!(d.get(id).unwrap(), Some(id * 10), "round {round}: a flushed entry was lost");
        }
        assert_eq!(d.len(), acknowledged.len(), "round {round}");
    }
    eprintln!(
        "{rounds} rounds x 6 processes: {won} handles, {locked} Locked, 0 other errors ({:?})",
        started.elapsed()
    );
}

fn wait_with_deadline(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("a child process hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_store_deleted_while_opening_gives_a_handle_or_locked_never_an_io_error() {
    // Openers race a "user" who deletes the store file in a loop. A deleted store is gone by
    // the user's hand (a handle to it keeps the orphaned file); what must hold is that every
    // open either succeeds or says Locked, and that nothing hangs.
    within(60, || {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("race.spdict");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let deleter = {
            let (stop, path) = (stop.clone(), path.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::fs::remove_file(&path);
                    std::thread::yield_now();
                }
            })
        };
        let openers: Vec<_> = (0..4u64)
            .map(|t| {
                let dir = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        match DiskDict::<u64, u64>::open_with("race", &opts(&dir)) {
                            Ok(d) => d.discard(),
                            Err(Error::Locked { .. }) => {}
                            Err(e) => panic!("opener {t} try {i}: {e}"),
                        }
                    }
                })
            })
            .collect();
        for o in openers {
            o.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        deleter.join().unwrap();
    });
}

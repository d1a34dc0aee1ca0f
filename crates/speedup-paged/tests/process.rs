//! Tests with real child processes: kill -9 at random moments, a lock held by another
//! process, and the bound on anonymous memory. The child is this test binary re-run with
//! `SPEEDUP_CHILD` set to the role it plays.
//!
//! Size knobs: `SPEEDUP_CRASH_ROUNDS` (default 6) and `SPEEDUP_MEMORY_ENTRIES`
//! (default 2,000,000); `cargo xtask soak` runs them larger.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use speedup_paged::{DiskDict, DiskList, Error, Options};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn spawn_child(test: &str, role: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("SPEEDUP_CHILD", role)
        .env("SPEEDUP_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn child_role() -> Option<(String, std::path::PathBuf)> {
    let role = std::env::var("SPEEDUP_CHILD").ok()?;
    Some((role, std::env::var_os("SPEEDUP_DIR")?.into()))
}

fn opts(dir: &Path) -> Options {
    Options::new().location(dir).size_limit(64).max_pages(4)
}

fn value_for(i: u64) -> String {
    format!("{i}:{}", "x".repeat((i % 50) as usize))
}

/// Progress marker written (atomically, by rename) after each successful flush.
fn record_progress(dir: &Path, n: u64) {
    let tmp = dir.join("progress.tmp");
    std::fs::write(&tmp, n.to_string()).unwrap();
    std::fs::rename(tmp, dir.join("progress")).unwrap();
}

fn read_progress(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("progress")).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Child: writes key i -> value_for(i) for ever, flushing every 97 inserts, and removing
/// every 10th key again so that removals are crash-tested too.
#[test]
fn child_crash_writer() {
    let Some((role, dir)) = child_role() else { return };
    if role != "crash-writer" {
        return;
    }
    let mut d: DiskDict<u64, String> = DiskDict::open_with("crash", &opts(&dir)).unwrap();
    let mut l: DiskList<u64> = DiskList::open_with("crash", &opts(&dir)).unwrap();
    let mut i = read_progress(&dir);
    println!("ready");
    loop {
        d.insert(i, value_for(i)).unwrap();
        if i.is_multiple_of(10) {
            d.remove(&i).unwrap();
        }
        l.push(i).unwrap();
        i += 1;
        if i.is_multiple_of(97) {
            d.flush().unwrap();
            l.flush().unwrap();
            record_progress(&dir, i);
        }
    }
}

#[test]
fn kill_9_at_random_moments_never_loses_flushed_entries() {
    let rounds = knob("SPEEDUP_CRASH_ROUNDS", 6);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..rounds {
        let mut child = spawn_child("child_crash_writer", "crash-writer", dir.path());
        // Start the clock once the child has its stores open: on a loaded machine the
        // start-up alone can outlast the random delay, and no round would test anything.
        wait_for_line(&mut child, "ready");
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(50 + rng % 350));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let flushed = read_progress(dir.path());
        let d: DiskDict<u64, String> = DiskDict::open_with("crash", &opts(dir.path()))
            .unwrap_or_else(|e| panic!("round {round}: the store does not open after kill -9: {e}"));
        let l: DiskList<u64> = DiskList::open_with("crash", &opts(dir.path())).unwrap();
        for i in 0..flushed {
            let want = (i % 10 != 0).then(|| value_for(i));
            assert_eq!(d.get(&i).unwrap(), want, "round {round}: key {i} of {flushed} flushed");
            assert_eq!(l.get(i as usize).unwrap(), Some(i), "round {round}: item {i}");
        }
        // Entries past the marker may or may not have made it, but never wrongly.
        assert!(d.len() as u64 >= flushed - flushed.div_ceil(10));
        for (k, v) in d.iter().map(Result::unwrap) {
            assert_eq!(v, value_for(k));
        }
        for (i, item) in l.iter().enumerate() {
            assert_eq!(item.unwrap(), i as u64);
        }
        // Trim both stores back to the marker so the next child continues from it.
        let (mut d, mut l) = (d, l);
        while l.len() as u64 > flushed {
            l.pop().unwrap();
        }
        let extra: Vec<u64> = d.iter().map(|r| r.unwrap().0).filter(|&k| k >= flushed).collect();
        for k in extra {
            d.remove(&k).unwrap();
        }
        d.close().unwrap();
        l.close().unwrap();
    }
    assert!(read_progress(dir.path()) > 0, "the child never flushed: raise the sleep");
}

/// Child: holds the store open until its stdin closes.
#[test]
fn child_lock_holder() {
    let Some((role, dir)) = child_role() else { return };
    if role != "lock-holder" {
        return;
    }
    let _d: DiskDict<u64, u64> = DiskDict::open_with("locked", &opts(&dir)).unwrap();
    println!("locked");
    std::thread::sleep(Duration::from_secs(30));
}

#[test]
fn a_second_process_gets_locked() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child("child_lock_holder", "lock-holder", dir.path());
    wait_for_line(&mut child, "locked");
    let err = DiskDict::<u64, u64>::open_with("locked", &opts(dir.path())).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("locked.spdict"));
    child.kill().unwrap();
    child.wait().unwrap();
    // The lock dies with the process.
    DiskDict::<u64, u64>::open_with("locked", &opts(dir.path())).unwrap();
}

fn wait_for_line(child: &mut Child, line: &str) {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    for l in lines.by_ref() {
        // libtest prints "test name ... " without a newline before the child's output.
        if l.unwrap().trim_end().ends_with(line) {
            return;
        }
        assert!(Instant::now() < deadline, "child never printed {line:?}");
    }
    panic!("child exited before printing {line:?}");
}

fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Child: 2M u64 -> u64 inserts and 2M random gets with default options, printing the
/// largest RssAnon seen.
#[test]
fn child_memory() {
    let Some((role, dir)) = child_role() else { return };
    if role != "memory" {
        return;
    }
    let n = knob("SPEEDUP_MEMORY_ENTRIES", 2_000_000);
    let mut d: DiskDict<u64, u64> = DiskDict::open_with("mem", &Options::new().location(&dir)).unwrap();
    let mut peak = 0;
    let mut x = 0x1234_5678_9ABC_DEF1u64;
    for i in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        d.insert(x, i).unwrap();
        if i.is_multiple_of(100_000) {
            peak = peak.max(rss_anon_kib());
        }
    }
    d.flush().unwrap();
    peak = peak.max(rss_anon_kib());
    let mut l: DiskList<u64> = DiskList::open_with("mem", &Options::new().location(&dir)).unwrap();
    for i in 0..n {
        l.push(i).unwrap();
    }
    l.flush().unwrap();
    peak = peak.max(rss_anon_kib());
    let mut x = 0x1234_5678_9ABC_DEF1u64;
    for i in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        assert_eq!(d.get(&x).unwrap(), Some(i));
        let j = (x % n) as usize;
        assert_eq!(l.get(j).unwrap(), Some(j as u64));
        if i.is_multiple_of(100_000) {
            peak = peak.max(rss_anon_kib());
        }
    }
    println!("peak-rss-anon-kib {peak}");
}

#[test]
fn rss_anon_stays_bounded_with_2m_entries() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_child("child_memory", "memory", dir.path());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "memory child failed");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let peak: u64 = stdout
        .lines()
        .find_map(|l| l.split("peak-rss-anon-kib ").nth(1))
        .expect("child printed its peak")
        .parse()
        .unwrap();
    eprintln!("peak RssAnon with 2M entries: {} MiB", peak / 1024);
    assert!(peak < 64 * 1024, "RssAnon peaked at {peak} KiB, over the 64 MiB bound");
}

/// Child: fills the store past a file-size limit (writes fail as on a full disk), checks
/// that nothing is lost and that `flush` succeeds once there is room again.
#[test]
fn child_disk_full() {
    let Some((role, dir)) = child_role() else { return };
    if role != "disk-full" {
        return;
    }
    // SAFETY: ignoring SIGXFSZ is what turns "file too large" into an error return from
    // write(2) instead of killing the process; this child process does nothing else.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let opts = Options::new().location(&dir).size_limit(64).max_pages(2);
    let mut d: DiskDict<u64, String> = DiskDict::open_with("full", &opts).unwrap();
    for k in 0..1_000 {
        d.insert(k, value_for(k)).unwrap();
    }
    d.flush().unwrap();
    let size = std::fs::metadata(d.path()).unwrap().len();
    let set_limit = |soft: u64| {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: plain libc calls on a valid, owned struct.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
            limit.rlim_cur = soft.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        }
    };
    set_limit(size); // no growth allowed: the "disk" is full
    let mut accepted = Vec::new();
    let mut refused = 0;
    for k in 1_000..20_000 {
        // An insert that needs room first fails as a whole: nothing changed.
        match d.insert(k, value_for(k)) {
            Ok(_) => accepted.push(k),
            Err(e) => {
                assert!(matches!(e, Error::Io { .. } | Error::DiskFull { .. }), "{e}");
                refused += 1;
            }
        }
    }
    let err = d.flush().expect_err("flushing past the limit must fail");
    println!("flush with a full disk: {err}");
    assert!(refused > 0, "inserts that needed room reported it");
    assert_eq!(d.len(), 1_000 + accepted.len(), "accepted entries are all there, refused ones are not");
    set_limit(u64::MAX); // room again
    d.flush().expect("flush succeeds once there is room");
    d.close().unwrap();
    let d: DiskDict<u64, String> = DiskDict::open_with("full", &opts).unwrap();
    assert_eq!(d.len(), 1_000 + accepted.len());
    for k in (0..1_000).chain(accepted) {
        assert_eq!(d.get(&k).unwrap(), Some(value_for(k)), "key {k}");
    }
    // Creating a store on a full disk: an error that fits an open, and nothing left behind.
    set_limit(0);
    let err = DiskDict::<u64, u64>::open_with("fresh", &opts).unwrap_err();
    assert!(matches!(err, Error::DiskFull { during: speedup_paged::Activity::Creating, .. }), "{err}");
    assert!(!err.to_string().contains("flush"), "{err}");
    println!("create on a full disk: {err}");
    set_limit(u64::MAX);
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!names.iter().any(|n| n.to_string_lossy().contains("fresh")), "left behind: {names:?}");
    println!("disk-full-ok");
}

#[test]
fn a_full_disk_is_an_error_and_a_retry_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_child("child_disk_full", "disk-full", dir.path());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("disk-full-ok"), "child failed:\n{stdout}");
}

/// Child: 100k random u64 keys with one item per page and one page in memory, flushed and
/// reopened; prints RssAnon before and at its peak.
#[test]
fn child_small_pages_memory() {
    let Some((role, dir)) = child_role() else { return };
    if role != "small-pages" {
        return;
    }
    let n = knob("SPEEDUP_SMALL_PAGES_ENTRIES", 100_000);
    let base = rss_anon_kib();
    let opts = Options::new().location(&dir).size_limit(1).max_pages(1);
    let mut d: DiskDict<u64, u64> = DiskDict::open_with("small", &opts).unwrap();
    let mut peak = 0;
    let mut x = 0x1234_5678_9ABC_DEF1u64;
    for i in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        d.insert(x, i).unwrap();
        if i.is_multiple_of(10_000) {
            peak = peak.max(rss_anon_kib());
        }
    }
    d.close().unwrap();
    let d: DiskDict<u64, u64> = DiskDict::open_with("small", &opts).unwrap();
    assert_eq!(d.len() as u64, n);
    peak = peak.max(rss_anon_kib());
    println!("small-pages-kib {base} {peak}");
}

#[test]
fn one_item_pages_keep_memory_proportional_to_the_pages() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_child("child_small_pages_memory", "small-pages", dir.path());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "small-pages child failed");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let figures: Vec<u64> = stdout
        .lines()
        .find_map(|l| l.split("small-pages-kib ").nth(1))
        .expect("child printed its figures")
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    let (base, peak) = (figures[0], figures[1]);
    let n = knob("SPEEDUP_SMALL_PAGES_ENTRIES", 100_000);
    // The documented bound (crate docs, "Memory"): about 200 bytes of page index and
    // directory per bucket, at most 4 buckets per page of entries, plus 64.
    let bound_kib = (n * 4 + 64) * 200 / 1024;
    eprintln!(
        "RssAnon with {n} entries on one-item pages: {} KiB over a base of {base} KiB (bound {bound_kib} KiB)",
        peak - base
    );
    assert!(peak - base < bound_kib, "RssAnon grew by {} KiB, over the {bound_kib} KiB bound", peak - base);
}

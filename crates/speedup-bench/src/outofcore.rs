//! Out of core: a store several times larger than the memory a process may use, page cache
//! included, as containers run. speedup-paged against heed (LMDB), with the device's own
//! random 4 KiB read rate measured on the same file as the physical limit (one read per
//! get).
//!
//! The cap is a cgroup (v1 `memory.limit_in_bytes`, or v2 `memory.max`) that the benchmark
//! makes for each reader and writer child. Where none can be made (no permission, no memory
//! controller), the group still runs, uncapped, and every label says so.

use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use heed::types::{Str, U64};
use heed::{CommitOrAbort, EnvOpenOptions, byteorder::BigEndian};
use speedup_paged::{DiskDict, Options};

use crate::harness::{Config, key, report};
use crate::memory::{self, Rss};

const SEED: u64 = 7;

fn value(k: u64) -> String {
    format!("{k:0>100}")
}

/// Sizes: the store is about 4.4 times the cap in both runs (140 bytes an entry).
struct Plan {
    entries: u64,
    cap_bytes: u64,
    seconds: f64,
}

impl Plan {
    fn new(c: &Config) -> Self {
        if c.quick {
            Plan { entries: 1_000_000, cap_bytes: 32 << 20, seconds: 3.0 }
        } else {
            Plan { entries: 4_000_000, cap_bytes: 128 << 20, seconds: 10.0 }
        }
    }
}

pub(crate) fn run(c: &Config) {
    let plan = Plan::new(c);
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let cgroup = Cgroup::probe();
    let cap = match &cgroup {
        Some(_) => format!("{} MiB cap", plan.cap_bytes >> 20),
        None => "NO memory cap: no cgroup could be made".to_string(),
    };
    eprintln!("out of core: {}M x 100-byte values, {cap}", plan.entries as f64 / 1e6);
    let write_deadline = Duration::from_secs_f64(plan.seconds * 20.0);
    for (implementation, store) in [("speedup-paged", "ours"), ("heed (LMDB)", "heed")] {
        let path = dir.path().join(store);
        let label = format!("out of core, {cap}: insert + commit (heed: every 10k)");
        let _ = std::fs::create_dir_all(&path);
        match child(&cgroup, &plan, &["build", store, path.to_str().unwrap()], Some(write_deadline)) {
            Some(out) => {
                report("outofcore", &label, implementation, one(field(&out, "rate")), "ops/s", 1, true);
                memory::report_rows("outofcore", &label, &[(implementation, Rss::parse(&out))]);
            }
            None => {
                // Thrashing or killed under the cap: say so, then build it without the cap
                // so that the read measurements can still run.
                eprintln!(
                    "    {implementation}: the load did not finish under the cap within {write_deadline:?}"
                );
                let unfinished = format!("{implementation}: unfinished after {write_deadline:?}");
                report("outofcore", &label, &unfinished, one(0.0), "ops/s", 1, true);
                let _ = std::fs::remove_dir_all(&path);
                child(&None, &plan, &["build", store, path.to_str().unwrap()], None)
                    .expect("an uncapped load");
            }
        }
        eprintln!("    {implementation}: a {} MiB store", dir_size(&path) >> 20);
    }
    let device = device_rate(&dir.path().join("ours"), plan.seconds.min(5.0));
    let label = format!("out of core, {cap}: random gets, after a {}s warm-up", plan.seconds);
    report("outofcore", &label, "device: random 4 KiB reads (O_DIRECT, QD1)", one(device), "ops/s", 1, true);
    for (implementation, store) in [("speedup-paged", "ours"), ("heed (LMDB)", "heed")] {
        let path = dir.path().join(store);
        evict(&path);
        let out = child(&cgroup, &plan, &["read", store, path.to_str().unwrap()], None).expect("a reader");
        let first = format!("out of core, {cap}: first 2k random gets after open");
        report("outofcore", &first, implementation, one(field(&out, "cold")), "ops/s", 1, true);
        report("outofcore", &label, implementation, one(field(&out, "rate")), "ops/s", 1, true);
        eprintln!(
            "    {implementation}: {:.0}% of the device's random read rate",
            100.0 * field(&out, "rate") / device
        );
        memory::report_rows("outofcore", &label, &[(implementation, Rss::parse(&out))]);
        evict(&path);
        let scan = format!("out of core, {cap}: iterate every entry");
        match child(&cgroup, &plan, &["iterate", store, path.to_str().unwrap()], Some(write_deadline)) {
            Some(out) => {
                report("outofcore", &scan, implementation, one(field(&out, "rate")), "ops/s", 1, true)
            }
            None => {
                eprintln!(
                    "    {implementation}: the scan did not finish under the cap within {write_deadline:?}"
                );
                let unfinished = format!("{implementation}: unfinished after {write_deadline:?}");
                report("outofcore", &scan, &unfinished, one(0.0), "ops/s", 1, true);
            }
        }
    }
}

fn one(v: f64) -> (f64, f64, f64) {
    (v, v, v)
}

fn field(out: &str, name: &str) -> f64 {
    out.split_whitespace()
        .skip_while(|w| *w != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the child printed no {name}: {out}"))
}

/// Runs `--child outofcore ARGS...` inside the cgroup (if any) and returns its stdout;
/// `None` if it was killed (by the cap) or outlived `deadline`.
fn child(cgroup: &Option<Cgroup>, plan: &Plan, args: &[&str], deadline: Option<Duration>) -> Option<String> {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--child", "outofcore"])
        .args(args)
        .args([plan.entries.to_string(), plan.seconds.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let group = cgroup.as_ref().map(|g| g.make(child.id(), plan.cap_bytes));
    // The child waits for this line, so everything it maps is charged to the cgroup.
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let started = Instant::now();
    while deadline.is_some_and(|d| started.elapsed() < d) && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    if child.try_wait().unwrap().is_none() && deadline.is_some() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    if let Some(group) = group {
        group.remove();
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if deadline.is_some() && !out.status.success() {
        return None;
    }
    assert!(out.status.success(), "out-of-core child {args:?} failed ({}): {stdout}", out.status);
    Some(stdout)
}

/// `--child outofcore MODE STORE PATH ENTRIES SECONDS`.
pub(crate) fn child_main(args: &[String]) {
    let (mode, store, path) = (args[0].as_str(), args[1].as_str(), Path::new(&args[2]));
    let entries: u64 = args[3].parse().unwrap();
    let seconds: f64 = args[4].parse().unwrap();
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        key(SEED, rng % entries)
    };
    // Each phase (load, read, scan) is its own workload, with its own peak memory.
    let (result, peaks) = memory::peak(|| match (mode, store) {
        ("build", "ours") => {
            std::fs::create_dir_all(path).unwrap();
            // 64 pages of pending writes (about 13 MiB of 100-byte values) fit any cap here.
            let opts = Options::new().location(path).max_pages(64);
            let mut d: DiskDict<u64, String> = DiskDict::open_with("ooc", &opts).unwrap();
            let start = Instant::now();
            for i in 0..entries {
                let k = key(SEED, i);
                d.insert(k, value(k)).unwrap();
            }
            d.close().unwrap();
            format!("rate {}", entries as f64 / start.elapsed().as_secs_f64())
        }
        ("build", "heed") => {
            std::fs::create_dir_all(path).unwrap();
            let env = heed_env(path);
            let db = heed_create(env);
            let start = Instant::now();
            // One transaction for everything holds every dirty page in anonymous memory,
            // which the cap kills: commit every 10k inserts, as a user under a cap would.
            let mut tx = env.write_txn().unwrap();
            for i in 0..entries {
                let k = key(SEED, i);
                db.put(&mut tx, &k, &value(k)).unwrap();
                if i % 10_000 == 9_999 {
                    tx.commit().unwrap();
                    tx = env.write_txn().unwrap();
                }
            }
            tx.commit().unwrap();
            env.force_sync().unwrap();
            format!("rate {}", entries as f64 / start.elapsed().as_secs_f64())
        }
        ("read", "ours") => {
            let d: DiskDict<u64, String> =
                DiskDict::open_with("ooc", &Options::new().location(path)).unwrap();
            let get = |k: u64| assert_eq!(d.get_archived(&k).unwrap().map(|v| v.len()), Some(100));
            read_loop(get, &mut next, seconds)
        }
        ("read", "heed") => {
            let env = heed_env(path);
            let db = heed_open(env);
            let tx = env.read_txn().unwrap();
            let get = |k: u64| assert_eq!(db.get(&tx, &k).unwrap().map(str::len), Some(100));
            read_loop(get, &mut next, seconds)
        }
        ("iterate", "ours") => {
            let d: DiskDict<u64, String> =
                DiskDict::open_with("ooc", &Options::new().location(path)).unwrap();
            let start = Instant::now();
            let mut n = 0u64;
            for entry in &d {
                assert_eq!(entry.unwrap().1.len(), 100);
                n += 1;
            }
            assert_eq!(n, entries);
            format!("rate {}", n as f64 / start.elapsed().as_secs_f64())
        }
        ("iterate", "heed") => {
            let env = heed_env(path);
            let db = heed_open(env);
            let tx = env.read_txn().unwrap();
            let start = Instant::now();
            let mut n = 0u64;
            for entry in db.iter(&tx).unwrap() {
                assert_eq!(entry.unwrap().1.len(), 100);
                n += 1;
            }
            assert_eq!(n, entries);
            format!("rate {}", n as f64 / start.elapsed().as_secs_f64())
        }
        _ => panic!("unknown out-of-core child {mode} {store}"),
    });
    println!("{result} {peaks}");
}

/// 2,000 gets right after open ("cold": speedup-paged validates each page on first use),
/// then `seconds` of gets as a warm-up, then as many as fit in another `seconds`: the
/// steady-state rate a long-running reader sees.
fn read_loop(get: impl Fn(u64), next: &mut impl FnMut() -> u64, seconds: f64) -> String {
    let start = Instant::now();
    for _ in 0..2_000 {
        get(next());
    }
    let cold = 2_000.0 / start.elapsed().as_secs_f64();
    let mut timed_run = || {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_secs_f64() < seconds {
            for _ in 0..256 {
                get(next());
            }
            n += 256;
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let _warm_up = timed_run();
    let rate = timed_run();
    format!("cold {cold} rate {rate}")
}

type HeedDb = heed::Database<'static, U64<BigEndian>, Str>;

/// Leaked so that its databases can be 'static: one per child process.
fn heed_env(path: &Path) -> &'static heed::Env {
    // SAFETY: this process is the only one with the environment open.
    let env = unsafe { EnvOpenOptions::new().map_size(16 << 30).open(path) }.unwrap();
    Box::leak(Box::new(env))
}

fn heed_create(env: &'static heed::Env) -> HeedDb {
    let w = env.write_txn().unwrap();
    env.create_databases_and_commit(w, |o, w| {
        o.create_database::<U64<BigEndian>, Str>(w, None).map(CommitOrAbort::<_, ()>::Commit)
    })
    .unwrap()
    .unwrap_commit()
}

fn heed_open(env: &'static heed::Env) -> HeedDb {
    let r = env.read_txn().unwrap();
    env.open_databases_and_commit(r, |o, r| {
        o.open_database::<U64<BigEndian>, Str>(r, None).map(CommitOrAbort::<_, ()>::Commit)
    })
    .unwrap()
    .unwrap_commit()
    .expect("the heed store has its database")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default()
}

fn dir_size(dir: &Path) -> u64 {
    files(dir).iter().map(|f| std::fs::metadata(f).map_or(0, |m| m.len())).sum()
}

/// Drops the store's files from the page cache, so a reader starts cold.
fn evict(dir: &Path) {
    for f in files(dir) {
        let file = std::fs::File::open(&f).unwrap();
        file.sync_all().unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on an open descriptor.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

/// Random 4 KiB reads with O_DIRECT (no page cache), one at a time, for `seconds`: the rate
/// the device sustains for reads that each need the disk.
fn device_rate(dir: &Path, seconds: f64) -> f64 {
    let path = files(dir).into_iter().max_by_key(|f| std::fs::metadata(f).map_or(0, |m| m.len())).unwrap();
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(&path).unwrap();
    let blocks = std::fs::metadata(&path).unwrap().len() / 4096;
    let layout = std::alloc::Layout::from_size_align(4096, 4096).unwrap();
    // SAFETY: a non-zero size; freed below with the same layout.
    let buf = unsafe { std::alloc::alloc(layout) };
    assert!(!buf.is_null());
    // SAFETY: `buf` is 4096 bytes, valid for writes, and only used as a byte buffer here.
    let block = unsafe { std::slice::from_raw_parts_mut(buf, 4096) };
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        file.read_exact_at(block, (rng % blocks) * 4096).unwrap();
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(buf, layout) };
    rate
}

/// Where memory cgroups can be made, and how.
enum Cgroup {
    V1(PathBuf),
    V2(PathBuf),
}

/// One cgroup holding one child.
struct Group(PathBuf);

impl Cgroup {
    fn probe() -> Option<Cgroup> {
        let v1 = PathBuf::from("/sys/fs/cgroup/memory");
        if v1.join("memory.limit_in_bytes").exists() && Self::writable(&v1) {
            return Some(Cgroup::V1(v1));
        }
        let v2 = PathBuf::from("/sys/fs/cgroup");
        if v2.join("cgroup.controllers").exists() && Self::writable(&v2) {
            return Some(Cgroup::V2(v2));
        }
        None
    }

    fn writable(root: &Path) -> bool {
        let probe = root.join(format!("speedup-bench-probe-{}", std::process::id()));
        let ok = std::fs::create_dir(&probe).is_ok();
        let _ = std::fs::remove_dir(&probe);
        ok
    }

    /// A fresh cgroup capped at `bytes`, holding `pid`.
    fn make(&self, pid: u32, bytes: u64) -> Group {
        let (root, limit, swap) = match self {
            Cgroup::V1(root) => (root, "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"),
            Cgroup::V2(root) => (root, "memory.max", "memory.swap.max"),
        };
        let dir = root.join(format!("speedup-bench-{pid}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(limit), bytes.to_string()).unwrap();
        // No swapping instead of evicting (where the knob exists).
        let swap_value = if matches!(self, Cgroup::V2(_)) { "0".to_string() } else { bytes.to_string() };
        let _ = std::fs::write(dir.join(swap), swap_value);
        std::fs::write(dir.join("cgroup.procs"), pid.to_string()).unwrap();
        Group(dir)
    }
}

impl Group {
    fn remove(self) {
        // The child has exited; its cgroup is empty (retry while the kernel lets go of it).
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

//! Peak memory of a workload: the `WORKLOAD: peak RssAnon` and `WORKLOAD: peak RssFile` rows
//! every group reports beside its rates, in MiB (lower is better).
//!
//! What is counted: the highest RssAnon (heap, thread stacks, anonymous maps) and the highest
//! RssFile (mapped file pages: the program's own code as the workload first runs it, and
//! the files a store maps) of the process while the workload runs, each minus its level just
//! before the workload starts. So the process's start-up (the binary's pages already in,
//! the runtime, the arguments) and the benchmark's own set-up done before the workload (key
//! lists, input arrays) are not counted; memory an implementation's workload needs is, even
//! if it is freed before the end. RssShmem (tmpfs, `/dev/shm`) is in neither row. An
//! implementation that runs in several processes reports the sum of their peaks.
//!
//! How: a thread reads `/proc/self/status` every ~1 ms while the workload runs and keeps the
//! highest figures; one more sample is taken when the workload returns, another at the end
//! of each timed span (`harness::timed`), and a workload whose high point would otherwise
//! go unsampled (it drops what it built before returning) calls [`sample_now`] there. The
//! thread runs at idle priority (see [`idle_priority`]). Each implementation runs in a
//! process of its own (`--child peak ...`, see [`report_children`]), so that one
//! implementation's freed heap or mapped files cannot hide or inflate the next one's.

use std::fmt;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::harness::{Config, report};

/// RssAnon and RssFile, in KiB (as `/proc/self/status` gives them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rss {
    /// `RssAnon`: heap, thread stacks, anonymous maps.
    pub(crate) anon_kib: u64,
    /// `RssFile`: file pages mapped in (code, mapped stores).
    pub(crate) file_kib: u64,
}

impl Rss {
    /// The two fields of a `/proc/PID/status` text; `None` if either is missing (not Linux,
    /// or a kernel older than 4.5).
    fn from_status(status: &str) -> Option<Rss> {
        Some(Rss { anon_kib: field_kib(status, "RssAnon:")?, file_kib: field_kib(status, "RssFile:")? })
    }

    /// What `self` holds above `base`, field by field (never below zero).
    fn above(self, base: Rss) -> Rss {
        Rss {
            anon_kib: self.anon_kib.saturating_sub(base.anon_kib),
            file_kib: self.file_kib.saturating_sub(base.file_kib),
        }
    }

    /// Reads back what a child printed with `{rss}` (the `anon-kib N file-kib M` words, on
    /// a line of their own or among others). Panics, showing the output, if they are absent:
    /// a missing figure must not pass as zero.
    pub(crate) fn parse(out: &str) -> Rss {
        let field = |name: &str| -> u64 {
            out.split_whitespace()
                .skip_while(|w| *w != name)
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("the child printed no {name}: {out}"))
        };
        Rss { anon_kib: field("anon-kib"), file_kib: field("file-kib") }
    }
}

/// The sum over the processes of one implementation (see the module docs).
impl std::ops::Add for Rss {
    type Output = Rss;
    fn add(self, other: Rss) -> Rss {
        Rss { anon_kib: self.anon_kib + other.anon_kib, file_kib: self.file_kib + other.file_kib }
    }
}

/// The form [`Rss::parse`] reads.
impl fmt::Display for Rss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "anon-kib {} file-kib {}", self.anon_kib, self.file_kib)
    }
}

/// The figure of the line `key` (`VmHWM:`, say) of a `/proc/PID/status` text, in KiB.
fn field_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(key))?.split_whitespace().next()?.parse().ok()
}

/// The figure of the line `key` of this process's `/proc/self/status`, in KiB (for the
/// fields other than [`Rss`]'s, such as `VmHWM:`).
pub(crate) fn status_kib(key: &str) -> Option<u64> {
    field_kib(&std::fs::read_to_string("/proc/self/status").ok()?, key)
}

/// `/proc/self/status`, kept open and read into the same buffer each time, so that the
/// sampler allocates nothing once started (its own allocations would be counted).
struct Status {
    /// Opened once: a seek back to the start makes the kernel render it afresh.
    file: std::fs::File,
    /// The last rendering, its capacity kept from one read to the next.
    text: String,
}

impl Status {
    /// Opens it, with room in the buffer for a whole rendering (about 1.5 KiB).
    fn open() -> Status {
        let file = std::fs::File::open("/proc/self/status").expect("/proc/self/status (Linux only)");
        Status { file, text: String::with_capacity(4096) }
    }

    /// A sample: the current RssAnon and RssFile.
    fn read(&mut self) -> Rss {
        self.text.clear();
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.read_to_string(&mut self.text))
            .expect("reading /proc/self/status");
        Rss::from_status(&self.text).expect("RssAnon and RssFile in /proc/self/status (Linux 4.5 or later)")
    }
}

/// Whether a [`peak`] measurement is under way: [`sample_now`] does nothing otherwise, so
/// that the calls cost a timed run only an atomic load.
static MEASURING: AtomicBool = AtomicBool::new(false);
/// The highest RssAnon sample of the measurement under way, in KiB (raised by the sampler
/// thread, by [`sample_now`] and by the final sample; global so that [`sample_now`] needs
/// no handle).
static PEAK_ANON: AtomicU64 = AtomicU64::new(0);
/// The same for RssFile.
static PEAK_FILE: AtomicU64 = AtomicU64::new(0);

/// Raises the peaks to `rss` where it is higher.
fn record(rss: Rss) {
    PEAK_ANON.fetch_max(rss.anon_kib, Ordering::Relaxed);
    PEAK_FILE.fetch_max(rss.file_kib, Ordering::Relaxed);
}

/// Takes a sample now, in the calling thread, if a [`peak`] measurement is under way. A
/// workload calls it at its high point when that lasts less than a few sampling periods
/// (what it built is dropped before it returns, and the sampler could miss it).
pub(crate) fn sample_now() {
    if MEASURING.load(Ordering::Relaxed) {
        record(Status::open().read());
    }
}

/// Puts the calling thread (the sampler) in the `SCHED_IDLE` class: it then runs on a core
/// the workload leaves idle, and its wake-ups no longer preempt the workload's threads. At
/// normal priority, waking every millisecond made the hand-off with CPU-bound threads beside
/// it (buffer group) 20 to 50 times slower, even with the read of the status left out; at
/// nice 19, 4 times; as `SCHED_IDLE`, no slower than unmeasured. The cost: on cores the
/// workload (or another process) keeps busy, samples come further apart, which the samples
/// at the end of each timed span and of the workload make up for. Best effort: if the call
/// fails, the sampler runs at normal priority.
fn idle_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` on the calling thread (pid 0) with a valid parameter
    // block; it changes nothing else.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
}

/// Runs `workload` and returns its result with its peak memory, as the module docs say:
/// a thread samples `/proc/self/status` every ~1 ms from just before the workload starts
/// (that first sample is the base subtracted) until it returns, then one final sample is
/// taken while its result is still alive. One measurement at a time per process.
pub(crate) fn peak<R>(workload: impl FnOnce() -> R) -> (R, Rss) {
    assert!(!MEASURING.swap(true, Ordering::SeqCst), "one peak measurement at a time");
    let stop = Arc::new(AtomicBool::new(false));
    let (base_tx, base_rx) = std::sync::mpsc::channel();
    let sampler = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            idle_priority();
            // The base is sampled here, after this thread's stack and buffer exist, so
            // that the sampler's own memory is not counted.
            let mut status = Status::open();
            let base = status.read();
            PEAK_ANON.store(base.anon_kib, Ordering::Relaxed);
            PEAK_FILE.store(base.file_kib, Ordering::Relaxed);
            let _ = base_tx.send(base);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                record(status.read());
            }
        }
    });
    let base = base_rx.recv().expect("the sampler's base sample");
    let result = workload();
    record(Status::open().read());
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("the memory sampler");
    MEASURING.store(false, Ordering::SeqCst);
    let highest =
        Rss { anon_kib: PEAK_ANON.load(Ordering::Relaxed), file_kib: PEAK_FILE.load(Ordering::Relaxed) };
    (result, highest.above(base))
}

/// Runs this binary as `--child ARGS...` and returns what it printed; panics if it failed
/// (its error output goes to the terminal as it comes).
pub(crate) fn run_child(args: &[&str]) -> String {
    let out = Command::new(std::env::current_exe().expect("the benchmark binary"))
        .arg("--child")
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("starting a child of the benchmark binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "child {args:?} failed ({}): {stdout}", out.status);
    stdout
}

/// Reports one workload's memory rows: `LABEL: peak RssAnon` for each implementation, then
/// `LABEL: peak RssFile` for each, in MiB, as one run each (lower is better).
pub(crate) fn report_rows(group: &str, label: &str, peaks: &[(&str, Rss)]) {
    let mib = |kib: u64| {
        let v = kib as f64 / 1024.0;
        (v, v, v)
    };
    for (implementation, rss) in peaks {
        report(group, &format!("{label}: peak RssAnon"), implementation, mib(rss.anon_kib), "MiB", 1, false);
    }
    for (implementation, rss) in peaks {
        report(group, &format!("{label}: peak RssFile"), implementation, mib(rss.file_kib), "MiB", 1, false);
    }
}

/// What a memory child measures: one implementation of one workload of one group.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The group (`cache`, `buffer`, `eat`, `redis`): which module answers.
    pub(crate) group: String,
    /// The workload's id (see `harness::Workload::new`).
    pub(crate) workload: String,
    /// The implementation's name, as its rows show it.
    pub(crate) implementation: String,
    /// What the group passes on from the benchmark run (the Redis group: the server's URL
    /// and the calibrated work), so that every child runs the same workload.
    pub(crate) args: Vec<String>,
}

/// Set once a memory child has printed its figures, so that a child that found no such
/// workload or implementation fails instead of passing as zero.
static MEASURED: AtomicBool = AtomicBool::new(false);

/// In a memory child: prints the figures for the parent ([`report_children`]) to read.
pub(crate) fn print(rss: Rss) {
    println!("{rss}");
    MEASURED.store(true, Ordering::SeqCst);
}

/// The configuration of a memory child, from its arguments
/// `GROUP WORKLOAD IMPLEMENTATION quick|full ARGS...` (see [`report_children`]).
pub(crate) fn child_config(args: &[String]) -> Config {
    let [group, workload, implementation, size, rest @ ..] = args else {
        panic!("usage: --child peak GROUP WORKLOAD IMPLEMENTATION quick|full ARGS...; got {args:?}")
    };
    let mut config = Config::new(size == "quick");
    config.peak = Some(Target {
        group: group.clone(),
        workload: workload.clone(),
        implementation: implementation.clone(),
        args: rest.to_vec(),
    });
    config
}

/// Ends a memory child: fails if the group ran nothing for its target.
pub(crate) fn check_measured(c: &Config) {
    assert!(
        MEASURED.load(Ordering::SeqCst),
        "no such workload or implementation in this group: {:?}",
        c.peak
    );
}

/// In the benchmark run: runs each of `implementations` of the workload `id` in a memory
/// child of its own (`--child peak GROUP ID IMPLEMENTATION quick|full ARGS...`, which the
/// group answers by running that one implementation once under [`peak`]) and reports the
/// rows. One child at a time, so that children do not share the cores.
pub(crate) fn report_children(
    c: &Config,
    group: &str,
    id: &str,
    label: &str,
    implementations: &[&str],
    args: &[String],
) {
    let size = if c.quick { "quick" } else { "full" };
    let peaks: Vec<(&str, Rss)> = implementations
        .iter()
        .map(|&implementation| {
            let mut child_args = vec!["peak", group, id, implementation, size];
            child_args.extend(args.iter().map(String::as_str));
            (implementation, Rss::parse(&run_child(&child_args)))
        })
        .collect();
    report_rows(group, label, &peaks);
}

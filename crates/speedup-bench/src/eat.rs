//! cereal-eat vs `Arc` clones (fan-out), rayon `par_chunks_mut` and a single loop (segment
//! traversal), and one process vs two (shared memory).

use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cereal_eat::traverse::par_for_each;
use cereal_eat::{AtomicArray, Ptr, SharedArray, eat, split};

use crate::harness::{Config, Workload, rate, report, timed};

fn bench_fanout(c: &Config) {
    let n = 1_000_000;
    let label = "fan-out of 1M handles to one 1 MiB object";
    let Some(mut w) = Workload::new(c, "eat", "fanout", label) else { return };
    w.rate("cereal-eat", "handles/s", || {
        let (handles, took) = timed(|| eat(vec![0u8; 1 << 20], n).collect::<Vec<Ptr<Vec<u8>>>>());
        black_box(&handles);
        (n as u64, took)
    });
    w.rate("std Arc<RwLock> clones", "handles/s", || {
        let (handles, took) = timed(|| {
            let shared = Arc::new(std::sync::RwLock::new(vec![0u8; 1 << 20]));
            (0..n).map(|_| Arc::clone(&shared)).collect::<Vec<_>>()
        });
        black_box(&handles);
        (n as u64, took)
    });
    w.memory();
}

/// The size of one handle, each way (static figures: no run, no memory rows).
fn report_handle_sizes() {
    let bytes = size_of::<Ptr<Vec<u8>>>() as f64;
    report("eat", "bytes per handle", "cereal-eat", (bytes, bytes, bytes), "bytes", 1, false);
    let arc = size_of::<Arc<std::sync::RwLock<Vec<u8>>>>() as f64;
    report("eat", "bytes per handle", "std Arc<RwLock> clones", (arc, arc, arc), "bytes", 1, false);
}

fn bench_traversal(c: &Config) {
    let side = if c.quick { 2048 } else { 4096 };
    let n = side * side;
    let label = format!("add one to every element of {side}x{side} u64, 2 threads");
    let Some(mut w) = Workload::new(c, "eat", "traversal", label) else { return };
    // The array is the benchmark's input, made before any memory measurement starts.
    let mut data: Vec<u64> = (0..n as u64).collect();
    w.rate("cereal-eat", "elements/s", || {
        let (whole, segments) =
            split(std::mem::take(&mut data), &[side, side], 16 * rayon::current_num_threads()).unwrap();
        let start = Instant::now();
        let segments = par_for_each(segments, 1 << 14, |seg| seg.iter_mut().for_each(|v| *v += 1));
        let took = start.elapsed();
        data = whole.join(segments).unwrap();
        (n as u64, took)
    });
    w.rate("rayon par_chunks_mut", "elements/s", || {
        use rayon::prelude::*;
        let start = Instant::now();
        data.par_chunks_mut(side).for_each(|row| row.iter_mut().for_each(|v| *v += 1));
        (n as u64, start.elapsed())
    });
    w.rate("single-threaded loop", "elements/s", || {
        let start = Instant::now();
        data.iter_mut().for_each(|v| *v += 1);
        black_box(&data);
        (n as u64, start.elapsed())
    });
    w.memory();
}

/// No memory rows: its peer is a figure from the original cereal's document, not a program run here.
fn bench_seed_example(c: &Config) {
    let label = "the original cereal's 16x625 thread-pool example (Python: 111 ms)";
    let mut data: Vec<i64> = (0..10_000).collect();
    let r = rate(c.runs.max(5), || {
        let (whole, segments) = split(std::mem::take(&mut data), &[16, 625], 16).unwrap();
        let start = Instant::now();
        let segments = par_for_each(segments, 0, |slice| {
            for n in 0..625 {
                slice[n] += 1;
            }
        });
        let took = start.elapsed();
        data = whole.join(segments).unwrap();
        (1, took)
    });
    let micros = (1e6 / r.0, 1e6 / r.2, 1e6 / r.1);
    report("eat", label, "cereal-eat", micros, "us", c.runs.max(5), false);
    let python = (111_000.0, 111_000.0 - 1_670.0, 111_000.0 + 1_670.0);
    report("eat", label, "cereal (Python, the original's figure)", python, "us", 7, false);
}

fn bench_async(c: &Config) {
    // The memory rows cover a whole run: submitting the tasks and awaiting them all.
    let label = "10,000 async tasks, submitted and awaited";
    let Some(mut w) = Workload::new(c, "eat", "async", label) else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let max_delay = 100u64;
    let mut overheads = Vec::new();
    let mut run = || {
        runtime.block_on(async {
            let x = Arc::new(AtomicArray::from_vec(vec![0i64; 10_000], &[16, 625]).unwrap());
            let shared = Arc::clone(&x);
            let start = Instant::now();
            let all = cereal_eat::traverse::spawn_each(10_000, 10_000, move |n| {
                let x = Arc::clone(&shared);
                async move {
                    let delay = (n as u64).wrapping_mul(2_654_435_761) % max_delay;
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    x.fetch_add(n, 1);
                }
            });
            let submitted = start.elapsed();
            all.await.unwrap();
            overheads.push(start.elapsed().as_secs_f64() * 1e3 - max_delay as f64);
            assert!(x.to_vec().iter().all(|&v| v == 1));
            (1, submitted)
        })
    };
    // Timed here, reported as times (ms) rather than rates.
    w.peak("cereal-eat", &mut run);
    if !w.in_child() {
        let r = rate(c.runs, run);
        let ms = (1e3 / r.0, 1e3 / r.2, 1e3 / r.1);
        report("eat", "submit 10,000 async tasks", "cereal-eat", ms, "ms", c.runs, false);
        overheads.sort_by(f64::total_cmp);
        let o = (overheads[overheads.len() / 2], overheads[0], overheads[overheads.len() - 1]);
        report(
            "eat",
            "10,000 tasks: completion after the longest delay (100 ms)",
            "cereal-eat",
            o,
            "ms",
            c.runs,
            false,
        );
    }
    w.memory();
}

/// No memory rows: its workers are processes of their own, and what they share is a
/// mapping of `/dev/shm` (RssShmem), which neither memory row counts.
fn bench_shm(c: &Config) {
    let cells = if c.quick { 8 << 20 } else { 128 << 20 }; // 64 MiB or 1 GiB of u64
    let dir = tempfile::tempdir_in(if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "." })
        .unwrap();
    let path = dir.path().join("store");
    let label = format!("add one to every element of a {} MiB shared store", (cells * 8) >> 20);
    let run = |parts: usize| {
        // `create` refuses an existing file (it never truncates a live array): start afresh.
        let _ = std::fs::remove_file(&path);
        let _store: SharedArray<u64> = SharedArray::create(&path, &[cells]).unwrap();
        let start = Instant::now();
        let children: Vec<_> = (0..parts)
            .map(|part| {
                Command::new(std::env::current_exe().unwrap())
                    .args(["--child", "shm", path.to_str().unwrap(), &part.to_string(), &parts.to_string()])
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        (cells as u64, start.elapsed())
    };
    let r = rate(c.runs, || run(2));
    report("eat", &label, "cereal-eat, 2 processes", r, "elements/s", c.runs, true);
    let r = rate(c.runs, || run(1));
    report("eat", &label, "cereal-eat, 1 process", r, "elements/s", c.runs, true);
}

/// `--child shm PATH PART PARTS`: add one to this part's elements.
pub(crate) fn child(args: &[String]) {
    let store: SharedArray<u64> = SharedArray::open(&args[0]).unwrap();
    let (part, parts): (usize, usize) = (args[1].parse().unwrap(), args[2].parse().unwrap());
    let n = store.len();
    for i in part * n / parts..(part + 1) * n / parts {
        store.fetch_add(i, 1);
    }
}

pub(crate) fn run(c: &Config) {
    eprintln!("cereal-eat ({} runs each)", c.runs);
    bench_fanout(c);
    report_handle_sizes();
    bench_traversal(c);
    bench_seed_example(c);
    bench_async(c);
    bench_shm(c);
}

/// The workloads that report memory: a memory child of this group calls this, and only
/// its own workload and implementation run (see [`Workload`]).
pub(crate) fn workloads(c: &Config) {
    bench_fanout(c);
    bench_traversal(c);
    bench_async(c);
}

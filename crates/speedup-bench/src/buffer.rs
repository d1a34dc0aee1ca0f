//! speedup-buffer vs crossbeam-channel and std's sync_channel (hand-off), a single loop
//! (overlap), and `Vec` indexing (cached re-reads).

use std::hint::black_box;
use std::time::Instant;

use speedup_buffer::Buffer;

use crate::harness::{Config, keys, rate, report, timed};

/// Roughly `n` nanoseconds of work that the optimizer cannot remove.
fn work(seed: u64, rounds: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..rounds {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
    }
    x
}

/// Rounds of `work` that take about one microsecond here.
fn rounds_per_micro() -> u64 {
    let n = 20_000_000;
    let (_, took) = timed(|| work(1, n));
    (n as f64 / (took.as_secs_f64() * 1e6)).max(1.0) as u64
}

fn bench_handoff(c: &Config) {
    let n = c.size(50_000_000) as u64;
    let label = "hand-off of 0u64.., read in order by one consumer";
    let r = rate(c.runs, || {
        let start = Instant::now();
        let b = Buffer::new(0u64..);
        let sum: u64 = b.iter().take(n as usize).copied().fold(0, u64::wrapping_add);
        black_box(sum);
        (n, start.elapsed())
    });
    report("buffer", label, "speedup-buffer", r, "items/s", c.runs, true);
    let r = rate(c.runs, || {
        let start = Instant::now();
        let (tx, rx) = crossbeam_channel::bounded(16);
        let producer = std::thread::spawn(move || {
            for i in 0u64.. {
                if tx.send(i).is_err() {
                    break;
                }
            }
        });
        let sum: u64 = rx.iter().take(n as usize).fold(0, u64::wrapping_add);
        drop(rx);
        producer.join().unwrap();
        black_box(sum);
        (n, start.elapsed())
    });
    report("buffer", label, "crossbeam-channel bounded(16)", r, "items/s", c.runs, true);
    let m = n / 20; // std's channel is far slower: fewer items, same rate unit
    let r = rate(c.runs, || {
        let start = Instant::now();
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let producer = std::thread::spawn(move || {
            for i in 0u64.. {
                if tx.send(i).is_err() {
                    break;
                }
            }
        });
        let sum: u64 = rx.iter().take(m as usize).fold(0, u64::wrapping_add);
        drop(rx);
        producer.join().unwrap();
        black_box(sum);
        (m, start.elapsed())
    });
    report("buffer", label, "std sync_channel(16)", r, "items/s", c.runs, true);
}

/// Runs `f` while `threads` CPU-bound threads spin beside it (oversubscribed cores).
fn beside_spinners<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..threads)
        .map(|t| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = t as u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = work(x, 1000);
                }
                black_box(x);
            })
        })
        .collect();
    let out = f();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    out
}

/// The hand-off again, with as many CPU-bound threads beside it as there are cores: the
/// producer and the consumer are descheduled at any time (a container's neighbours, a
/// build beside the service).
fn bench_handoff_oversubscribed(c: &Config) {
    let n = c.size(10_000_000) as u64;
    let spinners = std::thread::available_parallelism().map_or(2, |p| p.get());
    let label = format!("hand-off, {spinners} CPU-bound threads beside it");
    let r = rate(c.runs, || {
        beside_spinners(spinners, || {
            let start = Instant::now();
            let b = Buffer::new(0u64..);
            let sum: u64 = b.iter().take(n as usize).copied().fold(0, u64::wrapping_add);
            black_box(sum);
            (n, start.elapsed())
        })
    });
    report("buffer", &label, "speedup-buffer", r, "items/s", c.runs, true);
    let r = rate(c.runs, || {
        beside_spinners(spinners, || {
            let start = Instant::now();
            let (tx, rx) = crossbeam_channel::bounded(16);
            let producer = std::thread::spawn(move || {
                for i in 0u64.. {
                    if tx.send(i).is_err() {
                        break;
                    }
                }
            });
            let sum: u64 = rx.iter().take(n as usize).fold(0, u64::wrapping_add);
            drop(rx);
            producer.join().unwrap();
            black_box(sum);
            (n, start.elapsed())
        })
    });
    report("buffer", &label, "crossbeam-channel bounded(16)", r, "items/s", c.runs, true);
}

fn bench_overlap(c: &Config) {
    let per_micro = rounds_per_micro();
    let n = c.size(200_000) as u64;
    let label = "producer and consumer each ~1 us per item";
    let r = rate(c.runs, || {
        let start = Instant::now();
        let b = Buffer::new((0..n).map(move |i| work(i, per_micro)));
        let sum = b.iter().fold(0u64, |acc, &v| acc.wrapping_add(work(v, per_micro)));
        black_box(sum);
        (n, start.elapsed())
    });
    report("buffer", label, "speedup-buffer", r, "items/s", c.runs, true);
    let r = rate(c.runs, || {
        let start = Instant::now();
        let sum =
            (0..n).map(|i| work(i, per_micro)).fold(0u64, |acc, v| acc.wrapping_add(work(v, per_micro)));
        black_box(sum);
        (n, start.elapsed())
    });
    report("buffer", label, "one loop doing both", r, "items/s", c.runs, true);
}

fn bench_reread(c: &Config) {
    let n = c.size(5_000_000);
    let b = Buffer::builder().lookahead(1024).build(0u64..n as u64);
    assert_eq!(b.get(n - 1), Some(&(n as u64 - 1)));
    let v: Vec<u64> = (0..n as u64).collect();
    let probe: Vec<usize> = keys(n, 4).into_iter().map(|k| (k % n as u64) as usize).collect();
    let label = "cached re-read get(i), random i";
    let r = rate(c.runs, || {
        let (s, took) = timed(|| probe.iter().map(|&i| *b.get(i).unwrap()).fold(0u64, u64::wrapping_add));
        black_box(s);
        (n as u64, took)
    });
    report("buffer", label, "speedup-buffer", r, "reads/s", c.runs, true);
    let r = rate(c.runs, || {
        let (s, took) = timed(|| probe.iter().map(|&i| v[black_box(i)]).fold(0u64, u64::wrapping_add));
        black_box(s);
        (n as u64, took)
    });
    report("buffer", label, "std Vec index", r, "reads/s", c.runs, true);
}

pub(crate) fn run(c: &Config) {
    eprintln!("speedup-buffer ({} runs each)", c.runs);
    bench_handoff(c);
    bench_handoff_oversubscribed(c);
    bench_overlap(c);
    bench_reread(c);
}

//! speedup-buffer vs crossbeam-channel and std's sync_channel (hand-off), a single loop
//! (overlap), and `Vec` indexing (cached re-reads).

use std::hint::black_box;
use std::time::{Duration, Instant};

use speedup_buffer::Buffer;

use crate::harness::{Config, Workload, keys, timed};
use crate::memory;

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

/// One hand-off of `n` items through speedup-buffer, timed from the buffer's creation.
fn handoff_buffer(n: u64) -> (u64, Duration) {
    let start = Instant::now();
    let b = Buffer::new(0u64..);
    let sum: u64 = b.iter().take(n as usize).copied().fold(0, u64::wrapping_add);
    black_box(sum);
    let took = start.elapsed();
    // The buffer keeps what it handed off (for `get`): sampled at its fullest.
    memory::sample_now();
    (n, took)
}

/// One hand-off of `n` items through a channel that `make` creates (a send that says
/// whether the receiver is still there, and the receiver), timed from its creation: a
/// producer thread sends `0..` until the consumer, having read `n`, hangs up.
fn handoff_channel<S, R>(n: u64, make: impl FnOnce() -> (S, R)) -> (u64, Duration)
where
    S: FnMut(u64) -> bool + Send + 'static,
    R: IntoIterator<Item = u64>,
{
    let start = Instant::now();
    let (mut send, rx) = make();
    let producer = std::thread::spawn(move || {
        for i in 0u64.. {
            if !send(i) {
                break;
            }
        }
    });
    // The receiver goes with the iterator, at the end of this statement: the hang-up.
    let sum: u64 = rx.into_iter().take(n as usize).fold(0, u64::wrapping_add);
    producer.join().unwrap();
    black_box(sum);
    (n, start.elapsed())
}

/// The crossbeam peer, for [`handoff_channel`].
fn crossbeam_16() -> (impl FnMut(u64) -> bool + Send + 'static, crossbeam_channel::Receiver<u64>) {
    let (tx, rx) = crossbeam_channel::bounded(16);
    (move |i| tx.send(i).is_ok(), rx)
}

fn bench_handoff(c: &Config) {
    let n = c.size(50_000_000) as u64;
    let label = "hand-off of 0u64.., read in order by one consumer";
    let Some(mut w) = Workload::new(c, "buffer", "handoff", label) else { return };
    w.rate("speedup-buffer", "items/s", || handoff_buffer(n));
    w.rate("crossbeam-channel bounded(16)", "items/s", || handoff_channel(n, crossbeam_16));
    let m = n / 20; // std's channel is far slower: fewer items, same rate unit
    w.rate("std sync_channel(16)", "items/s", || {
        handoff_channel(m, || {
            let (tx, rx) = std::sync::mpsc::sync_channel(16);
            (move |i| tx.send(i).is_ok(), rx)
        })
    });
    w.memory();
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
    let Some(mut w) = Workload::new(c, "buffer", "handoff-oversubscribed", label) else { return };
    w.rate("speedup-buffer", "items/s", || beside_spinners(spinners, || handoff_buffer(n)));
    w.rate("crossbeam-channel bounded(16)", "items/s", || {
        beside_spinners(spinners, || handoff_channel(n, crossbeam_16))
    });
    w.memory();
}

fn bench_overlap(c: &Config) {
    let n = c.size(200_000) as u64;
    let label = "producer and consumer each ~1 us per item";
    let Some(mut w) = Workload::new(c, "buffer", "overlap", label) else { return };
    let per_micro = rounds_per_micro();
    w.rate("speedup-buffer", "items/s", || {
        let start = Instant::now();
        let b = Buffer::new((0..n).map(move |i| work(i, per_micro)));
        let sum = b.iter().fold(0u64, |acc, &v| acc.wrapping_add(work(v, per_micro)));
        black_box(sum);
        (n, start.elapsed())
    });
    w.rate("one loop doing both", "items/s", || {
        let start = Instant::now();
        let sum =
            (0..n).map(|i| work(i, per_micro)).fold(0u64, |acc, v| acc.wrapping_add(work(v, per_micro)));
        black_box(sum);
        (n, start.elapsed())
    });
    w.memory();
}

fn bench_reread(c: &Config) {
    let n = c.size(5_000_000);
    let label = "cached re-read get(i), random i";
    let Some(mut w) = Workload::new(c, "buffer", "reread", label) else { return };
    let probe: Vec<usize> = keys(n, 4).into_iter().map(|k| (k % n as u64) as usize).collect();
    // Each run fills its store before the clock starts, so that a memory child counts it.
    w.rate("speedup-buffer", "reads/s", || {
        let b = Buffer::builder().lookahead(1024).build(0u64..n as u64);
        assert_eq!(b.get(n - 1), Some(&(n as u64 - 1)));
        let (s, took) = timed(|| probe.iter().map(|&i| *b.get(i).unwrap()).fold(0u64, u64::wrapping_add));
        black_box(s);
        (n as u64, took)
    });
    w.rate("std Vec index", "reads/s", || {
        let v: Vec<u64> = (0..n as u64).collect();
        let (s, took) = timed(|| probe.iter().map(|&i| v[black_box(i)]).fold(0u64, u64::wrapping_add));
        black_box(s);
        (n as u64, took)
    });
    w.memory();
}

pub(crate) fn run(c: &Config) {
    eprintln!("speedup-buffer ({} runs each)", c.runs);
    workloads(c);
}

/// The workloads that report memory (here, all of them): a memory child of this group
/// calls this too, and only its own workload and implementation run (see [`Workload`]).
pub(crate) fn workloads(c: &Config) {
    bench_handoff(c);
    bench_handoff_oversubscribed(c);
    bench_overlap(c);
    bench_reread(c);
}

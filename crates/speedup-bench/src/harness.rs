//! Timing and reporting: each measurement is the median of `runs` repetitions, with the
//! fastest and slowest run as the spread.

use std::time::{Duration, Instant};

/// Sizes and repetitions for a quick or a full run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) quick: bool,
    pub(crate) runs: usize,
}

impl Config {
    pub(crate) fn new(quick: bool) -> Self {
        Config { quick, runs: if quick { 3 } else { 5 } }
    }

    /// `full` in a full run, `full / 5` in a quick one.
    pub(crate) fn size(&self, full: usize) -> usize {
        if self.quick { full / 5 } else { full }
    }
}

/// Median, slowest and fastest rate of `runs` runs of `work`, which returns the number of
/// operations it did and the time they took (so set-up can be excluded).
pub(crate) fn rate(runs: usize, mut work: impl FnMut() -> (u64, Duration)) -> (f64, f64, f64) {
    let mut rates: Vec<f64> = (0..runs)
        .map(|_| {
            let (ops, took) = work();
            ops as f64 / took.as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() / 2], rates[0], rates[rates.len() - 1])
}

/// Times a closure.
pub(crate) fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed())
}

/// One result line for `cargo xtask bench`:
/// `RESULT crate workload implementation value unit low high runs better` (tab-separated),
/// where `better` is `higher` or `lower`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn report(
    krate: &str,
    workload: &str,
    implementation: &str,
    (value, low, high): (f64, f64, f64),
    unit: &str,
    runs: usize,
    higher_is_better: bool,
) {
    let better = if higher_is_better { "higher" } else { "lower" };
    println!(
        "RESULT\t{krate}\t{workload}\t{implementation}\t{value}\t{unit}\t{low}\t{high}\t{runs}\t{better}"
    );
    eprintln!("  {workload:<48} {implementation:<22} {value:>14.0} {unit}");
}

/// A deterministic pseudo-random sequence (SplitMix64), the same for every implementation.
pub(crate) fn keys(n: usize, seed: u64) -> Vec<u64> {
    (0..n as u64).map(|i| key(seed, i)).collect()
}

/// Item `i` of [`keys`]`(_, seed)`, computed without storing the sequence (so memory
/// measurements do not count the benchmark's own key list).
pub(crate) fn key(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

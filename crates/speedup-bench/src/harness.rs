//! Timing and reporting: each measurement is the median of `runs` repetitions, with the
//! fastest and slowest run as the spread. [`Workload`] adds each implementation's peak
//! memory (see the `memory` module) to its rate.

use std::time::{Duration, Instant};

use crate::memory::{self, Rss, Target};

/// Sizes and repetitions for a quick or a full run.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) quick: bool,
    pub(crate) runs: usize,
    /// `Some` in a memory child (`--child peak ...`): the one implementation of one workload
    /// this process runs, once, to measure its memory. `None` in the benchmark run.
    pub(crate) peak: Option<Target>,
}

impl Config {
    pub(crate) fn new(quick: bool) -> Self {
        Config { quick, runs: if quick { 3 } else { 5 }, peak: None }
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

/// Times a closure. Then, in a memory measurement, takes a sample while its result is still
/// alive (see [`memory::sample_now`]): the end of a timed span is often a workload's high
/// point, and a short one could fall between two samples.
pub(crate) fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    memory::sample_now();
    (r, took)
}

/// One workload of a group, run by each of its implementations. In the benchmark run,
/// [`Workload::rate`] times each implementation here and [`Workload::memory`] then measures
/// each one's peak memory in a child process of its own. In a memory child the same code
/// runs, but only the child's implementation does anything: its run closure, once, under
/// [`memory::peak`]. So the memory figure comes from the very workload that was timed.
#[derive(Debug)]
pub(crate) struct Workload<'c> {
    /// Sizes and runs, and whether this process is a memory child.
    c: &'c Config,
    /// The group the rows go to.
    group: &'static str,
    /// How a memory child names this workload (stable; the label may hold sizes).
    id: String,
    /// The workload as its rows name it; the memory rows add `: peak RssAnon` and so on.
    label: String,
    /// The implementations met so far in the benchmark run, in order.
    implementations: Vec<&'static str>,
    /// Passed on to the memory children (see [`Target::args`]).
    args: Vec<String>,
}

impl<'c> Workload<'c> {
    /// The workload `id` of `group`, reported as `label`; `None` in a memory child for
    /// another workload, so that the caller skips this one's set-up.
    pub(crate) fn new(
        c: &'c Config,
        group: &'static str,
        id: impl Into<String>,
        label: impl Into<String>,
    ) -> Option<Self> {
        let id = id.into();
        if c.peak.as_ref().is_some_and(|t| t.workload != id) {
            return None;
        }
        Some(Workload { c, group, id, label: label.into(), implementations: Vec::new(), args: Vec::new() })
    }

    /// Arguments every memory child of this workload gets (see [`Target::args`]).
    pub(crate) fn with_args(mut self, args: Vec<String>) -> Self {
        self.args = args;
        self
    }

    /// Whether this process is a memory child (which times nothing and reports no rate).
    pub(crate) fn in_child(&self) -> bool {
        self.c.peak.is_some()
    }

    /// Whether this process runs `implementation`: the benchmark run runs them all, a
    /// memory child only its own (so set-up only one implementation needs can be skipped).
    pub(crate) fn runs(&self, implementation: &str) -> bool {
        self.c.peak.as_ref().is_none_or(|t| t.implementation == implementation)
    }

    /// Times `run` (see [`rate`]) and reports its rate in `unit`, higher is better; in the
    /// memory child for `implementation`, runs it once under [`memory::peak`] instead. Set-up
    /// that belongs to the implementation (building a store, filling a cache) goes inside
    /// `run`, outside the part it times, so that the memory child counts it.
    pub(crate) fn rate(
        &mut self,
        implementation: &'static str,
        unit: &str,
        mut run: impl FnMut() -> (u64, Duration),
    ) {
        self.peak(implementation, &mut run);
        if !self.in_child() {
            let r = rate(self.c.runs, run);
            report(self.group, &self.label, implementation, r, unit, self.c.runs, true);
        }
    }

    /// Only the memory part of [`Workload::rate`], for a rate the caller measures and
    /// reports itself: notes `implementation` for [`Workload::memory`], or, in its memory
    /// child, runs `run` once under [`memory::peak`].
    pub(crate) fn peak<R>(&mut self, implementation: &'static str, run: impl FnOnce() -> R) {
        self.peak_from(implementation, || memory::peak(run).1);
    }

    /// [`Workload::peak`] for an implementation that runs in worker processes: `run` runs it
    /// once and returns the sum of its workers' peaks (each measured by [`memory::peak`]).
    pub(crate) fn peak_from(&mut self, implementation: &'static str, run: impl FnOnce() -> Rss) {
        match &self.c.peak {
            None => self.implementations.push(implementation),
            Some(target) if target.implementation == implementation => memory::print(run()),
            Some(_) => {}
        }
    }

    /// In the benchmark run, after the rates: each implementation's peak RssAnon and
    /// RssFile, measured in a child process of its own. Nothing in a memory child.
    pub(crate) fn memory(self) {
        if !self.in_child() {
            memory::report_children(
                self.c,
                self.group,
                &self.id,
                &self.label,
                &self.implementations,
                &self.args,
            );
        }
    }
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
    // Small figures (MiB, ms) keep two decimals on the terminal; rates need none.
    let decimals = if value.abs() < 100.0 { 2 } else { 0 };
    eprintln!("  {workload:<48} {implementation:<22} {value:>14.decimals$} {unit}");
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

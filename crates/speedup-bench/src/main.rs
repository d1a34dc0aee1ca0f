//! Side-by-side benchmarks of the pyspeedup-rs crates and their best peers.
//!
//! Run through `cargo xtask bench [--quick] [CRATE]`, which builds this binary in release
//! mode, shows its progress, and writes `docs/BENCHMARKS.md` from the `RESULT` lines it
//! prints. Each workload runs for every implementation in the same process run; each
//! implementation's peak memory in a workload is measured in a child process of its own
//! (see `memory`).

mod buffer;
mod cache;
mod eat;
mod harness;
mod memory;
mod outofcore;
mod paged;
mod redis;

use harness::Config;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        match args.get(1).map(String::as_str) {
            Some("shm") => eat::child(&args[2..]),
            Some("redis") => redis::child(&args[2..]),
            Some("outofcore") => outofcore::child_main(&args[2..]),
            Some("peak") => peak_child(&args[2..]),
            _ => paged::child(&args[1..]),
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only: Vec<&str> = args.iter().filter(|a| !a.starts_with("--")).map(String::as_str).collect();
    let config = Config::new(quick);
    let wants = |name: &str| only.is_empty() || only.contains(&name);
    if wants("paged") {
        paged::run(&config);
    }
    // Not in a plain run's default set: it needs minutes and a memory cgroup.
    if only.contains(&"outofcore") || (only.is_empty() && !quick) {
        outofcore::run(&config);
    }
    if wants("cache") {
        cache::run(&config);
    }
    if wants("buffer") {
        buffer::run(&config);
    }
    if wants("eat") {
        eat::run(&config);
    }
    if wants("redis") {
        redis::run(&config);
    }
}

/// `--child peak GROUP WORKLOAD IMPLEMENTATION quick|full ARGS...`: one implementation's
/// peak memory in one workload (see `memory::report_children`).
fn peak_child(args: &[String]) {
    let config = memory::child_config(args);
    match config.peak.as_ref().map_or("", |t| t.group.as_str()) {
        "cache" => cache::workloads(&config),
        "buffer" => buffer::workloads(&config),
        "eat" => eat::workloads(&config),
        "redis" => redis::peak_child(&config),
        other => panic!("no memory children in group {other:?}"),
    }
    memory::check_measured(&config);
}

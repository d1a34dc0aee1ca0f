//! `cargo xtask bench`: run the benchmark crate, print the results, and with `--write`
//! regenerate `docs/BENCHMARKS.md`.
//!
//! The benchmark binary prints one tab-separated `RESULT` line per measurement (see
//! `crates/speedup-bench/src/harness.rs`); everything else it prints is progress and goes to
//! the terminal as it comes. Each group's section of the markdown is replaced whole, with the
//! machine, the date and the commit of this run: numbers are never edited by hand. A quick
//! run never replaces the section of a full run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use clap::ValueEnum;

use crate::{Result, root};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Fewer and shorter runs, for a smoke test. Never replaces the figures of a full run in
    /// docs/BENCHMARKS.md, even with --write.
    #[arg(long)]
    quick: bool,
    /// Rewrite the sections of docs/BENCHMARKS.md (and docs/bench-GROUP.svg) of the groups
    /// that ran. Without it the results are only printed.
    #[arg(long)]
    write: bool,
    /// The groups to run; all but `python` when none is named (`outofcore` only in a full
    /// run).
    #[arg(value_enum)]
    groups: Vec<Group>,
}

/// A benchmark group: one section of docs/BENCHMARKS.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Group {
    /// speedup-paged against redb, heed (LMDB), fjall and std collections.
    Paged,
    /// speedup-paged on a store several times a cgroup memory cap, against heed.
    Outofcore,
    /// speedup-cache against moka and quick_cache.
    Cache,
    /// speedup-buffer against crossbeam and std channels.
    Buffer,
    /// cereal-eat against rayon and std `Arc<RwLock>` clones.
    Eat,
    /// speedup-cache's Redis tier against recomputing (needs redis-server).
    Redis,
    /// The Python package against its Python peers (builds a venv).
    Python,
}

impl Group {
    fn name(self) -> &'static str {
        match self {
            Group::Paged => "paged",
            Group::Outofcore => "outofcore",
            Group::Cache => "cache",
            Group::Buffer => "buffer",
            Group::Eat => "eat",
            Group::Redis => "redis",
            Group::Python => "python",
        }
    }
}

#[derive(Debug, Clone)]
struct Row {
    krate: String,
    workload: String,
    implementation: String,
    value: f64,
    unit: String,
    low: f64,
    high: f64,
    runs: String,
    higher_is_better: bool,
}

pub(crate) fn run(args: &Args) -> Result {
    warn_if_loaded();
    let native: Vec<&str> = args.groups.iter().filter(|g| **g != Group::Python).map(|g| g.name()).collect();
    let mut rows = Vec::new();
    if args.groups.is_empty() || !native.is_empty() {
        rows.extend(native_groups(&native, args.quick)?);
    }
    if args.groups.contains(&Group::Python) {
        rows.extend(python(args.quick)?);
    }
    print_table(&rows);
    if args.write {
        write_markdown(&rows, args.quick)
    } else {
        eprintln!("\n(not written: `cargo xtask bench --write ...` puts these into docs/BENCHMARKS.md)");
        Ok(())
    }
}

/// Warns when the machine is busy (load average above the number of cores): figures taken
/// then are lower and noisier than the machine can do.
fn warn_if_loaded() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()));
    if let Some(load) = load.filter(|&l| l > cores as f64) {
        eprintln!(
            "xtask bench: warning: the load average is {load:.2} on {cores} cores; other work \
             is running and the figures will be low and noisy"
        );
    }
}

/// Builds the benchmark binary (release) and returns its path as cargo reports it, so that
/// `CARGO_TARGET_DIR` and any other target setting are respected.
fn build_binary() -> Result<std::path::PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("\n$ cargo build --release -p speedup-bench --bin speedup-bench");
    let mut child = Command::new(cargo)
        .args(["build", "--release", "-p", "speedup-bench", "--bin", "speedup-bench"])
        .args(["--message-format=json-render-diagnostics"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout from cargo")?;
    let mut binary = None;
    for message in cargo_metadata::Message::parse_stream(BufReader::new(stdout)) {
        if let cargo_metadata::Message::CompilerArtifact(artifact) =
            message.map_err(|e| format!("reading cargo's output: {e}"))?
            && artifact.target.name == "speedup-bench"
            && let Some(path) = artifact.executable
        {
            binary = Some(path.into_std_path_buf());
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("building the benchmark binary failed ({status})"));
    }
    binary.ok_or_else(|| "cargo built no speedup-bench executable".into())
}

/// The groups run by the benchmark binary (all of them when `groups` is empty).
fn native_groups(groups: &[&str], quick: bool) -> Result<Vec<Row>> {
    let binary = build_binary()?;
    let mut args: Vec<&str> = groups.to_vec();
    if quick {
        args.insert(0, "--quick");
    }
    eprintln!("\n$ {} {}", binary.display(), args.join(" "));
    let mut command = Command::new(&binary);
    command.args(&args);
    collect(command, "the benchmark binary")
}

/// Runs a benchmark process and gathers its `RESULT` lines, passing the rest on. On a
/// terminal a spinner shows the time taken, the results so far and the last one (a full run
/// takes many minutes); in a log it stays silent.
fn collect(mut command: Command, what: &str) -> Result<Vec<Row>> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let progress = indicatif::ProgressBar::new_spinner().with_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .map_err(|e| e.to_string())?,
    );
    progress.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut rows = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        match parse(&line) {
            Some(row) => {
                progress.set_message(format!(
                    "{} results; last: {} / {}",
                    rows.len() + 1,
                    row.workload,
                    row.implementation
                ));
                rows.push(row);
            }
            None => progress.suspend(|| println!("{line}")),
        }
    }
    progress.finish_and_clear();
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("{what} failed ({status})"));
    }
    Ok(rows)
}

/// The `python` group: pyspeedup-rs (release build) against its Python peers, in one run of
/// crates/pyspeedup-py/bench/bench.py.
fn python(quick: bool) -> Result<Vec<Row>> {
    const PEERS: [&str; 5] =
        ["diskcache==5.6.3", "sqlitedict==2.1.0", "lmdbm", "cachetools", "prefetch-generator"];
    let venv = crate::python_package_with(true, &PEERS)?;
    let script = root().join("crates/pyspeedup-py/bench/bench.py");
    let mut command = Command::new(venv.bin.join("python"));
    // Unbuffered: results reach the spinner as they come.
    command.arg(&script).envs(venv.env()).env("PYTHONUNBUFFERED", "1");
    if quick {
        command.arg("--quick");
    }
    eprintln!("\n$ {command:?}");
    collect(command, "the Python benchmark")
}

/// The results on the terminal, one line per measurement.
fn print_table(rows: &[Row]) {
    println!();
    for r in rows {
        println!(
            "{:<10} {:<48} {:<24} {:>14}  ({}..{}, {} runs)",
            r.krate,
            r.workload,
            r.implementation,
            human(r.value, &r.unit),
            human(r.low, &r.unit),
            human(r.high, &r.unit),
            r.runs
        );
    }
}

fn parse(line: &str) -> Option<Row> {
    let f: Vec<&str> = line.strip_prefix("RESULT\t")?.split('\t').collect();
    let [krate, workload, implementation, value, unit, low, high, runs, better] = f[..] else {
        return None;
    };
    Some(Row {
        krate: krate.into(),
        workload: workload.into(),
        implementation: implementation.into(),
        value: value.parse().ok()?,
        unit: unit.into(),
        low: low.parse().ok()?,
        high: high.parse().ok()?,
        runs: runs.into(),
        higher_is_better: better == "higher",
    })
}

/// Our implementation's name for a crate section.
fn ours(krate: &str) -> String {
    match krate {
        "eat" => "cereal-eat".into(),
        "redis" => "speedup-cache".into(),
        "outofcore" => "speedup-paged".into(),
        "python" => "pyspeedup-rs".into(),
        other => format!("speedup-{other}"),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let rustc = output("rustc", &["-V"]);
    let commit = output("git", &["rev-parse", "--short", "HEAD"]);
    let date = output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    format!("{cores} cores, {cpu}; {rustc}; commit {commit}; {date}")
}

fn output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .current_dir(root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn human(value: f64, unit: &str) -> String {
    let (scaled, prefix) = match value {
        v if v >= 1e9 => (v / 1e9, "G"),
        v if v >= 1e6 => (v / 1e6, "M"),
        v if v >= 1e3 && unit.ends_with("/s") => (v / 1e3, "k"),
        v => (v, ""),
    };
    format!("{scaled:.2} {prefix}{unit}")
}

/// What the memory rows of a section count (see crates/speedup-bench/src/memory.rs).
const MEMORY_NOTE: &str = "Rows `WORKLOAD: peak RssAnon` and `WORKLOAD: peak RssFile` (MiB, lower is better, one run): the most anonymous memory (heap, stacks) and file-backed memory (mapped files, the program's code) each implementation held while running that workload, above what its process held just before the workload started; each implementation runs in a process of its own. Start-up and the benchmark's own input are not counted, shared memory (`/dev/shm`) is in neither row, and an implementation made of several processes reports the sum of theirs.";

/// Whether `row` is a peak-memory row (`WORKLOAD: peak RssAnon` or `... RssFile`).
fn is_memory(row: &Row) -> bool {
    row.workload.ends_with(": peak RssAnon") || row.workload.ends_with(": peak RssFile")
}

fn section(krate: &str, rows: &[&Row], quick: bool) -> String {
    let us = ours(krate);
    let mut s = String::new();
    let title = match krate {
        "redis" => format!("{us}: Redis tier"),
        "outofcore" => format!("{us}: out of core (a store several times the memory cap)"),
        _ => us.clone(),
    };
    let _ = writeln!(s, "## {title}\n");
    let _ = writeln!(
        s,
        "Run: `cargo xtask bench --write{} {krate}` on {}. Each figure is the median of the runs shown, with the slowest and fastest run as the spread. **Bold**: the best figure of the workload. Ratio: how many times better {us} is than that implementation (above 1: {us} wins).\n",
        if quick { " --quick" } else { "" },
        machine()
    );
    if rows.iter().any(|r| is_memory(r)) {
        let _ = writeln!(s, "{MEMORY_NOTE}\n");
    }
    let _ = writeln!(s, "![{us} vs peers](bench-{krate}.svg)\n");
    let _ = writeln!(s, "| workload | implementation | result | spread (min..max) | runs | ratio |");
    let _ = writeln!(s, "|---|---|---:|---|---:|---:|");
    let mut by_workload: BTreeMap<usize, (&str, Vec<&Row>)> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for r in rows {
        let i = order.iter().position(|w| *w == r.workload).unwrap_or_else(|| {
            order.push(&r.workload);
            order.len() - 1
        });
        by_workload.entry(i).or_insert((&r.workload, Vec::new())).1.push(r);
    }
    for (workload, group) in by_workload.values() {
        let better = |a: f64, b: f64| if group[0].higher_is_better { a > b } else { a < b };
        let best = group.iter().map(|r| r.value).fold(None, |acc: Option<f64>, v| match acc {
            Some(b) if !better(v, b) => Some(b),
            _ => Some(v),
        });
        let our = group.iter().find(|r| r.implementation == us).map(|r| r.value);
        for r in group {
            let shown = human(r.value, &r.unit);
            let shown = if Some(r.value) == best && group.len() > 1 { format!("**{shown}**") } else { shown };
            // A zero (a workload that needed no memory of its own) has no finite ratio.
            let ratio = match our {
                Some(o) if r.implementation != us && r.value > 0.0 && o > 0.0 => {
                    let x = if r.higher_is_better { o / r.value } else { r.value / o };
                    format!("{x:.2}x")
                }
                _ => "".into(),
            };
            let _ = writeln!(
                s,
                "| {workload} | {} | {shown} | {}..{} | {} | {ratio} |",
                r.implementation,
                human(r.low, &r.unit),
                human(r.high, &r.unit),
                r.runs
            );
        }
    }
    s
}

/// A horizontal bar chart: per workload, our figure relative to the best peer (1.0 = par).
fn svg(krate: &str, rows: &[&Row]) -> String {
    let us = ours(krate);
    let mut bars: Vec<(String, f64)> = Vec::new();
    let mut seen = Vec::new();
    for r in rows {
        if seen.contains(&r.workload) {
            continue;
        }
        seen.push(r.workload.clone());
        let group: Vec<&&Row> = rows.iter().filter(|x| x.workload == r.workload).collect();
        let Some(our) = group.iter().find(|x| x.implementation == us) else { continue };
        let peers = group.iter().filter(|x| x.implementation != us && x.value > 0.0);
        let best_peer = if r.higher_is_better {
            peers.map(|x| x.value).fold(f64::NAN, f64::max)
        } else {
            peers.map(|x| x.value).fold(f64::NAN, f64::min)
        };
        // No bar without a peer, nor for a zero of ours where lower is better (no finite ratio).
        if best_peer.is_nan() || (!r.higher_is_better && our.value <= 0.0) {
            continue;
        }
        let ratio = if r.higher_is_better { our.value / best_peer } else { best_peer / our.value };
        bars.push((r.workload.clone(), ratio));
    }
    let (row_h, left, width) = (26.0, 380.0, 760.0);
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max).min(50.0);
    let scale = (width - left - 70.0) / max;
    let height = 40.0 + row_h * bars.len() as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<text x="10" y="18" font-weight="bold">{us}: times better than the best peer (bar past the line = faster/smaller)</text>
"#
    );
    for (i, (label, ratio)) in bars.iter().enumerate() {
        let y = 30.0 + row_h * i as f64;
        let w = (ratio.min(max) * scale).max(1.0);
        let color = if *ratio >= 1.0 { "#2e7d32" } else { "#c62828" };
        let label = label.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let _ = writeln!(
            s,
            r#"<text x="{:.0}" y="{:.0}" text-anchor="end">{label}</text><rect x="{left}" y="{:.0}" width="{w:.1}" height="{:.0}" fill="{color}"/><text x="{:.0}" y="{:.0}">{ratio:.2}x</text>"#,
            left - 8.0,
            y + 15.0,
            y + 4.0,
            row_h - 8.0,
            left + w + 6.0,
            y + 15.0
        );
    }
    let x1 = left + scale;
    let _ = writeln!(
        s,
        r##"<line x1="{x1:.1}" y1="26" x2="{x1:.1}" y2="{height}" stroke="#333" stroke-dasharray="4 3"/>"##
    );
    s.push_str("</svg>\n");
    s
}

fn write_markdown(rows: &[Row], quick: bool) -> Result {
    let docs = root().join("docs");
    let path = docs.join("BENCHMARKS.md");
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\n<!-- generated by `cargo xtask bench`: do not edit by hand -->\n\nEach section below comes from one run of `cargo xtask bench` and names the machine it ran on. Ratios compare implementations measured in the same process run; absolute figures on a shared 2-core VM move by tens of percent between runs.\n".into()
    });
    let mut crates: Vec<&str> = rows.iter().map(|r| r.krate.as_str()).collect();
    crates.dedup();
    for krate in crates {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.krate == krate).collect();
        let (start, end) = (format!("<!-- bench:{krate}:start -->"), format!("<!-- bench:{krate}:end -->"));
        if quick && holds_full_run(&text, &start, &end) {
            eprintln!("{krate}: docs/BENCHMARKS.md holds a full run; a --quick run does not replace it");
            continue;
        }
        let body = format!("{start}\n{}{end}", section(krate, &mine, quick));
        text = match (text.find(&start), text.find(&end)) {
            (Some(a), Some(b)) if a < b => format!("{}{body}{}", &text[..a], &text[b + end.len()..]),
            _ => format!("{}\n{body}\n", text.trim_end()),
        };
        std::fs::write(docs.join(format!("bench-{krate}.svg")), svg(krate, &mine))
            .map_err(|e| e.to_string())?;
    }
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Whether the section between `start` and `end` comes from a full run (its "Run:" line has
/// no `--quick`).
fn holds_full_run(text: &str, start: &str, end: &str) -> bool {
    match (text.find(start), text.find(end)) {
        (Some(a), Some(b)) if a < b => text[a..b]
            .lines()
            .find(|l| l.starts_with("Run: `cargo xtask bench"))
            .is_some_and(|l| !l.contains("--quick")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(section: &str, expected: bool) {
        let text = format!("# Benchmarks\n<!-- bench:cache:start -->\n{section}<!-- bench:cache:end -->\n");
        assert_eq!(holds_full_run(&text, "<!-- bench:cache:start -->", "<!-- bench:cache:end -->"), expected);
    }

    /// A one-run row of the `cache` group (a rate when `higher_is_better`, else MiB).
    fn row(workload: &str, implementation: &str, value: f64, higher_is_better: bool) -> Row {
        Row {
            krate: "cache".into(),
            workload: workload.into(),
            implementation: implementation.into(),
            value,
            unit: if higher_is_better { "hits/s" } else { "MiB" }.into(),
            low: value,
            high: value,
            runs: "1".into(),
            higher_is_better,
        }
    }

    #[test]
    fn memory_rows_are_explained_and_a_zero_has_no_ratio() {
        let rows = [
            row("hit path", "speedup-cache", 5e7, true),
            row("hit path", "moka", 5e6, true),
            row("hit path: peak RssAnon", "speedup-cache", 0.0, false),
            row("hit path: peak RssAnon", "moka", 2.5, false),
            row("hit path: peak RssFile", "speedup-cache", 1.0, false),
            row("hit path: peak RssFile", "moka", 2.0, false),
        ];
        let rows: Vec<&Row> = rows.iter().collect();
        let text = section("cache", &rows, true);
        assert!(text.contains(MEMORY_NOTE), "{text}");
        assert!(
            text.contains("| hit path: peak RssFile | moka | 2.00 MiB | 2.00 MiB..2.00 MiB | 1 | 2.00x |"),
            "{text}"
        );
        assert!(!text.contains("infx"), "{text}");
        let chart = svg("cache", &rows);
        assert!(!chart.contains("infx") && chart.contains("2.00x"), "{chart}");
        let no_memory = section("cache", &rows[..2], true);
        assert!(!no_memory.contains(MEMORY_NOTE), "{no_memory}");
    }

    #[test]
    fn a_quick_run_keeps_a_full_one() {
        check("## speedup-cache\n\nRun: `cargo xtask bench cache` on 2 cores\n", true);
        check("## speedup-cache\n\nRun: `cargo xtask bench --quick cache` on 2 cores\n", false);
        check("", false);
    }
}

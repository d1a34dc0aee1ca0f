//! Project automation, in plain Rust so that nothing needs installing (the rust-analyzer
//! `xtask` pattern). Run as `cargo xtask <command>`:
//!
//! - `ci`: format check, clippy (all targets, warnings denied), tests (doctests included),
//!   docs (warnings denied), then the Python package's tests (`python`). The README's test
//!   command; `.ci/run` calls it.
//! - `python`: builds the Python package (crates/pyspeedup-py) into a venv under the target
//!   folder with maturin and runs its pytest suite.
//! - `bench [--quick] [CRATE...]`: runs the benchmark crate in release mode and regenerates
//!   `docs/BENCHMARKS.md` (the sections of the crates it ran) and `docs/bench-CRATE.svg`.
//! - `release`: checks versions and the changelog, then `cargo package`s every crate.
//! - `loom`: the loom models of the concurrency cores (also part of `ci`).
//! - `miri`: the unsafe-code tests that Miri can run, under Miri (needs nightly + miri).
//! - `soak`: the crash and memory tests at full size, in release mode.

mod bench;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("bench") => bench::run(&args[1..]),
        Some("release") => release(),
        Some("miri") => miri(),
        Some("loom") => loom(),
        Some("soak") => soak(),
        Some("python") => python(),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | bench [--quick] [CRATE...] | release | loom | miri | soak | python>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) type Result<T = ()> = std::result::Result<T, String>;

/// Runs `cargo` with `args` (and `env`), echoing the command; fails on a non-zero exit.
pub(crate) fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "\n$ {} cargo {}",
        env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
        args.join(" ")
    );
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`cargo {}` failed ({status})", args.join(" "))) }
}

/// The workspace root (the parent of this crate).
pub(crate) fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(|p| p.to_path_buf()).unwrap_or_default()
}

fn ci() -> Result {
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    // The benchmark crate is linted too (so it cannot rot), but not tested.
    cargo(
        &["clippy", "--workspace", "--all-targets", "--all-features", "--locked", "--", "-D", "warnings"],
        &[],
    )?;
    cargo(&["test", "--workspace", "--exclude", "speedup-bench", "--all-features", "--locked"], &[])?;
    cargo(
        &["doc", "--workspace", "--exclude", "speedup-bench", "--all-features", "--no-deps", "--locked"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    loom()?;
    python()?;
    eprintln!("\nxtask ci: all checks passed");
    Ok(())
}

/// The loom models of the concurrency cores, in release mode with a small preemption bound
/// (tokio's settings), in their own target folder so the normal build cache survives.
fn loom() -> Result {
    let env = [
        ("RUSTFLAGS", "--cfg speedup_loom"),
        ("LOOM_MAX_PREEMPTIONS", "2"),
        ("CARGO_TARGET_DIR", "target/loom"),
    ];
    for krate in LOOM_CRATES {
        cargo(&["test", "--release", "-p", krate, "--test", "loom", "--locked"], &env)?;
    }
    // Models of crate-private protocols live next to them, as unit tests named `loom_*`.
    cargo(&["test", "--release", "-p", "speedup-cache", "--lib", "--locked", "--", "loom_"], &env)
}

/// What the Python tests need from the package index. NB: keep in sync with the
/// `test` extra of crates/pyspeedup-py/pyproject.toml.
const PYTHON_TEST_PACKAGES: [&str; 5] = ["maturin>=1.8,<2", "pytest", "pytest-timeout", "numpy", "pandas"];

/// The Python package: a venv under the target folder (made once, with `$PYTHON` or
/// `python3`), maturin and the test packages, `maturin develop`, then pytest. pytest's
/// "no tests collected" (exit code 5) is a failure, like any other non-zero exit.
fn python() -> Result {
    let venv = python_package(false)?;
    let krate = root().join("crates").join("pyspeedup-py");
    let status = Command::new(venv.bin.join("python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(krate.join("tests"))
        .envs(venv.env())
        .current_dir(&krate)
        .status()
        .map_err(|e| format!("cannot run pytest: {e}"))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(5) => Err("pytest collected no tests (exit code 5): the Python tests did not run".into()),
        _ => Err(format!("the Python tests failed ({status})")),
    }
}

/// A venv under the target folder with the Python package built into it.
pub(crate) struct Venv {
    /// The venv's `bin` folder.
    pub(crate) bin: std::path::PathBuf,
    path: String,
    root: std::path::PathBuf,
}

impl Venv {
    /// The environment that activates the venv.
    pub(crate) fn env(&self) -> [(&str, &std::ffi::OsStr); 2] {
        [("VIRTUAL_ENV", self.root.as_os_str()), ("PATH", self.path.as_ref())]
    }
}

/// Makes the venv (once, with `$PYTHON` or `python3`), installs maturin and the test
/// packages (plus `extra`), and builds the package into it (`maturin develop`).
pub(crate) fn python_package_with(release: bool, extra: &[&str]) -> Result<Venv> {
    let root = root();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir), // a relative path is relative to the workspace here
        None => root.join("target"),
    };
    let venv = target.join("pyvenv");
    let bin = venv.join("bin");
    let interpreter = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if !bin.join("python").exists() {
        run(Command::new(&interpreter).arg("-m").arg("venv").arg(&venv), "create the Python venv")?;
    }
    // pip is quick when everything is installed already; a stamp skips even that.
    let stamp = venv.join("xtask-packages.txt");
    let packages: Vec<&str> = PYTHON_TEST_PACKAGES.iter().chain(extra).copied().collect();
    let wanted = packages.join("\n");
    let installed = std::fs::read_to_string(&stamp).unwrap_or_default();
    if !packages.iter().all(|p| installed.lines().any(|l| l == *p)) {
        run(
            Command::new(bin.join("python"))
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                .args(&packages),
            "install the Python packages",
        )?;
        std::fs::write(&stamp, &wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let venv = Venv { bin, path, root: venv };
    let krate = root.join("crates").join("pyspeedup-py");
    let mut develop = Command::new(venv.bin.join("maturin"));
    develop.args(["develop", "--locked", "--manifest-path"]).arg(krate.join("Cargo.toml"));
    if release {
        develop.arg("--release");
    }
    run(develop.envs(venv.env()).current_dir(&root), "build the Python package (maturin develop)")?;
    Ok(venv)
}

fn python_package(release: bool) -> Result<Venv> {
    python_package_with(release, &[])
}

/// Runs `command`, echoing it; fails on a non-zero exit, saying what it was for.
fn run(command: &mut Command, what: &str) -> Result {
    eprintln!("\n$ {command:?}");
    let status = command.status().map_err(|e| format!("cannot {what}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("could not {what} ({status})")) }
}

/// Crates with a `tests/loom.rs` model.
const LOOM_CRATES: [&str; 2] = ["speedup-cache", "speedup-buffer"];

fn miri() -> Result {
    // Miri cannot mmap files, so it runs the unit tests of the code that interprets bytes
    // (records, pages, extents) and the in-memory concurrency cores, with few proptest cases.
    // Tree Borrows: rkyv's relative pointers reach outside the root reference they start
    // from, which the Stacked Borrows model rejects but Tree Borrows (and, per rkyv's
    // maintainer, Rust's actual rules) allows: see rkyv/rkyv#436.
    let env = [
        ("PROPTEST_CASES", "4"),
        ("MIRIFLAGS", "-Zmiri-tree-borrows -Zmiri-strict-provenance -Zmiri-disable-isolation"),
    ];
    cargo(
        &[
            "+nightly",
            "miri",
            "test",
            "-p",
            "speedup-paged",
            "--lib",
            "--",
            "page::",
            "record::",
            "extent::",
            "hash::",
        ],
        &env,
    )?;
    for krate in ["speedup-cache", "speedup-buffer"] {
        cargo(&["+nightly", "miri", "test", "-p", krate, "--lib", "--", "miri"], &env)?;
    }
    // cereal-eat: every segment and shared-array unit test (the shared array runs over an
    // anonymous mapping, which Miri supports), the other `miri_*` unit tests, and the
    // shape properties of tests/shapes.rs (its file-based properties are ignored under Miri).
    cargo(
        &[
            "+nightly",
            "miri",
            "test",
            "-p",
            "cereal-eat",
            "--lib",
            "--test",
            "shapes",
            "--",
            "miri",
            "segments::",
            "shm::",
            "shape::",
        ],
        &env,
    )
}

fn soak() -> Result {
    cargo(
        &["test", "--release", "-p", "speedup-paged", "--test", "process"],
        &[
            ("SPEEDUP_CRASH_ROUNDS", "200"),
            ("SPEEDUP_MEMORY_ENTRIES", "10000000"),
            ("SPEEDUP_SMALL_PAGES_ENTRIES", "1000000"),
        ],
    )?;
    cargo(
        &["test", "--release", "-p", "speedup-paged", "--test", "open_race"],
        &[("SPEEDUP_RACE_ROUNDS", "500")],
    )?;
    cargo(
        &["test", "--release", "-p", "speedup-paged", "--test", "model", "smallest"],
        &[("SPEEDUP_SMALL_OPS", "2000000")],
    )?;
    cargo(
        &[
            "test",
            "--release",
            "-p",
            "speedup-cache",
            "--features",
            "redis",
            "--test",
            "redis_tier",
            "workers_killed_at_random",
        ],
        &[("SPEEDUP_REDIS_KILL_ROUNDS", "30")],
    )
}

/// Crates in dependency order: a crate comes after everything it depends on.
const CRATES: [&str; 6] =
    ["speedup-paged-derive", "speedup-paged", "cereal-eat", "speedup-buffer", "speedup-cache", "pyspeedup"];

fn release() -> Result {
    let root = root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).map_err(|e| e.to_string())?;
    let version = manifest
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim_matches('"').to_string())
        .ok_or("no version in [workspace.package]")?;
    let changelog =
        std::fs::read_to_string(root.join("CHANGELOG.md")).map_err(|e| format!("CHANGELOG.md: {e}"))?;
    if !changelog.lines().any(|l| l.starts_with("## ") && l.contains(&version)) {
        return Err(format!("CHANGELOG.md has no `## {version}` section"));
    }
    for krate in CRATES {
        let m = std::fs::read_to_string(root.join("crates").join(krate).join("Cargo.toml"))
            .map_err(|e| e.to_string())?;
        if !m.contains("version.workspace = true") {
            return Err(format!("{krate} does not take its version from the workspace"));
        }
    }
    let internal = format!("version = \"{version}\"");
    if manifest.lines().filter(|l| l.contains("path = \"crates/")).any(|l| !l.contains(&internal)) {
        return Err(format!("[workspace.dependencies] has an internal crate not at version {version}"));
    }
    eprintln!("versions: all crates at {version}, changelog has it");
    // One `cargo package` for all crates: cargo resolves their dependencies on each other
    // through a temporary local registry, in dependency order.
    let mut args = vec!["package", "--no-verify", "--allow-dirty"];
    for krate in CRATES {
        args.extend(["-p", krate]);
    }
    cargo(&args, &[])
}

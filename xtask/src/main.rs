//! Project automation, in plain Rust so that nothing needs installing (the rust-analyzer
//! `xtask` pattern). Run as `cargo xtask <command>`; `cargo xtask --help` lists the commands
//! and `cargo xtask <command> --help` their options:
//!
//! - `ci`: format check, clippy (all targets, warnings denied), tests (doctests included)
//!   with all features, then each library crate's tests with its default features and with
//!   none, docs (warnings denied) with all features and with default features, the
//!   published crates packaged and built from their packages, the loom models, then the
//!   Python package's tests (`python`). The README's test command;
//!   `.ci/run` calls it.
//! - `python`: builds the Python package (crates/pyspeedup-py) into a venv under the target
//!   folder with maturin and runs its pytest suite.
//! - `bench [--quick] [--write] [GROUP...]`: runs the benchmark crate in release mode and
//!   prints the results; with `--write` it regenerates `docs/BENCHMARKS.md` (the sections of
//!   the groups it ran) and `docs/bench-GROUP.svg`.
//! - `release`: checks versions and the changelog, then packages every published crate and
//!   builds the packages in dependency order, as a publish would.
//! - `loom`: the loom models of the concurrency cores (also part of `ci`).
//! - `miri`: the unsafe-code tests that Miri can run, under Miri (needs nightly + miri).
//! - `soak`: the crash and memory tests at full size, in release mode.

mod bench;

use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

/// Project automation for pyspeedup-rs (run as `cargo xtask <COMMAND>`).
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Everything CI checks: fmt, clippy, tests (all, default and no default features),
    /// docs (all and default features, warnings denied), packages, loom models, Python tests.
    Ci,
    /// Runs the benchmarks against their peers and prints the results (`--write` puts them
    /// into docs/BENCHMARKS.md).
    Bench(bench::Args),
    /// Checks versions and the changelog, then packages every published crate and builds
    /// the packages in dependency order, as `cargo publish` would.
    Release,
    /// The loom models of the concurrency cores, in release mode (also part of `ci`).
    Loom,
    /// The unsafe-code tests that Miri can run, under Miri (needs nightly with miri).
    Miri,
    /// The crash, race and memory tests at full size, in release mode.
    Soak,
    /// Builds the Python package into a venv (maturin) and runs its pytest suite.
    Python,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Task::Ci => ci(),
        Task::Bench(args) => bench::run(&args),
        Task::Release => release(),
        Task::Miri => miri(),
        Task::Loom => loom(),
        Task::Soak => soak(),
        Task::Python => python(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints clap's message (exit code 0 for --help and --version, 2 for a mistake); an
/// unknown command also gets the list of valid ones, which clap only gives for a near miss.
fn usage_error(e: clap::Error) -> ExitCode {
    let code = if e.use_stderr() { 2 } else { 0 };
    let _ = e.print();
    if e.kind() == clap::error::ErrorKind::InvalidSubcommand {
        use clap::CommandFactory as _;
        let valid: Vec<String> = Cli::command()
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .map(|c| c.get_name().to_string())
            .collect();
        eprintln!("valid commands: {}", valid.join(", "));
    }
    ExitCode::from(code)
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
    features()?;
    cargo(
        &["doc", "--workspace", "--exclude", "speedup-bench", "--all-features", "--no-deps", "--locked"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    // Intra-doc links to feature-gated items break only without the features.
    cargo(
        &["doc", "--workspace", "--exclude", "speedup-bench", "--no-deps", "--locked"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    // Every published crate builds from its package (no file outside it, dependencies by
    // version); `release` does the same and refuses a dirty tree.
    package(true)?;
    loom()?;
    python()?;
    eprintln!("\nxtask ci: all checks passed");
    Ok(())
}

/// Each published crate's tests (doctests included) with its default features, and with none
/// where that differs, one crate at a time so that features do not unify across the
/// workspace (what a user of that crate alone builds); `ci` runs the workspace with all
/// features. A loop rather than cargo-hack: nothing to install, and at most two runs per
/// crate is what fits CI's time.
fn features() -> Result {
    let metadata = metadata()?;
    let deny = [("RUSTDOCFLAGS", "-D warnings")];
    for krate in CRATES {
        cargo(&["test", "-p", krate, "--locked"], &[])?;
        // Its docs as docs.rs builds them without features: links to gated items break.
        cargo(&["doc", "-p", krate, "--no-deps", "--locked"], &deny)?;
        let package = metadata.workspace_packages().into_iter().find(|p| p.name.as_str() == krate);
        let defaults = package.and_then(|p| p.features.get("default")).is_some_and(|d| !d.is_empty());
        if defaults {
            cargo(&["test", "-p", krate, "--no-default-features", "--locked"], &[])?;
            cargo(&["doc", "-p", krate, "--no-deps", "--no-default-features", "--locked"], &deny)?;
        }
        // Each feature on its own: a link may need a name that another feature brings.
        for feature in package
            .map(|p| p.features.keys().filter(|f| *f != "default").collect::<Vec<_>>())
            .unwrap_or_default()
        {
            cargo(&["doc", "-p", krate, "--no-deps", "--features", feature, "--locked"], &deny)?;
        }
    }
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

/// The published crates in dependency order: a crate comes after everything it depends on
/// (`release` checks this list against `cargo metadata`).
const CRATES: [&str; 6] =
    ["speedup-paged-derive", "speedup-paged", "cereal-eat", "speedup-buffer", "speedup-cache", "pyspeedup"];

/// `cargo metadata` of the workspace.
pub(crate) fn metadata() -> Result<cargo_metadata::Metadata> {
    cargo_metadata::MetadataCommand::new()
        .manifest_path(root().join("Cargo.toml"))
        .exec()
        .map_err(|e| format!("cargo metadata: {e}"))
}

fn release() -> Result {
    let metadata = metadata()?;
    let published: Vec<&cargo_metadata::Package> = metadata
        .workspace_packages()
        .into_iter()
        .filter(|p| p.publish.as_ref().is_none_or(|registries| !registries.is_empty()))
        .collect();
    let mut names: Vec<&str> = published.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    let mut listed = CRATES.to_vec();
    listed.sort_unstable();
    if names != listed {
        return Err(format!("the published crates are {names:?}, but xtask's CRATES lists {listed:?}"));
    }
    let version = &published[0].version;
    if let Some(p) = published.iter().find(|p| p.version != *version) {
        return Err(format!("{} is at {}, the other crates at {version}", p.name, p.version));
    }
    for (i, krate) in CRATES.iter().enumerate() {
        let Some(package) = published.iter().find(|p| p.name.as_str() == *krate) else { continue };
        // Each internal dependency asks for this very version, and comes earlier in CRATES.
        for dep in package.dependencies.iter().filter(|d| CRATES.contains(&d.name.as_str())) {
            if !dep.req.matches(version) {
                return Err(format!("{krate} depends on {} {}, which excludes {version}", dep.name, dep.req));
            }
            let position = CRATES.iter().position(|c| *c == dep.name).unwrap_or(usize::MAX);
            if dep.kind != cargo_metadata::DependencyKind::Development && position > i {
                return Err(format!("{krate} depends on {}, which comes after it in CRATES", dep.name));
            }
        }
        let folder = package.manifest_path.parent().ok_or("a manifest path without a folder")?;
        for file in ["LICENSE-MIT", "LICENSE-APACHE"] {
            if !folder.join(file).exists() {
                return Err(format!("{krate} has no {file} (a link to the workspace's)"));
            }
        }
    }
    let changelog =
        std::fs::read_to_string(root().join("CHANGELOG.md")).map_err(|e| format!("CHANGELOG.md: {e}"))?;
    let heading = format!("## {version}");
    if !changelog.lines().any(|l| l == heading || l.starts_with(&format!("{heading} "))) {
        return Err(format!("CHANGELOG.md has no `{heading}` section"));
    }
    eprintln!("versions: every published crate at {version}, in dependency order; the changelog has it");
    package(false)?;
    eprintln!("\nxtask release: every crate packaged and built from its package");
    Ok(())
}

/// One verified `cargo package` for all published crates: cargo packs each crate, puts the
/// packages into a temporary local registry, and builds each one from its package against the
/// packages of the others, in dependency order: what crates.io would hold after a
/// `cargo publish` of each in turn. `release` refuses uncommitted changes, as a publish
/// does; `ci` allows them, so that it runs on a work tree too.
fn package(allow_dirty: bool) -> Result {
    let mut args = vec!["package", "--locked"];
    if allow_dirty {
        args.push("--allow-dirty");
    }
    for krate in CRATES {
        args.extend(["-p", krate]);
    }
    cargo(&args, &[])
}

//! Child processes: cargo (builds, criterion runs), mix-train and example runs, python peers; and
//! the small facts about them (the target folder, the load average, a child's last JSON line).
//!
//! mix-bench is run by `cargo xtask bench` with libtorch's environment (`LIBTORCH`,
//! `LD_LIBRARY_PATH`, `MIX_TORCH_PYTHON`) already set, so every child inherits it from here.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::peers::{self, PeerFormat, PeerSpec};
use crate::speed::{BenchSpec, Results, PAIRS};

/// The workspace root, from where this crate sits in it.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("mix-benches lives one folder below the workspace root")
        .to_path_buf()
}

/// The python that imports libtorch's torch, from `MIX_TORCH_PYTHON` (which `cargo xtask bench`
/// sets after finding or installing libtorch).
pub fn torch_python() -> Result<PathBuf> {
    match std::env::var_os("MIX_TORCH_PYTHON").filter(|v| !v.is_empty()) {
        Some(python) => Ok(PathBuf::from(python)),
        None => bail!(
            "the peer benchmarks need the python that holds libtorch's torch, and MIX_TORCH_PYTHON is \
             not set: run `cargo xtask bench` (it sets up libtorch and that python), or export \
             MIX_TORCH_PYTHON=/path/to/python with torch 2.11.0"
        ),
    }
}

/// A `cargo` command in the workspace root; libtorch's variables come from this process.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(project_root());
    cmd
}

/// Runs `cmd`, echoing it first, and fails with its exit status if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    run_shown(cmd, "")
}

/// [`run`], with `prefix` (the variables the caller set, `NAME=value `) before the command wherever
/// it is shown.
fn run_shown(cmd: &mut Command, prefix: &str) -> Result<()> {
    eprintln!("$ {prefix}{}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{prefix}{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{prefix}{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its standard output, failing with its standard error if it fails.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The command line as a person would type it.
pub fn display(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(
        cmd.get_args()
            .map(|a: &OsStr| a.to_string_lossy().into_owned()),
    );
    parts.join(" ")
}

/// How long each side measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Short warm-up and measurement: a smoke-sized but real measurement.
    Quick,
    /// criterion's defaults and the peers' full repeat counts.
    Full,
}

impl Mode {
    /// Arguments after `--` for a criterion bench binary.
    pub fn criterion_args(self) -> Vec<&'static str> {
        let mut args = vec!["--noplot"];
        if self == Mode::Quick {
            args.extend([
                "--warm-up-time",
                "0.5",
                "--measurement-time",
                "2",
                "--sample-size",
                "10",
            ]);
        }
        args
    }

    /// The command that reproduces the report.
    pub fn command(self) -> &'static str {
        match self {
            Mode::Quick => "cargo xtask bench --quick",
            Mode::Full => "cargo xtask bench",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Mode::Quick => {
                "quick (criterion: --warm-up-time 0.5 --measurement-time 2 --sample-size 10, \
                 except where a bench group sets its own, which criterion lets win; peers: \
                 --quick, the train step --steps 10)"
            }
            Mode::Full => {
                "full (criterion's default times; peers' full repeat counts, the train step \
                 --steps 50)"
            }
        }
    }
}

/// `CARGO_TARGET_DIR` when set (relative to the workspace root), else `<root>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// What every bench and peer run is given.
pub struct BenchEnv<'a> {
    pub root: &'a Path,
    pub mode: Mode,
    /// The corpus's images folder, passed as `MIX_BENCH_CORPUS`.
    pub corpus: &'a Path,
    /// Cargo features of every bench build, see [`bench_features`].
    pub features: Vec<&'static str>,
}

/// The features every bench run is built with: the union of those the present benches need, so
/// that one build serves them all (a different feature set per run would rebuild each time).
pub fn bench_features(root: &Path) -> Vec<&'static str> {
    let mut features: Vec<&'static str> = PAIRS
        .iter()
        .filter(|(bench, _)| bench_file(root, bench.name).exists())
        .flat_map(|(bench, _)| bench.features.iter().copied())
        .collect();
    features.sort_unstable();
    features.dedup();
    features
}

pub fn bench_file(root: &Path, name: &str) -> PathBuf {
    root.join("benches")
        .join("benches")
        .join(format!("{name}.rs"))
}

/// Builds every named bench that exists in one cargo call, so that compiling happens before the first
/// measurement and never between a bench and its peer. A failure is only reported here: each
/// bench's own run then records what failed.
pub fn prebuild(env: &BenchEnv<'_>, names: &[&str]) {
    let present: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| bench_file(env.root, name).exists())
        .collect();
    if present.is_empty() {
        return;
    }
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "mix-benches", "--no-run"]);
    for name in present {
        cmd.args(["--bench", name]);
    }
    if !env.features.is_empty() {
        cmd.args(["--features", &env.features.join(",")]);
    }
    if let Err(e) = run(&mut cmd) {
        eprintln!("warning: building the benches failed ({e:#}); each bench is tried on its own");
    }
}

/// Runs one criterion bench as a child cargo process; a missing file or a failure is recorded.
pub fn run_bench(
    env: &BenchEnv<'_>,
    spec: &BenchSpec,
    criterion_home: &Path,
    results: &mut Results,
) {
    let name = spec.name;
    if !bench_file(env.root, name).exists() {
        results.problems.push(format!(
            "bench `{name}` missing: no benches/benches/{name}.rs"
        ));
        return;
    }
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "mix-benches", "--bench", name]);
    if !env.features.is_empty() {
        cmd.args(["--features", &env.features.join(",")]);
    }
    cmd.arg("--")
        .args(env.mode.criterion_args())
        .env("CRITERION_HOME", criterion_home)
        .env("MIX_BENCH_CORPUS", env.corpus)
        // criterion lets a group's own times win over the command line, so a bench that sets them
        // can read this to shorten them in quick mode.
        .env(
            "MIX_BENCH_QUICK",
            if env.mode == Mode::Quick { "1" } else { "0" },
        );
    if let Err(e) = run(&mut cmd) {
        results
            .problems
            .push(format!("bench `{name}` failed: {e:#}"));
    }
}

/// Runs one peer script with the venv python and records its figures under `<stem>:<name>`.
pub fn run_peer(
    env: &BenchEnv<'_>,
    python: &Path,
    spec: &PeerSpec,
    out_dir: &Path,
    results: &mut Results,
) {
    let stem = spec.stem;
    let script = env
        .root
        .join("benches")
        .join("peers")
        .join(format!("{stem}.py"));
    if !script.exists() {
        results
            .problems
            .push(format!("peer `{stem}` missing: no benches/peers/{stem}.py"));
        return;
    }
    let json = out_dir.join(format!("{stem}.json"));
    let _ = std::fs::remove_file(&json);
    let mut cmd = Command::new(python);
    cmd.arg(&script).env("MIX_BENCH_CORPUS", env.corpus);
    cmd.args(match env.mode {
        Mode::Quick => spec.quick_args,
        Mode::Full => spec.full_args,
    });
    let outcome = match spec.format {
        PeerFormat::Results => {
            cmd.arg("--json").arg(&json);
            if env.mode == Mode::Quick {
                cmd.arg("--quick");
            }
            run(&mut cmd).and_then(|()| {
                let text = std::fs::read_to_string(&json)
                    .with_context(|| format!("peer `{stem}` wrote no {}", json.display()))?;
                peers::parse_peer(&text)
                    .with_context(|| format!("peer `{stem}` output {}", json.display()))
            })
        }
        PeerFormat::ImagesPerSecond => {
            eprintln!("$ {}", display(&cmd));
            output(&mut cmd).and_then(|stdout| {
                eprint!("{stdout}");
                mix_io::write_atomic(&json, stdout.as_bytes())?;
                peers::parse_images_per_s(&stdout).with_context(|| format!("peer `{stem}` output"))
            })
        }
    };
    match outcome {
        Ok(peer) => {
            for (name, measure) in peer.measures {
                results.measures.insert(format!("{stem}:{name}"), measure);
            }
            for (name, label) in peer.labels {
                results.labels.insert(format!("{stem}:{name}"), label);
            }
        }
        Err(e) => results
            .problems
            .push(format!("peer `{stem}` failed: {e:#}")),
    }
}

/// The 1-minute load average from /proc/loadavg, when readable: a busy machine makes every
/// figure slower, so the report says how busy it was.
pub fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The last line of a child's stdout that starts with `{`: where peers and examples print their
/// JSON figures after any other output.
pub fn last_json_line(stdout: &str) -> Result<&str> {
    stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| {
            format!(
                "expected a JSON object line on stdout, found `{}`",
                stdout.trim()
            )
        })
}

/// Removes `dir` and everything in it; a folder that is not there is already empty.
pub fn empty_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Builds mix-train and copies the binary into `dir` (so that a build running meanwhile cannot swap
/// it); the accuracy and epoch steps use it.
pub fn build_mix_train(target: &Path, dir: &Path) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "--package", "mix-train", "--bin", "mix-train"]);
    run(&mut cmd)?;
    let built = target
        .join("debug")
        .join(format!("mix-train{}", std::env::consts::EXE_SUFFIX));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let copy = dir.join(built.file_name().context("mix-train has no file name")?);
    std::fs::copy(&built, &copy).with_context(|| {
        format!(
            "cannot copy {} to {}: expected cargo to have built it there",
            built.display(),
            copy.display()
        )
    })?;
    Ok(copy)
}

/// Runs mix-train with `args` (whose `--out` is `out`) in the workspace root (libtorch's
/// environment is this process's, plus `envs`), and returns the one run folder it made in `out`;
/// the accuracy, epoch and scaling steps use it.
pub fn run_mix_train(
    root: &Path,
    binary: &Path,
    args: &[OsString],
    envs: &[(&str, &str)],
    out: &Path,
) -> Result<PathBuf> {
    let mut cmd = Command::new(binary);
    cmd.current_dir(root).args(args).envs(envs.iter().copied());
    // Only the variables set here are shown: the rest of the environment is this process's.
    let prefix: String = envs.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    run_shown(&mut cmd, &prefix)?;
    let runs: Vec<PathBuf> = std::fs::read_dir(out)
        .with_context(|| format!("mix-train made no folder {}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    match runs.as_slice() {
        [run] => Ok(run.clone()),
        _ => bail!(
            "expected one run folder in {}, found {}",
            out.display(),
            runs.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_mode_shortens_criterion_and_full_mode_keeps_its_defaults() {
        let quick = Mode::Quick.criterion_args();
        assert!(quick.windows(2).any(|w| w == ["--measurement-time", "2"]));
        assert!(quick.windows(2).any(|w| w == ["--sample-size", "10"]));
        assert_eq!(Mode::Full.criterion_args(), vec!["--noplot"]);
    }

    #[test]
    fn a_failed_run_names_the_variables_it_was_given() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]).env("OMP_NUM_THREADS", "1");
        let err = run_shown(&mut cmd, "OMP_NUM_THREADS=1 ")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("`OMP_NUM_THREADS=1 sh -c exit 3` failed"),
            "{err}"
        );
        assert!(run_shown(Command::new("sh").args(["-c", "exit 0"]), "").is_ok());
    }
}

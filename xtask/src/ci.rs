//! `cargo xtask ci`: the checks that decide whether a change is green, in the order that fails fastest.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use crate::libtorch::Libtorch;
use crate::process::{self, cargo};

const GIB: u64 = 1 << 30;
/// The free space a cold run of these checks needs under `target/`: it wrote 2.9 GB when measured
/// (docs/architecture.md, xtask), plus a margin. A warm run writes less.
const COLD_BUILD_BYTES: u64 = 4 * GIB;
/// Free space below which a failed step is most likely the full disk's doing.
const NEARLY_FULL_BYTES: u64 = GIB;

/// What to do about a full disk, in both messages about one.
const FREE_SPACE: &str = "free space (`cargo clean`, old clones' target/ folders) and run again";

/// Crates that must exist once in the dependency tree (tch 0.24 fixes their versions).
const SINGLE_VERSION: &[&str] = &["ndarray", "rand", "rand_core", "rand_distr"];

/// fmt, one-version check, clippy, tests (doc tests included) and docs, all with warnings denied.
pub fn ci(torch: &Libtorch) -> Result<()> {
    let target = target_dir();
    if let Some(warning) = free_space(&target).and_then(|free| short_of_space(free, &target)) {
        eprintln!("{warning}");
    }
    process::run(cargo(None).args(["fmt", "--all", "--check"]))?;
    check_single_versions()?;
    build_step(
        &target,
        cargo(Some(torch)).args([
            "clippy",
            "--workspace",
            "--all-targets",
            // The libtorch benchmarks sit behind mix-benches' `tch` feature; CI lints them too.
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    build_step(&target, cargo(Some(torch)).args(["test", "--workspace"]))?;
    build_step(
        &target,
        cargo(Some(torch))
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    eprintln!("ci: all checks passed");
    Ok(())
}

/// Runs a step that writes under `target`; when it fails on a nearly full disk, says so, since
/// the tools' own messages do not (a linker that cannot write dies with SIGBUS, "signal 7").
fn build_step(target: &Path, cmd: &mut Command) -> Result<()> {
    process::run(cmd).map_err(
        |err| match free_space(target).and_then(|f| full_disk(f, target)) {
            Some(why) => err.context(why),
            None => err,
        },
    )
}

/// cargo's build folder as cargo itself resolves it (`CARGO_TARGET_DIR`, `build.target-dir` in a
/// config file, else the workspace's `target/`), from `cargo metadata`; the workspace's `target/` if
/// that cannot be read.
fn target_dir() -> PathBuf {
    let metadata =
        process::output(cargo(None).args(["metadata", "--no-deps", "--format-version", "1"]));
    metadata
        .ok()
        .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
        .and_then(|v| v.get("target_directory")?.as_str().map(PathBuf::from))
        .unwrap_or_else(|| crate::project_root().join("target"))
}

/// Free bytes on the disk that holds `path` (or its nearest existing parent); `None` if unreadable.
fn free_space(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    fs4::available_space(existing).ok()
}

/// The warning printed before the checks when `free` bytes may not hold a cold build.
fn short_of_space(free: u64, target: &Path) -> Option<String> {
    (free < COLD_BUILD_BYTES).then(|| {
        format!(
            "ci: warning: {} free on the disk holding {}; a cold run of these checks needs about \
             {} there (a warm one less). If a step fails with the linker killed by SIGBUS \
             (signal 7), the disk filled: {FREE_SPACE}.",
            gib(free),
            target.display(),
            gib(COLD_BUILD_BYTES)
        )
    })
}

/// The context added to a failed step when `free` bytes says the disk is full.
fn full_disk(free: u64, target: &Path) -> Option<String> {
    (free < NEARLY_FULL_BYTES).then(|| {
        format!(
            "the disk holding {} has only {} free: it most likely filled during this step \
             (a linker killed by SIGBUS, signal 7, is the usual sign); {FREE_SPACE}",
            target.display(),
            gib(free)
        )
    })
}

/// Bytes as GiB with one decimal, as people read disk space.
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB as f64)
}

/// `cargo tree -d` must list none of [`SINGLE_VERSION`].
fn check_single_versions() -> Result<()> {
    let tree = process::output(cargo(None).args([
        "tree",
        "--workspace",
        "--duplicates",
        "--edges",
        "normal,build,dev",
        "--format",
        "{p}",
        "--prefix",
        "none",
    ]))?;
    let dups = duplicated(&tree);
    if !dups.is_empty() {
        bail!(
            "more than one version of {} in the dependency tree: align them with tch 0.24 \
             (ndarray 0.16, rand 0.8, rand_core 0.6, rand_distr 0.4); see `cargo tree -d`",
            dups.join(", ")
        );
    }
    Ok(())
}

/// The names in [`SINGLE_VERSION`] that appear with two different versions in `cargo tree -d` output.
fn duplicated(tree: &str) -> Vec<String> {
    let mut found = Vec::new();
    for name in SINGLE_VERSION {
        let mut versions: Vec<&str> = tree
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next()? == *name).then(|| words.next()).flatten()
            })
            .collect();
        versions.sort_unstable();
        versions.dedup();
        if versions.len() > 1 {
            found.push(format!("{name} ({})", versions.join(", ")));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{duplicated, full_disk, short_of_space, COLD_BUILD_BYTES, GIB, NEARLY_FULL_BYTES};

    #[test]
    fn a_disk_short_of_a_cold_build_is_warned_of_and_a_full_one_named_on_failure() {
        let target = Path::new("/somewhere/target");
        assert_eq!(short_of_space(COLD_BUILD_BYTES, target), None);
        let warning = short_of_space(COLD_BUILD_BYTES - GIB, target).expect("a warning");
        assert!(
            warning.contains("3.0 GiB free on the disk holding /somewhere/target"),
            "{warning}"
        );
        assert!(warning.contains("SIGBUS"), "{warning}");
        assert_eq!(full_disk(NEARLY_FULL_BYTES, target), None);
        let why = full_disk(300 << 20, target).expect("a reason");
        assert!(why.contains("has only 0.3 GiB free"), "{why}");
    }

    #[test]
    fn same_version_twice_is_not_a_duplicate_but_two_versions_are() {
        let tree = "rand_core v0.6.4\nrand_core v0.6.4 (*)\nsyn v2.0.1\nsyn v1.0.9\n";
        assert!(duplicated(tree).is_empty());
        let tree = "rand v0.8.5\nrand v0.9.2\n";
        assert_eq!(duplicated(tree), vec!["rand (v0.8.5, v0.9.2)".to_string()]);
    }
}

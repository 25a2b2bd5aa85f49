//! `cargo xtask ci`: the checks that decide whether a change is green, in the order that fails fastest.

use anyhow::{bail, Result};

use crate::libtorch::Libtorch;
use crate::process::{self, cargo};

/// Crates that must exist once in the dependency tree (tch 0.24 fixes their versions).
const SINGLE_VERSION: &[&str] = &["ndarray", "rand", "rand_core", "rand_distr"];

/// fmt, one-version check, clippy, tests (doc tests included) and docs, all with warnings denied.
pub fn ci(torch: &Libtorch) -> Result<()> {
    process::run(cargo(None).args(["fmt", "--all", "--check"]))?;
    check_single_versions()?;
    process::run(cargo(Some(torch)).args([
        "clippy",
        "--workspace",
        "--all-targets",
        // The libtorch benchmarks sit behind mix-benches' `tch` feature; CI lints them too.
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    process::run(cargo(Some(torch)).args(["test", "--workspace"]))?;
    process::run(
        cargo(Some(torch))
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    eprintln!("ci: all checks passed");
    Ok(())
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
    use super::duplicated;

    #[test]
    fn same_version_twice_is_not_a_duplicate_but_two_versions_are() {
        let tree = "rand_core v0.6.4\nrand_core v0.6.4 (*)\nsyn v2.0.1\nsyn v1.0.9\n";
        assert!(duplicated(tree).is_empty());
        let tree = "rand v0.8.5\nrand v0.9.2\n";
        assert_eq!(duplicated(tree), vec!["rand (v0.8.5, v0.9.2)".to_string()]);
    }
}

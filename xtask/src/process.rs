//! Running child processes: cargo with libtorch's environment, python, and tools we check for.

use std::ffi::{OsStr, OsString};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::libtorch::Libtorch;

/// A `cargo` command in the workspace root, with libtorch's variables set when given.
pub fn cargo(torch: Option<&Libtorch>) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate::project_root());
    if let Some(torch) = torch {
        for (key, value) in torch.env_vars() {
            cmd.env(key, value);
        }
    }
    cmd
}

/// Runs `cmd`, echoing it first, and fails with its exit status if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// `cargo run --manifest-path <workspace> RUN_ARGS -- ARGS` from the user's folder, so that relative
/// paths on their command line (`--out`, `--dataset DIR`, images) stay theirs, exiting with the
/// child's status when it fails: the child (or cargo) has already said what went wrong.
pub fn run_from_user_folder(
    torch: Option<&Libtorch>,
    run_args: &[&str],
    args: impl IntoIterator<Item = OsString>,
) -> Result<()> {
    let mut cmd = cargo(torch);
    cmd.current_dir(std::env::current_dir().context("cannot read the current folder")?)
        .args(["run", "--manifest-path"])
        .arg(crate::project_root().join("Cargo.toml"))
        .args(run_args)
        .arg("--")
        .args(args);
    eprintln!("$ {}", display(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", display(&cmd)))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
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

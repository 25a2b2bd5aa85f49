//! `cargo xtask train`: checks the options and the dataset here (fast, no libtorch), then runs the
//! mix-train binary as a child `cargo run` with libtorch's environment.

use anyhow::{Context, Result};

use crate::dataset::{self, DatasetArg};
use crate::train_opts::{self, TrainCommand};
use crate::{libtorch, process};

/// Runs `cargo xtask train` with `rest` as its arguments.
pub fn train(rest: &[String]) -> Result<()> {
    let Some(command) = train_opts::parse("train", rest)? else {
        return Ok(());
    };
    match &command {
        TrainCommand::New(args) => {
            // Download (with its progress bar) and check the images now, so that a wrong folder
            // or pattern fails before the build; mix-train then finds the dataset cached.
            let data = DatasetArg::parse(&args.dataset);
            dataset::labelled_files(&data, &crate::project_root(), &args.pattern)?;
        }
        TrainCommand::Resume { run, .. } => {
            let config = run.join("config.json");
            if !config.is_file() {
                anyhow::bail!(
                    "--resume {}: no config.json there; expected a run folder made by \
                     `cargo xtask train` (for example runs/<timestamp>)",
                    run.display()
                );
            }
        }
    }
    let torch = libtorch::setup()?;
    let mut cmd = process::cargo(Some(&torch));
    // Relative paths on the command line (--dataset DIR, --out, --resume) are the user's: run from
    // their folder and find the workspace through its manifest.
    let manifest = crate::project_root().join("Cargo.toml");
    cmd.current_dir(std::env::current_dir().context("cannot read the current folder")?)
        .arg("run")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--package", "mix-train", "--"])
        .args(rest);
    eprintln!("$ {}", process::display(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", process::display(&cmd)))?;
    if !status.success() {
        // mix-train (or cargo) has already said what went wrong; only the exit code is left.
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

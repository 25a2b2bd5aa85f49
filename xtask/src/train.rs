//! `cargo xtask train`, `lr-find` and `predict`: check the options, the dataset and the pretrained
//! weights here (fast, no libtorch; downloads show their progress here), then run the mix-train
//! binary as a child `cargo run` with libtorch's environment.

use std::ffi::OsString;

use anyhow::{Context, Result};

use crate::dataset::{self, DatasetArg};
use crate::train_opts::{self, TrainCommand};
use crate::{libtorch, process, weights};

/// Runs `cargo xtask train` with `rest` as its arguments.
pub fn train(rest: &[String]) -> Result<()> {
    let Some(command) = train_opts::parse("train", rest)? else {
        return Ok(());
    };
    match &command {
        TrainCommand::New(args) => {
            // Download (with its progress bar) and check the images and the weights now, so that a
            // wrong folder, pattern or offline weights fail before the build; mix-train then finds
            // both cached.
            let data = DatasetArg::parse(&args.dataset);
            dataset::labelled_files(&data, &crate::project_root(), &args.pattern)?;
            weights::resolve(&args.pretrained, args.pretrained_sha256.as_deref())?;
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
    run_mix_train(None, rest)
}

/// Runs `cargo xtask lr-find` with `rest` as its arguments.
pub fn lr_find(rest: &[String]) -> Result<()> {
    let Some(args) = train_opts::parse_lr_find("lr-find", rest)? else {
        return Ok(());
    };
    let data = DatasetArg::parse(&args.dataset);
    dataset::labelled_files(&data, &crate::project_root(), &args.pattern)?;
    weights::resolve(&args.pretrained, args.pretrained_sha256.as_deref())?;
    run_mix_train(Some("lr-find"), rest)
}

/// Runs `cargo xtask predict` with `rest` as its arguments.
pub fn predict(rest: &[String]) -> Result<()> {
    let Some(args) = train_opts::parse_predict("predict", rest)? else {
        return Ok(());
    };
    let config = args.run.join("config.json");
    if !config.is_file() {
        anyhow::bail!(
            "--run {}: no config.json there; expected a run folder made by `cargo xtask train` \
             (for example runs/<timestamp>)",
            args.run.display()
        );
    }
    run_mix_train(Some("predict"), rest)
}

/// `cargo run --package mix-train -- [subcommand] rest...` from the user's folder, exiting with its
/// status when it fails.
fn run_mix_train(subcommand: Option<&str>, rest: &[String]) -> Result<()> {
    let torch = libtorch::setup()?;
    let mut cmd = process::cargo(Some(&torch));
    // Relative paths on the command line (--dataset DIR, --out, --resume, images) are the user's: run
    // from their folder and find the workspace through its manifest.
    let manifest = crate::project_root().join("Cargo.toml");
    cmd.current_dir(std::env::current_dir().context("cannot read the current folder")?)
        .arg("run")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--package", "mix-train", "--"])
        .args(subcommand.map(OsString::from))
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

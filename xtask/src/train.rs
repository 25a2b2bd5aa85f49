//! `cargo xtask train`, `lr-find` and `predict`: check the options, the dataset and the pretrained
//! weights here (fast, no libtorch; downloads show their progress here), then run the mix-train
//! binary as a child `cargo run` with libtorch's environment and the same arguments.

use std::ffi::OsString;

use anyhow::Result;
use mix_cli::dataset::{self, DatasetArg};
use mix_cli::{weights, LrFindOpts, PredictOpts, TrainCommand, TrainOpts};

use crate::{libtorch, process};

/// Runs `cargo xtask train`; `args` are its arguments as given (mix-train gets them unchanged).
pub fn train(opts: TrainOpts, args: &[OsString]) -> Result<()> {
    match opts.finish(args)? {
        TrainCommand::New(args) => {
            // Download (with its progress bar) and check the images and the weights now, so that a
            // wrong folder, pattern or offline weights fail before the build; mix-train then finds
            // both cached.
            let data = DatasetArg::parse(&args.dataset);
            dataset::labelled_files(&data, &args.pattern)?;
            weights::resolve(&args.pretrained, args.pretrained_sha256.as_deref())?;
        }
        TrainCommand::Resume { run, .. } => mix_cli::train::check_run_folder("--resume", &run)?,
    }
    run_mix_train(None, args)
}

/// Runs `cargo xtask lr-find`.
pub fn lr_find(opts: &LrFindOpts, args: &[OsString]) -> Result<()> {
    let checked = opts.resolve()?;
    let data = DatasetArg::parse(&checked.data.dataset);
    dataset::labelled_files(&data, &checked.data.pattern)?;
    weights::resolve(
        &checked.data.pretrained,
        checked.data.pretrained_sha256.as_deref(),
    )?;
    run_mix_train(Some("lr-find"), args)
}

/// Runs `cargo xtask predict`.
pub fn predict(opts: &PredictOpts, args: &[OsString]) -> Result<()> {
    let checked = opts.resolve()?;
    mix_cli::train::check_run_folder("--run", &checked.run)?;
    run_mix_train(Some("predict"), args)
}

/// `cargo run --package mix-train -- [subcommand] args...` from the user's folder, with libtorch's
/// environment.
fn run_mix_train(subcommand: Option<&str>, args: &[OsString]) -> Result<()> {
    let torch = libtorch::setup()?;
    let all = subcommand
        .map(OsString::from)
        .into_iter()
        .chain(args.iter().cloned());
    process::run_from_user_folder(Some(&torch), &["--package", "mix-train"], all)
}

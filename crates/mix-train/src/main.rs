//! `mix-train`: the seed notebook's `vision_learner(dls, resnet18, metrics=error_rate)` and
//! `fit_one_cycle(epochs, lr, cbs=MixUp(alpha))` (or `fine_tune`) as a command that writes a run
//! folder; `mix-train lr-find ...` is fastai's `lr_find` and `mix-train predict ...` its `predict`.
//!
//! `cargo xtask train`, `lr-find` and `predict` run this binary with libtorch's environment; it can
//! also be run directly (`cargo run -p mix-train -- --help`) or installed
//! (`cargo install --path crates/mix-train`). Its options are mix-cli's, the same types and checks
//! xtask uses, so xtask refuses exactly what this binary refuses without linking libtorch.

mod dist;
mod lr_find;
mod predict;
mod run;

use std::ffi::OsString;

use clap::{CommandFactory, Parser, Subcommand};
use mix_cli::{LrFindOpts, PredictOpts, TrainOpts};

/// `mix-train [OPTIONS]` trains; `lr-find`, `predict` and `completions` are subcommands.
#[derive(Debug, Parser)]
#[command(
    name = "mix-train",
    version,
    about = "Train ResNet18 with MixUp/CutMix and fit_one_cycle (fastai's walkthrough), or run lr-find or predict",
    long_about = mix_cli::train::ABOUT,
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainOpts,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// fastai's lr_find on the same data and model: a loss-vs-lr PNG and the suggested rate.
    #[command(args_override_self = true, long_about = mix_cli::train::LR_FIND_ABOUT)]
    LrFind(LrFindOpts),
    /// fastai's learn.predict with a finished run: top classes of each image.
    #[command(args_override_self = true, long_about = mix_cli::train::PREDICT_ABOUT)]
    Predict(PredictOpts),
    /// Print shell completions for mix-train: `mix-train completions bash > ...`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() {
    passive_openmp();
    let cli = Cli::parse();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let result = match cli.command {
        Some(Command::LrFind(opts)) => lr_find::main(&opts),
        Some(Command::Predict(opts)) => predict::main(&opts),
        Some(Command::Completions { shell }) => {
            mix_cli::print_completions(shell, &mut Cli::command(), "mix-train");
            Ok(())
        }
        None => run::main(cli.train, &args),
    };
    if let Err(err) = result {
        // clap's own refusals (from --config files) print as clap prints them, with its exit status.
        if let Some(mix_cli::Error::Clap(e)) = err.downcast_ref::<mix_cli::Error>() {
            e.exit();
        }
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// Restarts this process with `OMP_WAIT_POLICY=PASSIVE` unless the variable is set.
///
/// libtorch's OpenMP threads otherwise spin while they wait for work, and on a machine with few
/// cores they spin against the threads decoding the next batch: on 2 busy cores one 32-pixel sample
/// epoch took 36 s instead of 4 s. libgomp reads the variable once, when it is loaded (before `main`), so
/// setting it now would change nothing: the process starts again with it, which costs a few
/// milliseconds.
fn passive_openmp() {
    #[cfg(unix)]
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        use std::os::unix::process::CommandExt;
        if let Ok(exe) = std::env::current_exe() {
            let err = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("OMP_WAIT_POLICY", "PASSIVE")
                .exec();
            // exec returns only when it failed; train as we are, only slower on a busy machine.
            eprintln!("note: could not restart with OMP_WAIT_POLICY=PASSIVE ({err}); continuing");
        }
    }
}

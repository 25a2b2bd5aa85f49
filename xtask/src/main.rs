//! Project orchestration: `cargo xtask <task>` provisions libtorch, runs the checks and runs the
//! user-facing commands. It never links libtorch: tasks that need it run child cargo processes.

mod bench;
mod ci;
mod download;
mod gpu;
mod libtorch;
mod preview;
mod process;
mod train;

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use mix_cli::{LrFindOpts, PredictOpts, TrainOpts};

/// `cargo xtask`: the project's tasks.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "The project's tasks: provision libtorch, run the checks, and run the fastai walkthrough \
             (download, preview, train, lr-find, predict) and the benchmarks",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Find or install libtorch 2.11.0 (torch==2.11.0 from PyPI into a cached venv).
    Setup,
    /// Print `export LIBTORCH=... LD_LIBRARY_PATH=...` lines: eval "$(cargo xtask env)".
    Env,
    /// fmt check, clippy -D warnings, all tests (doc tests too), cargo doc with warnings denied.
    Ci,
    /// setup, then ci (the README's test command).
    Test,
    /// Fetch and extract a dataset into the cache (Oxford-IIIT Pet by default); prints its folder.
    Download(download::DownloadOpts),
    /// Write one MixUp or CutMix training batch as a captioned 3x3 PNG grid (no libtorch).
    Preview(preview::PreviewOpts),
    /// Train ResNet18 with MixUp/CutMix and fit_one_cycle or fine_tune (runs the mix-train binary).
    #[command(args_override_self = true, long_about = mix_cli::train::ABOUT)]
    Train(TrainOpts),
    /// fastai's lr_find on the same data and model: a loss-vs-lr PNG and the suggested rate.
    #[command(args_override_self = true, long_about = mix_cli::train::LR_FIND_ABOUT)]
    LrFind(LrFindOpts),
    /// fastai's learn.predict with a finished run: top classes of each image.
    #[command(args_override_self = true, long_about = mix_cli::train::PREDICT_ABOUT)]
    Predict(PredictOpts),
    /// Criterion benches and peer scripts side by side; writes docs/performance.md.
    #[command(disable_help_flag = true)]
    Bench {
        /// The bench's own options (`cargo xtask bench --help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Build, strip and pack the CUDA checks into .carry/gpu/ for a GPU machine without Rust.
    #[command(long_about = gpu::ABOUT)]
    GpuPack,
    /// Make the bench's pets-like corpus in a folder (run.sh of gpu-pack runs it on the device).
    #[command(disable_help_flag = true)]
    Corpus {
        /// corpus's own options and OUT (`--help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Print shell completions for `cargo xtask`: `cargo xtask completions bash > ...`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli.task) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// The arguments after the task's name, as given (for forwarding and `--config`).
fn task_args() -> Vec<OsString> {
    std::env::args_os().skip(2).collect()
}

fn run(task: Task) -> Result<()> {
    match task {
        Task::Setup => {
            let torch = libtorch::setup()?;
            println!(
                "libtorch {} ready at {}",
                libtorch::TORCH_VERSION,
                torch.root.display()
            );
            Ok(())
        }
        Task::Env => {
            print!("{}", libtorch::find_installed()?.export_lines());
            Ok(())
        }
        Task::Ci => ci::ci(&libtorch::find_installed()?),
        Task::Test => {
            let torch = libtorch::setup()?;
            ci::ci(&torch)
        }
        Task::Download(opts) => download::download(&opts),
        Task::Preview(opts) => preview::preview(&opts),
        Task::Train(opts) => train::train(opts, &task_args()),
        Task::LrFind(opts) => train::lr_find(&opts, &task_args()),
        Task::Predict(opts) => train::predict(&opts, &task_args()),
        Task::Bench { args } => bench::bench(&args),
        Task::GpuPack => gpu::gpu_pack(),
        Task::Corpus { args } => bench::corpus(&args),
        Task::Completions { shell } => {
            mix_cli::print_completions(shell, &mut Cli::command(), "cargo-xtask");
            Ok(())
        }
    }
}

/// The workspace root, from where this crate sits in it.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one folder below the workspace root")
        .to_path_buf()
}

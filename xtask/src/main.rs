//! Project orchestration: `cargo xtask <task>` provisions libtorch, runs the checks and runs the
//! user-facing commands. It never links libtorch: tasks that need it run child cargo processes.

mod args;
mod bench;
mod ci;
mod dataset;
mod download;
mod gpu;
mod libtorch;
mod preview;
mod process;
mod train;
// Shared with the mix-train binary (`#[path]`), which uses all of it; xtask uses the parser.
#[allow(dead_code)]
mod train_opts;
// Shared with the mix-train binary (`#[path]`).
#[allow(dead_code)]
mod weights;

use std::path::PathBuf;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  setup      find or install libtorch 2.11.0 (torch==2.11.0 from PyPI into a cached venv)
  env        print `export LIBTORCH=... LD_LIBRARY_PATH=...` lines: eval \"$(cargo xtask env)\"
  ci         fmt check, clippy -D warnings, all tests (doc tests too), cargo doc with warnings denied
  test       setup, then ci (the README's test command)
  download   fetch and extract a dataset into the cache (Oxford-IIIT Pet by default); prints its folder
  preview    write one MixUp or CutMix training batch as a captioned 3x3 PNG grid (no libtorch)
  train      train ResNet18 with MixUp/CutMix and fit_one_cycle or fine_tune (runs the mix-train binary)
  lr-find    fastai's lr_find on the same data and model: a loss-vs-lr PNG and the suggested rate
  predict    fastai's learn.predict with a finished run: top classes of each image
  bench      criterion benches and peer scripts side by side; writes docs/performance.md
  gpu-pack   build, strip and pack the CUDA checks into .carry/gpu/ for a GPU machine without Rust
  corpus     make the bench's pets-like corpus in a folder (run.sh of gpu-pack runs it on the device)

run `cargo xtask <task> --help` for a task's options";

fn main() {
    if let Err(err) = run() {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut argv = std::env::args().skip(1);
    let Some(task) = argv.next() else {
        println!("{USAGE}");
        bail!("no task given");
    };
    let rest: Vec<String> = argv.collect();
    match task.as_str() {
        "setup" => {
            args::no_options("setup", &rest)?;
            let torch = libtorch::setup()?;
            println!(
                "libtorch {} ready at {}",
                libtorch::TORCH_VERSION,
                torch.root.display()
            );
            Ok(())
        }
        "env" => {
            args::no_options("env", &rest)?;
            print!("{}", libtorch::find_installed()?.export_lines());
            Ok(())
        }
        "ci" => {
            args::no_options("ci", &rest)?;
            ci::ci(&libtorch::find_installed()?)
        }
        "test" => {
            args::no_options("test", &rest)?;
            let torch = libtorch::setup()?;
            ci::ci(&torch)
        }
        "download" => download::download(&rest),
        "preview" => preview::preview(&rest),
        "train" => train::train(&rest),
        "lr-find" => train::lr_find(&rest),
        "predict" => train::predict(&rest),
        "bench" => bench::bench(&rest.iter().map(Into::into).collect::<Vec<_>>()),
        "gpu-pack" => gpu::gpu_pack(&rest),
        "corpus" => bench::corpus(&rest.iter().map(Into::into).collect::<Vec<_>>()),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            bail!("unknown task `{other}`\n\n{USAGE}")
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

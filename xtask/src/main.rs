//! Project orchestration: `cargo xtask <task>` provisions libtorch, runs the checks and runs the
//! user-facing commands. It never links libtorch: tasks that need it run child cargo processes.

mod args;
mod ci;
mod libtorch;
mod process;

use std::path::PathBuf;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  setup      find or install libtorch 2.11.0 (torch==2.11.0 from PyPI into a cached venv)
  env        print `export LIBTORCH=... LD_LIBRARY_PATH=...` lines: eval \"$(cargo xtask env)\"
  ci         fmt check, clippy -D warnings, all tests (doc tests too), cargo doc with warnings denied
  test       setup, then ci (the README's test command)

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

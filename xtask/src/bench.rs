//! `cargo xtask bench` and `cargo xtask corpus`: run the mix-bench binary (package mix-benches) as a
//! child `cargo run`, with libtorch's environment for the bench, forwarding its exit status.

use std::ffi::OsString;

use anyhow::Result;

use crate::{libtorch, process};

/// Runs `cargo xtask bench` with `args`: `mix-bench ARGS`.
pub fn bench(args: &[OsString]) -> Result<()> {
    // Help and version need no libtorch; everything else measures with it (and its python).
    let asks_help = args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| ["-h", "--help", "-V", "--version"].iter().any(|h| a == *h));
    let torch = if asks_help {
        None
    } else {
        Some(libtorch::setup()?)
    };
    run_mix_bench(torch.as_ref(), args)
}

/// Runs `cargo xtask corpus` with `args`: `mix-bench corpus ARGS`.
pub fn corpus(args: &[OsString]) -> Result<()> {
    let mut all = vec![OsString::from("corpus")];
    all.extend(args.iter().cloned());
    run_mix_bench(None, &all)
}

/// `cargo run -q -p mix-benches --bin mix-bench -- ARGS` from the user's folder.
fn run_mix_bench(torch: Option<&libtorch::Libtorch>, args: &[OsString]) -> Result<()> {
    process::run_from_user_folder(
        torch,
        &["-q", "-p", "mix-benches", "--bin", "mix-bench"],
        args.iter().cloned(),
    )
}

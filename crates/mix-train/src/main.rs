//! `mix-train`: the seed notebook's `vision_learner(dls, resnet18, metrics=error_rate)` and
//! `fit_one_cycle(epochs, lr, cbs=MixUp(alpha))` as a command that writes a run folder.
//!
//! `cargo xtask train` runs this binary with libtorch's environment; it can also be run directly
//! (`cargo run -p mix-train -- --help`). The option table, the parser and the dataset resolution are
//! xtask's files, compiled here with `#[path]`, so that xtask checks exactly what this binary
//! accepts without linking libtorch.

// xtask's option parser; this binary does not use every helper in it.
#[allow(dead_code)]
#[path = "../../../xtask/src/args.rs"]
mod args;
#[path = "../../../xtask/src/dataset.rs"]
mod dataset;
mod run;
#[path = "../../../xtask/src/train_opts.rs"]
mod train_opts;

fn main() {
    let rest: Vec<String> = std::env::args().skip(1).collect();
    if let Err(err) = run::main(&rest) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

//! `mix-train`: the seed notebook's `vision_learner(dls, resnet18, metrics=error_rate)` and
//! `fit_one_cycle(epochs, lr, cbs=MixUp(alpha))` (or `fine_tune`) as a command that writes a run
//! folder; `mix-train lr-find ...` is fastai's `lr_find` and `mix-train predict ...` its `predict`.
//!
//! `cargo xtask train`, `lr-find` and `predict` run this binary with libtorch's environment; it can
//! also be run directly (`cargo run -p mix-train -- --help`). The option tables, the parser and the
//! dataset and weights resolution are xtask's files, compiled here with `#[path]`, so that xtask
//! checks exactly what this binary accepts without linking libtorch.

// xtask's option parser; this binary does not use every helper in it.
#[allow(dead_code)]
#[path = "../../../xtask/src/args.rs"]
mod args;
#[path = "../../../xtask/src/dataset.rs"]
mod dataset;
mod lr_find;
mod predict;
mod run;
#[path = "../../../xtask/src/train_opts.rs"]
mod train_opts;
#[path = "../../../xtask/src/weights.rs"]
mod weights;

fn main() {
    passive_openmp();
    let rest: Vec<String> = std::env::args().skip(1).collect();
    let result = match rest.first().map(String::as_str) {
        Some("lr-find") => lr_find::main(&rest[1..]),
        Some("predict") => predict::main(&rest[1..]),
        _ => run::main(&rest),
    };
    if let Err(err) = result {
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

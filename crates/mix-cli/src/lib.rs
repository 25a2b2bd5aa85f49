//! The command lines of `cargo xtask` and `mix-train`: typed options (clap's derive API), their
//! checks, `--config` files, the datasets and pretrained weights they name, and the launcher of
//! data-parallel training processes ([`launch()`]); no libtorch.
//!
//! Both binaries parse `train`, `lr-find` and `predict` with the same types ([`TrainOpts`],
//! [`LrFindOpts`], [`PredictOpts`]) and the same checks ([`TrainOpts::resolve`], ...), so xtask
//! refuses exactly what mix-train refuses, before it builds anything that links libtorch.

pub mod config;
pub mod dataset;
mod error;
pub mod launch;
pub mod sample;
pub mod train;
pub mod weights;

pub use error::{Error, Result};
pub use launch::{launch, DistEnv, LaunchOptions, LaunchOutcome};
pub use train::{
    BestMetric, CacheImages, FineTuneArgs, LrFindArgs, LrFindOpts, LrSlice, MemoryFormat,
    MixChoice, Precision, PredictArgs, PredictOpts, SpeedArgs, TimmMode, TrainArgs, TrainCommand,
    TrainOpts,
};

/// Prints shell completions for `cmd` (named `bin`) to standard output.
pub fn print_completions(shell: clap_complete::Shell, cmd: &mut clap::Command, bin: &str) {
    clap_complete::generate(shell, cmd, bin, &mut std::io::stdout());
}

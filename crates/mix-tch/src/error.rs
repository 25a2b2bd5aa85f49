//! The one error type of mix-tch.

use std::path::PathBuf;

/// Everything that can go wrong while mixing, augmenting, training or checkpointing on tch.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// libtorch reported an error (bad shape, bad device, out of memory, ...).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A file or folder could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we were doing, for example "writing".
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A durable write (run folder file, best model) failed in mix-io.
    #[error("{0}")]
    File(#[from] mix_io::Error),
    /// A JSON file (checkpoint progress) could not be read or written.
    #[error("json in {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// CUDA was asked for (device or mixed precision) but libtorch sees no CUDA device.
    #[error("CUDA asked for ({what}) but absent: libtorch sees no CUDA device; use the CPU device or run on a machine with CUDA and the CUDA build of libtorch 2.11.0")]
    CudaUnavailable {
        /// What needed CUDA.
        what: &'static str,
    },
    /// An argument does not fit: a shape, a length, a configuration value.
    #[error("{0}")]
    Invalid(String),
    /// A collective operation across the ranks of a data-parallel job failed (a rank died, stopped
    /// answering, or the network broke); the message says which rank when it is known.
    #[error("{0}")]
    Collective(String),
    /// Pretrained weights do not match the torchvision ResNet18 layout.
    #[error("pretrained weights {path}: {problem}")]
    Pretrained {
        /// The `.safetensors` file.
        path: PathBuf,
        /// What is missing or mismatched, and what to do.
        problem: String,
    },
    /// A saved model (a run's `model.safetensors`) does not fit the model being built.
    #[error("model weights {path}: {problem}")]
    Weights {
        /// The `.safetensors` file.
        path: PathBuf,
        /// What is missing or mismatched.
        problem: String,
    },
    /// A checkpoint folder is missing, incomplete or from a different run.
    #[error("checkpoint {path}: {problem}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The training loss became NaN or infinite; the run stopped.
    #[error("training loss became {value} at epoch {epoch}, step {step}; the run stopped{}", match last_checkpoint { Some(p) => format!(" and the last good checkpoint is {}", p.display()), None => " before any checkpoint was written".to_owned() })]
    NonFiniteLoss {
        /// The bad value (NaN or inf).
        value: f64,
        /// Epoch (0-based) of the bad step.
        epoch: usize,
        /// Global training step (0-based) of the bad step.
        step: usize,
        /// The last checkpoint written before it, kept untouched.
        last_checkpoint: Option<PathBuf>,
    },
    /// A callback cancelled part of the fit (fastai's Cancel*Exception); the learner catches it.
    #[error("{0:?} cancelled by a callback outside the part it can cancel")]
    Cancel(crate::callback::Cancel),
    /// A batch does not fit the learner (shape, channels, labels).
    #[error("batch: {0}")]
    Data(String),
    /// Loading a batch failed in mix-data.
    #[error("data loader: {0}")]
    Loader(#[from] mix_data::Error),
    /// Drawing or checking a mix failed in mix-core.
    #[error("mix: {0}")]
    Mix(#[from] mix_core::Error),
    /// Drawing the loss curves failed in mix-viz.
    #[error("plot: {0}")]
    Plot(#[from] mix_viz::Error),
}

/// Result with mix-tch's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

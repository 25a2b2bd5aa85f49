//! Checkpoints: model and optimizer state (safetensors) plus the schedule position and history (JSON),
//! written into a temporary folder and renamed into place, so a checkpoint folder is always complete.

use crate::optim::{AdamConfig, LossScaler};
use crate::recorder::{EpochRow, SmoothLoss, StepRow};
use crate::schedule::OneCycle;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Checkpoint layout version written in `progress.json`.
pub const FORMAT: u32 = 1;
/// Model weights and BatchNorm buffers, by variable name.
pub const MODEL_FILE: &str = "model.safetensors";
/// Adam's moment estimates, `<param>.grad_avg` and `<param>.sqr_avg`.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// [`Progress`] as JSON.
pub const PROGRESS_FILE: &str = "progress.json";
const PREFIX: &str = "epoch-";

/// Where a run stands after a completed epoch: enough to continue the same schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// [`FORMAT`].
    pub format: u32,
    /// Epochs of this fit completed.
    pub epochs_done: usize,
    /// Epochs the fit was asked for.
    pub n_epoch: usize,
    /// Epochs of earlier fits of the same run (`fine_tune`'s frozen phase); the checkpoint folder is
    /// named after `epoch_offset + epochs_done`.
    #[serde(default)]
    pub epoch_offset: usize,
    /// Training steps completed.
    pub train_iter: usize,
    /// The one-cycle schedule being followed.
    pub sched: OneCycle,
    /// Adam's fixed hyper-parameters.
    pub adam: AdamConfig,
    /// Adam's step count per parameter.
    pub opt_steps: HashMap<String, u64>,
    /// The run's seed.
    pub seed: u64,
    /// Classes of the head.
    pub n_classes: usize,
    /// Whether the body was frozen.
    pub frozen: bool,
    /// The smoothed-loss state.
    pub smooth: SmoothLoss,
    /// The loss scaler, when training in mixed precision.
    pub scaler: Option<LossScaler>,
    /// Every training step so far.
    pub steps: Vec<StepRow>,
    /// Every epoch so far.
    pub epochs: Vec<EpochRow>,
}

fn to_cpu(named: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    named
        .iter()
        .map(|(n, t)| (n.clone(), t.to_device(tch::Device::Cpu).contiguous()))
        .collect()
}

/// Writes a checkpoint for `progress.epochs_done` under `root` (created if needed) and removes older ones.
/// Returns the checkpoint folder.
pub fn save(
    root: &Path,
    model: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
    progress: &Progress,
) -> Result<PathBuf> {
    std::fs::create_dir_all(root).map_err(|e| Error::io("creating", root, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(root)
        .map_err(|e| Error::io("creating a temporary folder in", root, e))?;
    let model_path = tmp.path().join(MODEL_FILE);
    Tensor::write_safetensors(&to_cpu(model), &model_path)?;
    let opt_path = tmp.path().join(OPTIMIZER_FILE);
    Tensor::write_safetensors(&to_cpu(optimizer), &opt_path)?;
    let json = serde_json::to_vec_pretty(progress).map_err(|source| Error::Json {
        path: tmp.path().join(PROGRESS_FILE),
        source,
    })?;
    std::fs::write(tmp.path().join(PROGRESS_FILE), json)
        .map_err(|e| Error::io("writing", tmp.path().join(PROGRESS_FILE), e))?;
    for f in [MODEL_FILE, OPTIMIZER_FILE, PROGRESS_FILE] {
        let p = tmp.path().join(f);
        std::fs::File::open(&p)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("syncing", &p, e))?;
    }
    let dest = root.join(format!(
        "{PREFIX}{:04}",
        progress.epoch_offset + progress.epochs_done
    ));
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| Error::io("removing the stale", &dest, e))?;
    }
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, &dest)
        .map_err(|e| Error::io("renaming a checkpoint into", &dest, e))?;
    for old in list(root)? {
        if old != dest {
            std::fs::remove_dir_all(&old)
                .map_err(|e| Error::io("removing the older checkpoint", &old, e))?;
        }
    }
    Ok(dest)
}

/// Complete checkpoint folders under `root`, oldest first.
pub fn list(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<(usize, PathBuf)> = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing", root, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", root, e))?;
        let name = entry.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.parse().ok())
        {
            found.push((n, entry.path()));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// The newest complete checkpoint under `root`, if any.
pub fn latest(root: &Path) -> Result<Option<PathBuf>> {
    Ok(list(root)?.pop())
}

/// A checkpoint read back: model tensors, optimizer tensors (on the CPU) and progress.
#[derive(Debug)]
pub struct Loaded {
    /// Model variables by name.
    pub model: HashMap<String, Tensor>,
    /// Optimizer state by name.
    pub optimizer: HashMap<String, Tensor>,
    /// Where the run stood.
    pub progress: Progress,
}

/// Reads the checkpoint folder `dir`.
pub fn load(dir: &Path) -> Result<Loaded> {
    let fail = |problem: String| Error::Checkpoint {
        path: dir.to_path_buf(),
        problem,
    };
    let read = |f: &str| -> Result<HashMap<String, Tensor>> {
        let p = dir.join(f);
        Ok(Tensor::read_safetensors(&p)
            .map_err(|e| {
                fail(format!(
                    "cannot read {f} ({e}); the checkpoint is damaged, delete it"
                ))
            })?
            .into_iter()
            .collect())
    };
    let json_path = dir.join(PROGRESS_FILE);
    let json = std::fs::read(&json_path).map_err(|e| Error::io("reading", &json_path, e))?;
    let progress: Progress = serde_json::from_slice(&json).map_err(|source| Error::Json {
        path: json_path.clone(),
        source,
    })?;
    if progress.format != FORMAT {
        return Err(fail(format!(
            "expected checkpoint format {FORMAT}, found {}",
            progress.format
        )));
    }
    Ok(Loaded {
        model: read(MODEL_FILE)?,
        optimizer: read(OPTIMIZER_FILE)?,
        progress,
    })
}

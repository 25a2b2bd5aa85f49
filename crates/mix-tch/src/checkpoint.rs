//! Checkpoints: model and optimizer state (safetensors) plus the schedule position and history (JSON),
//! written into a temporary folder with a SHA-256 manifest, synced and renamed into place, so a checkpoint
//! folder is always complete and a file damaged afterwards is refused instead of trained on; the callbacks
//! that write the last checkpoint ([`Checkpointer`]) and the best model ([`SaveBest`]) after each epoch.

use crate::callback::{Callback, Event};
use crate::learner::Learn;
use crate::model::Model;
use crate::optim::{AdamConfig, LossScaler};
use crate::recorder::{Best, EpochRow, SmoothLoss, StepRow};
use crate::schedule::OneCycle;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
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
/// [`Manifest`] as JSON: the size and SHA-256 of every other file. Checkpoints written before it
/// existed have none and load unchecked.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The files a manifest must cover.
const CHECKED: [&str; 3] = [MODEL_FILE, OPTIMIZER_FILE, PROGRESS_FILE];
const PREFIX: &str = "epoch-";
/// Names of the folders [`save`] writes into before the rename; a killed save leaves one behind.
const TMP_PREFIX: &str = ".tmp-";
/// Name an existing checkpoint of the same epoch is moved to while it is replaced.
const OLD_PREFIX: &str = ".old-";

/// Size and SHA-256 of one checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// Length in bytes.
    pub bytes: u64,
    /// SHA-256 as 64 lower-case hexadecimal digits.
    pub sha256: String,
}

/// `manifest.json`: what every file of a checkpoint looked like when it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// File name to its size and checksum.
    pub files: BTreeMap<String, FileSum>,
}

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

/// Every variable of `model` by name, sorted: the order the model files of checkpoints and of `best/`
/// are written in (so that the two hold the same bytes, see [`SaveBest`]).
pub fn sorted_variables(model: &dyn Model) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = model.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// [`sorted_variables`] on the CPU, contiguous: the tensors a model file holds.
pub fn model_tensors(model: &dyn Model) -> Vec<(String, Tensor)> {
    to_cpu(&sorted_variables(model))
}

fn to_cpu(named: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    named
        .iter()
        .map(|(n, t)| (n.clone(), t.to_device(tch::Device::Cpu).contiguous()))
        .collect()
}

/// Writes a checkpoint for `progress.epochs_done` under `root` (created if needed) and removes older ones.
/// Returns the checkpoint folder.
///
/// Every file is synced and listed with its SHA-256 in `manifest.json` before the temporary folder is
/// renamed into place, and the rename itself is synced: a crash or a full disk at any point leaves either
/// the new checkpoint complete or the previous one untouched, and the error of a failed save says which
/// checkpoint is still intact.
pub fn save(
    root: &Path,
    model: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
    progress: &Progress,
) -> Result<PathBuf> {
    let dest = root.join(format!(
        "{PREFIX}{:04}",
        progress.epoch_offset + progress.epochs_done
    ));
    let previous = list(root)?.into_iter().rfind(|p| *p != dest);
    write_folder(root, &dest, model, optimizer, progress).map_err(|e| {
        let kept = match &previous {
            Some(p) => format!(
                "the previous checkpoint {} is intact: free some disk space and resume from it",
                p.display()
            ),
            None => "no earlier checkpoint exists: free some disk space and start again".to_owned(),
        };
        Error::Checkpoint {
            path: dest.clone(),
            problem: format!("could not write it ({e}); {kept}"),
        }
    })?;
    for old in list(root)? {
        if old != dest {
            std::fs::remove_dir_all(&old)
                .map_err(|e| Error::io("removing the older checkpoint", &old, e))?;
        }
    }
    Ok(dest)
}

/// Writes the checkpoint into a temporary folder of `root` and renames it to `dest`.
fn write_folder(
    root: &Path,
    dest: &Path,
    model: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
    progress: &Progress,
) -> Result<()> {
    std::fs::create_dir_all(root).map_err(|e| Error::io("creating", root, e))?;
    remove_leftovers(root)?;
    // Dropping `tmp` on an error removes the partial folder, so a failed save leaves nothing behind.
    let tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .tempdir_in(root)
        .map_err(|e| Error::io("creating a temporary folder in", root, e))?;
    for (file, tensors) in [(MODEL_FILE, model), (OPTIMIZER_FILE, optimizer)] {
        let path = tmp.path().join(file);
        // libtorch's error names the file and the system's reason (EFBIG, ENOSPC).
        Tensor::write_safetensors(&to_cpu(tensors), &path)?;
    }
    let progress_path = tmp.path().join(PROGRESS_FILE);
    let json = serde_json::to_vec_pretty(progress).map_err(|source| Error::Json {
        path: progress_path.clone(),
        source,
    })?;
    write_synced(&progress_path, &json)?;
    let mut files = BTreeMap::new();
    for f in CHECKED {
        let p = tmp.path().join(f);
        std::fs::File::open(&p)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("syncing", &p, e))?;
        files.insert(f.to_owned(), file_sum(&p)?);
    }
    let manifest_path = tmp.path().join(MANIFEST_FILE);
    let manifest = Manifest {
        format: FORMAT,
        files,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|source| Error::Json {
        path: manifest_path.clone(),
        source,
    })?;
    write_synced(&manifest_path, &json)?;
    sync_dir(tmp.path())?;
    // A checkpoint of the same epoch (written before a resume went back to an earlier one) is moved
    // aside rather than deleted first, so that some copy of that epoch exists at every moment.
    let aside = dest.file_name().map(|n| {
        let mut name = std::ffi::OsString::from(OLD_PREFIX);
        name.push(n);
        root.join(name)
    });
    let aside = match aside {
        Some(a) if dest.exists() => {
            std::fs::rename(dest, &a).map_err(|e| Error::io("moving aside", dest, e))?;
            Some(a)
        }
        _ => None,
    };
    let tmp_path = tmp.keep();
    if let Err(e) = std::fs::rename(&tmp_path, dest) {
        let _ = std::fs::remove_dir_all(&tmp_path);
        if let Some(a) = &aside {
            let _ = std::fs::rename(a, dest);
        }
        return Err(Error::io("renaming a checkpoint into", dest, e));
    }
    sync_dir(root)?;
    if let Some(a) = aside {
        std::fs::remove_dir_all(&a).map_err(|e| Error::io("removing the replaced", &a, e))?;
    }
    Ok(())
}

/// Removes what a killed [`save`] left in `root`: temporary folders, and a checkpoint moved aside whose
/// replacement never arrived (that one is moved back, as it is the only copy of its epoch).
fn remove_leftovers(root: &Path) -> Result<()> {
    let entries = std::fs::read_dir(root).map_err(|e| Error::io("listing", root, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", root, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.starts_with(TMP_PREFIX) {
            std::fs::remove_dir_all(&path)
                .map_err(|e| Error::io("removing the unfinished checkpoint", &path, e))?;
        } else if let Some(orig) = name.strip_prefix(OLD_PREFIX) {
            let orig = root.join(orig);
            if orig.exists() {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| Error::io("removing the replaced", &path, e))?;
            } else {
                std::fs::rename(&path, &orig).map_err(|e| Error::io("restoring", &orig, e))?;
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to the new file `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    std::fs::File::create(path)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(|e| Error::io("writing", path, e))
}

/// Syncs folder `dir`, so that the files just created or renamed in it survive a power loss.
fn sync_dir(dir: &Path) -> Result<()> {
    Ok(mix_io::sync_dir(dir)?)
}

/// The size and SHA-256 of file `path`.
pub fn file_sum(path: &Path) -> Result<FileSum> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("reading", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(FileSum { bytes, sha256 })
}

/// Complete checkpoint folders under `root`, oldest first (not checked: see [`verify`]).
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

/// Checks every file of checkpoint folder `dir` against its `manifest.json`. Returns `false` for a
/// checkpoint of the earlier layout without a manifest, which cannot be checked and is accepted as it is.
pub fn verify(dir: &Path) -> Result<bool> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = match std::fs::read(&manifest_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(damaged(
                dir,
                MANIFEST_FILE,
                &format!("cannot read it ({e})"),
            ))
        }
    };
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        damaged(
            dir,
            MANIFEST_FILE,
            &format!("expected a checkpoint manifest, found unreadable JSON ({e})"),
        )
    })?;
    for f in CHECKED {
        let want = manifest.files.get(f).ok_or_else(|| {
            damaged(
                dir,
                MANIFEST_FILE,
                &format!("expected a checksum of {f}, found none"),
            )
        })?;
        let got = file_sum(&dir.join(f))
            .map_err(|e| damaged(dir, f, &format!("cannot read it ({e})")))?;
        if got != *want {
            return Err(damaged(
                dir,
                f,
                &format!(
                    "expected {} bytes with SHA-256 {}, found {} bytes with SHA-256 {}, so the file \
                     changed after the checkpoint was written (a disk fault or an interrupted copy)",
                    want.bytes, want.sha256, got.bytes, got.sha256
                ),
            ));
        }
    }
    Ok(true)
}

/// The error for a damaged `file` of checkpoint `dir`: what is wrong and what to do.
fn damaged(dir: &Path, file: &str, what: &str) -> Error {
    let others: Vec<PathBuf> = dir
        .parent()
        .and_then(|root| list(root).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p != dir)
        .collect();
    let todo = match others.last() {
        Some(other) => format!(
            "resuming skips it and continues from the newest intact checkpoint ({} is the newest \
             other one); to get rid of it, remove the folder {}",
            other.display(),
            dir.display()
        ),
        None => format!(
            "it is the run's only checkpoint, so keep it: restore {} from a backup of the run \
             folder, or start a new run",
            dir.display()
        ),
    };
    Error::Checkpoint {
        path: dir.join(file),
        problem: format!("{what}; {todo}"),
    }
}

/// The newest checkpoint under `root` that passes [`verify`], and why each newer one was skipped.
#[derive(Debug)]
pub struct Choice {
    /// The checkpoint folder.
    pub dir: PathBuf,
    /// The errors of the newer checkpoints that were damaged, newest first.
    pub skipped: Vec<Error>,
}

/// The newest intact checkpoint under `root`, `None` when there is no checkpoint at all, and an error when
/// there are checkpoints but every one is damaged.
pub fn newest_valid(root: &Path) -> Result<Option<Choice>> {
    let mut skipped = Vec::new();
    for dir in list(root)?.into_iter().rev() {
        match verify(&dir) {
            Ok(_) => return Ok(Some(Choice { dir, skipped })),
            Err(e @ Error::Checkpoint { .. }) => skipped.push(e),
            Err(e) => return Err(e),
        }
    }
    match skipped.len() {
        0 => Ok(None),
        1 => Err(skipped.remove(0)),
        n => Err(Error::Checkpoint {
            path: root.to_path_buf(),
            problem: format!(
                "expected an intact checkpoint, found {n} damaged ones ({}); keep them and start \
                 a new run",
                skipped
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }),
    }
}

/// The newest intact checkpoint under `root`, if any (see [`newest_valid`], which also says which
/// damaged ones were skipped).
pub fn latest(root: &Path) -> Result<Option<PathBuf>> {
    Ok(newest_valid(root)?.map(|c| c.dir))
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

/// Reads the checkpoint folder `dir`, after checking its files against their checksums.
pub fn load(dir: &Path) -> Result<Loaded> {
    verify(dir)?;
    let read = |f: &str| -> Result<HashMap<String, Tensor>> {
        let p = dir.join(f);
        Ok(Tensor::read_safetensors(&p)
            .map_err(|e| damaged(dir, f, &format!("cannot read it as safetensors ({e})")))?
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
        return Err(Error::Checkpoint {
            path: dir.to_path_buf(),
            problem: format!(
                "expected checkpoint format {FORMAT}, found {}",
                progress.format
            ),
        });
    }
    Ok(Loaded {
        model: read(MODEL_FILE)?,
        optimizer: read(OPTIMIZER_FILE)?,
        progress,
    })
}

/// After every finished epoch, writes a checkpoint of the run into `<run>/checkpoints/` (see [`save`])
/// and removes the older ones; `Learner::resume` continues from the newest intact one.
#[derive(Debug)]
pub struct Checkpointer {
    root: PathBuf,
    seed: u64,
}

impl Checkpointer {
    /// Checkpoints under `root` (the run folder's `checkpoints/`), recording the run's `seed`.
    pub fn new(root: &Path, seed: u64) -> Self {
        Checkpointer {
            root: root.to_path_buf(),
            seed,
        }
    }
}

impl Callback for Checkpointer {
    fn name(&self) -> &str {
        "Checkpointer"
    }

    fn order(&self) -> i32 {
        crate::recorder::order::CHECKPOINT
    }

    fn on(&mut self, event: Event, learn: &mut Learn) -> Result<()> {
        if event != Event::AfterEpoch || learn.epoch_row.is_none() {
            return Ok(());
        }
        let (opt_tensors, opt_steps) = learn.opt.state();
        let model = sorted_variables(&*learn.model);
        let progress = Progress {
            format: FORMAT,
            epochs_done: learn.epoch + 1,
            n_epoch: learn.n_epoch,
            epoch_offset: learn.epoch_offset,
            train_iter: learn.train_iter,
            sched: learn.sched,
            adam: learn.opt.cfg,
            opt_steps,
            seed: self.seed,
            n_classes: learn.model.n_classes(),
            frozen: learn.model.is_frozen(),
            smooth: learn.smooth_loss,
            scaler: learn.scaler.clone(),
            steps: learn.history.steps.clone(),
            epochs: learn.history.epochs.clone(),
        };
        learn.history.last_checkpoint = Some(save(&self.root, &model, &opt_tensors, &progress)?);
        Ok(())
    }
}

/// The validation metric a [`SaveBest`] watches, and which way is better (fastai's `monitor` and
/// `comp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Mean validation loss; lower is better (fastai's default `monitor='valid_loss'`).
    ValidLoss,
    /// Fraction misclassified; lower is better.
    ErrorRate,
    /// Fraction classified right, `1 - error_rate`; higher is better.
    Accuracy,
}

impl Monitor {
    /// The name written to `best.json` and the event log, as fastai's metric names go.
    pub fn name(self) -> &'static str {
        match self {
            Monitor::ValidLoss => "valid_loss",
            Monitor::ErrorRate => "error_rate",
            Monitor::Accuracy => "accuracy",
        }
    }

    /// The metric's value for an epoch.
    pub fn value(self, row: &EpochRow) -> f64 {
        match self {
            Monitor::ValidLoss => row.valid_loss,
            Monitor::ErrorRate => row.error_rate,
            Monitor::Accuracy => 1.0 - row.error_rate,
        }
    }

    /// Whether `new` improves on `best` (strictly, as fastai's `np.less`/`np.greater` with
    /// `min_delta=0`); a NaN never improves.
    pub fn improves(self, new: f64, best: f64) -> bool {
        match self {
            Monitor::ValidLoss | Monitor::ErrorRate => new < best,
            Monitor::Accuracy => new > best,
        }
    }
}

impl std::str::FromStr for Monitor {
    type Err = Error;

    /// Parses a metric name as [`Monitor::name`] writes it.
    fn from_str(s: &str) -> Result<Self> {
        [Monitor::ValidLoss, Monitor::ErrorRate, Monitor::Accuracy]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "expected a metric to monitor (valid_loss, error_rate or accuracy), found {s:?}"
                ))
            })
    }
}

/// The best model's folder in the run folder.
pub const BEST_DIR: &str = "best";
/// The best model's description in [`BEST_DIR`].
pub const BEST_FILE: &str = "best.json";

/// `best/best.json`: which epoch the weights in `best/model.safetensors` come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestInfo {
    /// Epoch of the run, 0-based.
    pub epoch: usize,
    /// The monitored metric's name.
    pub metric: String,
    /// Its value at that epoch.
    pub value: f64,
    /// Size and SHA-256 of the weights written with it, so that a reader can tell they belong together.
    pub model: FileSum,
}

/// fastai's `SaveModelCallback(monitor=..., comp=...)`: after every finished epoch whose monitored
/// validation metric improves on the best so far, writes the model's variables to
/// `<run>/best/model.safetensors` and then `<run>/best/best.json`, each durably. A resumed run starts
/// from the best recorded in `best.json`; a fresh run ignores what an older run left.
#[derive(Debug)]
pub struct SaveBest {
    dir: PathBuf,
    monitor: Monitor,
}

impl SaveBest {
    /// Keeps the best model by `monitor` in `<run_dir>/best/`.
    pub fn new(run_dir: &Path, monitor: Monitor) -> Self {
        SaveBest {
            dir: run_dir.join(BEST_DIR),
            monitor,
        }
    }

    /// The `best.json` of a run folder, if there is one that reads.
    pub fn read(run_dir: &Path) -> Option<BestInfo> {
        let bytes = std::fs::read(run_dir.join(BEST_DIR).join(BEST_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write(&self, learn: &Learn, row: &EpochRow, value: f64) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io("creating", &self.dir, e))?;
        let path = self.dir.join(MODEL_FILE);
        let tmp = mix_io::temp_path_beside(&path);
        let model = match Self::link_this_epochs_checkpoint(learn, &tmp) {
            Some(sum) => sum,
            None => {
                if let Err(e) = Tensor::write_safetensors(&model_tensors(&*learn.model), &tmp) {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e.into());
                }
                file_sum(&tmp)?
            }
        };
        mix_io::persist(&tmp, &path)?;
        let info = BestInfo {
            epoch: row.epoch,
            metric: self.monitor.name().into(),
            value,
            model,
        };
        let json_path = self.dir.join(BEST_FILE);
        let json = serde_json::to_vec_pretty(&info).map_err(|source| Error::Json {
            path: json_path.clone(),
            source,
        })?;
        Ok(mix_io::write_atomic(&json_path, &json)?)
    }
}

impl SaveBest {
    /// When the [`Checkpointer`] saved this very epoch (it runs first), its model file holds the bytes
    /// this callback would write (the same variables, sorted, on the CPU): `tmp` becomes a second name
    /// for that file (a hard link; files here are only ever replaced, never changed in place, and the
    /// best model outlives the checkpoint's removal) and its manifest's sum is returned. `None` where
    /// there is no such checkpoint or the link cannot be made (the caller then writes the file).
    fn link_this_epochs_checkpoint(learn: &Learn, tmp: &Path) -> Option<FileSum> {
        let dir = learn.history.last_checkpoint.as_ref()?;
        let this_epoch = format!("{PREFIX}{:04}", learn.epoch_offset + learn.epoch + 1);
        if dir.file_name()? != this_epoch.as_str() {
            return None;
        }
        let manifest: Manifest =
            serde_json::from_slice(&std::fs::read(dir.join(MANIFEST_FILE)).ok()?).ok()?;
        let sum = manifest.files.get(MODEL_FILE)?.clone();
        std::fs::hard_link(dir.join(MODEL_FILE), tmp).ok()?;
        Some(sum)
    }
}

impl Callback for SaveBest {
    fn name(&self) -> &str {
        "SaveModelCallback"
    }

    fn order(&self) -> i32 {
        crate::recorder::order::BEST
    }

    fn on(&mut self, event: Event, learn: &mut Learn) -> Result<()> {
        match event {
            Event::BeforeFit if learn.logging => {
                learn.history.best = if learn.is_fresh() {
                    None
                } else {
                    // A resumed run or a later fit of the same run keeps the best so far; after a
                    // resume it is read back from the run folder.
                    learn.history.best.or_else(|| {
                        let run = self.dir.parent()?;
                        Self::read(run)
                            .filter(|b| b.metric == self.monitor.name())
                            .map(|b| Best {
                                epoch: b.epoch,
                                value: b.value,
                            })
                    })
                };
            }
            Event::AfterEpoch => {
                let Some(row) = learn.epoch_row else {
                    return Ok(());
                };
                let value = self.monitor.value(&row);
                let better = match learn.history.best {
                    None => !value.is_nan(),
                    Some(b) => self.monitor.improves(value, b.value),
                };
                if better {
                    self.write(learn, &row, value)?;
                    learn.history.best = Some(Best {
                        epoch: row.epoch,
                        value,
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }
}

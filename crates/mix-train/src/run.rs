//! One training run: check everything, build the data and the learner, claim a run folder, fit,
//! and leave the files a user opens afterwards.
//!
//! Order matters for "nothing half-written": every check that can fail on the user's input (options,
//! device, dataset, labels, pretrained weights) runs before the run folder exists. The learner then
//! writes metrics.csv, steps.csv, curves.png and a checkpoint atomically after every epoch; this
//! module adds config.json before the first epoch and model.safetensors after the fit.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use mix_core::{CutMix, Mix, MixConfig, MixMode, MixUp, Mixer};
use mix_data::{DataLoaders, LoaderConfig, Shard};
use mix_tch::augment::{IMAGENET_MEAN, IMAGENET_STD};
use mix_tch::checkpoint::{self, Progress};
use mix_tch::tch::Tensor;
use mix_tch::{
    aug_transforms, Callback, Cancel, DeviceChoice, Event, FineTune, FitSummary, Learn, Learner,
    LearnerConfig, LrSpread, MemoryFormat, MixCallback, MixOptions, Monitor, OneCycle, Precision,
};
use serde::{Deserialize, Serialize};

use mix_cli::dataset::{self, DatasetArg};
use mix_cli::weights::{self, absolute, Weights};
use mix_cli::{LrSlice, MixChoice, SpeedArgs, TrainArgs, TrainCommand, TrainOpts};

use crate::dist::{self, Rank};

/// The run's settings, written before training starts and read back by `--resume`.
pub const CONFIG_FILE: &str = "config.json";
/// The trained model's variables (torchvision names for the body, `head.*` for fastai's head).
pub const MODEL_FILE: &str = "model.safetensors";
/// Version of [`RunConfig`]'s layout.
const FORMAT: u32 = 1;
/// fastai's `RandomSplitter` default, as `from_name_re` uses it.
const VALID_PCT: f64 = 0.2;

/// Everything a run was started with, resolved: `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// [`FORMAT`].
    pub format: u32,
    /// `mixup`, `cutmix` or `none`.
    pub mix: String,
    /// Beta concentration of the mix (0 without one).
    pub alpha: f32,
    /// Epochs of the one-cycle schedule.
    pub epochs: usize,
    /// Batch size.
    pub bs: usize,
    /// The pretrained weights file loaded, if any (`weights` says where it came from).
    pub pretrained: Option<PathBuf>,
    /// The pretrained weights: what `--pretrained` named, the file and its SHA-256; `None` from
    /// scratch.
    #[serde(default)]
    pub weights: Option<Weights>,
    /// `fine_tune`'s settings when the run fine-tunes (`epochs` is then the unfrozen fit's count);
    /// `None` for `fit_one_cycle`.
    #[serde(default)]
    pub fine_tune: Option<FineTune>,
    /// Per-channel `(mean, std)` the inputs were normalised with (absent in older runs: ImageNet's).
    #[serde(default)]
    pub normalize: Option<([f64; 3], [f64; 3])>,
    /// `--dataset` as given.
    pub dataset: String,
    /// The folder of images it resolved to.
    pub images: PathBuf,
    /// The label regex.
    pub pattern: String,
    /// `--device` as given.
    pub device: String,
    /// The device libtorch trained on (`cpu`, `cuda:0`).
    pub device_used: String,
    /// The seed of split, shuffles, crops, augmentation, mixes and weights.
    pub seed: u64,
    /// Item transform `Resize(resize, method='crop')`.
    pub resize: usize,
    /// `aug_transforms(size=size)`.
    pub size: usize,
    /// Validation fraction of the random split.
    pub valid_pct: f64,
    /// Class names; the model's output `i` is `classes[i]`.
    pub classes: Vec<String>,
    /// Training images.
    pub n_train: usize,
    /// Validation images.
    pub n_valid: usize,
    /// `fit_one_cycle`'s schedule (lr_max, its spread over the parameter groups and fastai's
    /// defaults); with `fine_tune`, the settings both fits share.
    pub one_cycle: OneCycle,
    /// The arguments the run was started with.
    pub args: Vec<String>,
    /// timm's `Mixup` settings, with `mix` = `timm`.
    #[serde(default)]
    pub timm: Option<TimmRecord>,
    /// Mixing stops from this epoch on (timm's `mixup_off_epoch`).
    #[serde(default)]
    pub mixup_off_epoch: Option<usize>,
    /// The validation metric `best/` is kept by (`valid_loss`, `error_rate`); `None` keeps none.
    #[serde(default)]
    pub save_best: Option<String>,
    /// SyncBatchNorm across the ranks of a data-parallel run (`--sync-bn`).
    #[serde(default)]
    pub sync_bn: bool,
}

/// mix-core's [`MixConfig`] (timm's `Mixup` settings) as config.json records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimmRecord {
    /// MixUp's alpha (`None`: off).
    pub mixup_alpha: Option<f32>,
    /// CutMix's alpha (`None`: off).
    pub cutmix_alpha: Option<f32>,
    /// CutMix's box side bounds.
    pub cutmix_minmax: Option<(f32, f32)>,
    /// Probability of mixing.
    pub prob: f32,
    /// Probability of CutMix when both are on.
    pub switch_prob: f32,
    /// `batch`, `pair` or `elem`.
    pub mode: String,
    /// CutMix's lambda corrected to the clipped box.
    pub correct_lam: bool,
    /// Label smoothing of the mixed targets.
    pub label_smoothing: f32,
}

impl From<&MixConfig> for TimmRecord {
    fn from(c: &MixConfig) -> TimmRecord {
        TimmRecord {
            mixup_alpha: c.mixup_alpha,
            cutmix_alpha: c.cutmix_alpha,
            cutmix_minmax: c.cutmix_minmax,
            prob: c.prob,
            switch_prob: c.switch_prob,
            mode: match c.mode {
                MixMode::Batch => "batch",
                MixMode::Pair => "pair",
                MixMode::Elem => "elem",
            }
            .into(),
            correct_lam: c.correct_lam,
            label_smoothing: c.label_smoothing,
        }
    }
}

impl TimmRecord {
    /// The mix-core settings back, checked.
    pub fn config(&self) -> Result<MixConfig> {
        let mode = match self.mode.as_str() {
            "batch" => MixMode::Batch,
            "pair" => MixMode::Pair,
            "elem" => MixMode::Elem,
            other => bail!("config.json: timm.mode {other}: expected batch, pair or elem"),
        };
        Ok(MixConfig {
            mixup_alpha: self.mixup_alpha,
            cutmix_alpha: self.cutmix_alpha,
            cutmix_minmax: self.cutmix_minmax,
            prob: self.prob,
            switch_prob: self.switch_prob,
            mode,
            correct_lam: self.correct_lam,
            label_smoothing: self.label_smoothing,
        })
    }
}

/// Runs `train` with `opts`, parsed from `args` (the arguments after the program name, which
/// `--config` is applied to and config.json records).
pub fn main(opts: TrainOpts, args: &[OsString]) -> Result<()> {
    let recorded: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let command = opts.finish(args)?;
    let nproc = match &command {
        TrainCommand::New(a) => a.speed.nproc,
        TrainCommand::Resume { speed, .. } => speed.nproc,
    };
    dist::launch_if_asked(nproc, args)?;
    match command {
        TrainCommand::New(args) => new_run(&args, &recorded),
        TrainCommand::Resume {
            run,
            device,
            stop_after,
            speed,
        } => resume(&run, device.as_deref(), stop_after, &speed),
    }
}

impl RunConfig {
    /// Epochs of the whole run (both fits of `fine_tune`).
    pub fn total_epochs(&self) -> usize {
        self.epochs + self.fine_tune.map_or(0, |ft| ft.freeze_epochs)
    }

    /// The normalisation the model was trained with.
    pub fn mean_std(&self) -> ([f64; 3], [f64; 3]) {
        self.normalize.unwrap_or((IMAGENET_MEAN, IMAGENET_STD))
    }
}

/// Resolves `--device` now, so that a missing CUDA fails before any work.
pub fn resolve_device(value: &str) -> Result<(DeviceChoice, String)> {
    let choice: DeviceChoice = value.parse()?;
    let name = device_label(choice).with_context(|| format!("--device {value}"))?;
    Ok((choice, name))
}

/// `cpu` or `cuda:N`: the device `choice` resolves to.
fn device_label(choice: DeviceChoice) -> Result<String> {
    Ok(match choice.resolve()? {
        mix_tch::tch::Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".to_string(),
    })
}

/// Runs `body` as a single process or as one rank of a data-parallel job (joined here from torchrun's
/// variables): a rank reports its failure to the others and says which rank stopped when one did, and
/// ends a successful run at a barrier with all of them.
fn as_rank(
    nproc: usize,
    device: DeviceChoice,
    run: &Path,
    body: impl FnOnce(DeviceChoice, Option<&Rank>) -> Result<()>,
) -> Result<()> {
    let (rank, device) = dist::join(nproc, device)?;
    let result = body(device, rank.as_ref());
    match (rank, result) {
        (None, result) => result,
        (Some(rank), Ok(())) => rank.finish(),
        (Some(rank), Err(e)) => {
            let e = rank.explain(&e);
            // A job that broke mid-run continues from its last checkpoint, which only rank 0 wrote
            // and wrote whole.
            match checkpoint::newest_valid(&run.join("checkpoints")) {
                Ok(Some(last)) => Err(anyhow::anyhow!(
                    "{e:#}; the last checkpoint, {}, is intact: continue with `--resume {} --nproc {}`",
                    last.dir.display(),
                    run.display(),
                    rank.env.world
                )),
                _ => Err(e),
            }
        }
    }
}

/// Runs `body` on rank 0 first and on the other ranks once it is done (PyTorch's
/// `torch_distributed_zero_first`): downloads and extractions into the shared cache happen once.
fn rank_zero_first<T>(rank: Option<&Rank>, body: impl FnOnce() -> Result<T>) -> Result<T> {
    let Some(rank) = rank else {
        return body();
    };
    let wait = || {
        rank.group.barrier().context(
            "waiting for rank 0 to fetch the dataset and weights (fetch them beforehand with `cargo \
             xtask download`, or raise MIX_DIST_TIMEOUT)",
        )
    };
    if !rank.is_main() {
        wait()?;
    }
    let out = body();
    if rank.is_main() {
        // Rank 0 meets the others even when it failed: they would wait for it until the timeout.
        let waited = wait();
        return out.and_then(|o| waited.map(|()| o));
    }
    out
}

/// The loader settings of a run: batches of `bs` (per rank), the split and shuffles from `seed`,
/// items of `resize` pixels, the decoded-image cache, and this process's shard with its decoding
/// threads (0: one per core).
pub fn loader_config(
    bs: usize,
    seed: u64,
    resize: usize,
    cache: bool,
    (shard, threads): (Shard, usize),
) -> LoaderConfig {
    LoaderConfig {
        shard,
        threads,
        batch_size: bs,
        valid_pct: VALID_PCT,
        seed,
        item_size: resize,
        cache_decoded: cache,
        ..LoaderConfig::default()
    }
}

/// The training and validation loaders of `files` (in `folder`) labelled by `pattern`, refusing a
/// batch larger than a rank's training images and a dataset too small to validate on.
pub fn loaders(
    files: &[PathBuf],
    pattern: &str,
    folder: &Path,
    cfg: &LoaderConfig,
) -> Result<DataLoaders> {
    let (bs, shard) = (cfg.batch_size, cfg.shard);
    let dls = DataLoaders::from_name_re(files, pattern, cfg)?;
    let (n_train, n_valid) = (dls.train.len_items(), dls.valid.len_items());
    // A rank trains on its shard: the training images split over the ranks, padded to equal parts.
    let per_rank = shard.padded_len(n_train);
    if per_rank < bs {
        let (what, per) = if shard.is_whole() {
            (format!("the {n_train} training images"), String::new())
        } else {
            (
                format!(
                    "the {per_rank} training images each of the {} ranks gets",
                    shard.world()
                ),
                " (--bs is per rank)".to_owned(),
            )
        };
        bail!(
            "--bs {bs} is larger than {what} of {} (training drops a last partial batch, so there \
             would be no batch): pass --bs {} or less{per}",
            folder.display(),
            per_rank.max(1)
        );
    }
    if n_valid == 0 {
        bail!(
            "{} has {} images, too few for a validation split of {VALID_PCT}: expected at least 5",
            folder.display(),
            files.len()
        );
    }
    Ok(dls)
}

/// Whether every item of a dataset fits the decoded-image cache: its worst case (`3 * 4 * resize^2`
/// bytes an item, see `LoaderConfig::cache_decoded`) under half the memory available now. Where the
/// available memory cannot be read (not Linux), no.
pub fn cache_fits(n_items: usize, resize: usize) -> bool {
    let need = (n_items as u64)
        .saturating_mul(12)
        .saturating_mul((resize as u64).saturating_mul(resize as u64));
    available_memory().is_some_and(|free| need < free / 2)
}

/// `MemAvailable` of /proc/meminfo in bytes.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// What the learner's speed settings resolve to (precision is resolved by the learner against the
/// device).
fn learner_config(
    cfg: &RunConfig,
    device: DeviceChoice,
    run: &Path,
    pretrained: Option<PathBuf>,
    speed: &SpeedArgs,
    rank: Option<&Rank>,
) -> Result<LearnerConfig> {
    let precision: Precision = speed
        .precision
        .parse()
        .with_context(|| format!("--precision {}", speed.precision))?;
    let memory_format: MemoryFormat = speed
        .memory_format
        .parse()
        .with_context(|| format!("--memory-format {}", speed.memory_format))?;
    Ok(LearnerConfig {
        precision,
        memory_format,
        device,
        seed: cfg.seed,
        aug: Some(aug_transforms(cfg.size as i64)),
        normalize: Some(cfg.mean_std()),
        pretrained,
        run_dir: Some(run.to_path_buf()),
        save_best: cfg
            .save_best
            .as_deref()
            .map(str::parse::<Monitor>)
            .transpose()
            .context("config.json: save_best")?,
        progress: true,
        collective: rank.map(Rank::collective),
        ..LearnerConfig::new(cfg.classes.len())
    })
}

/// The mix callback, the stop-after callback and, for a rank of a data-parallel job, DDP.
fn callbacks(
    config: &RunConfig,
    stop_after: Option<usize>,
    rank: Option<&Rank>,
) -> Result<Vec<Box<dyn Callback>>> {
    let (mix, alpha) = (config.mix.as_str(), config.alpha);
    let total_epochs = config.total_epochs();
    let mut cbs: Vec<Box<dyn Callback>> = Vec::new();
    let off_epoch = config.mixup_off_epoch;
    let fastai = |mix: Box<dyn Mix>| {
        MixCallback::with_options(
            mix,
            MixOptions {
                off_epoch,
                ..MixOptions::default()
            },
        )
    };
    let mix: Option<MixCallback> = match MixChoice::parse(mix)? {
        MixChoice::MixUp => Some(fastai(Box::new(MixUp::new(alpha)?))),
        MixChoice::CutMix => Some(fastai(Box::new(CutMix::new(alpha)?))),
        MixChoice::Timm => {
            let Some(timm) = &config.timm else {
                bail!("config.json: mix is timm but its timm settings are missing");
            };
            Some(MixCallback::timm(Mixer::new(timm.config()?)?, off_epoch))
        }
        MixChoice::None => None,
    };
    if let Some(mix) = mix {
        cbs.push(Box::new(mix));
    }
    if let Some(n) = stop_after {
        cbs.push(Box::new(StopAfter {
            after: n,
            total: total_epochs,
            speak: dist::is_main(rank),
        }));
    }
    if let Some(rank) = rank {
        cbs.push(Box::new(rank.ddp()));
    }
    Ok(cbs)
}

/// Cancels the run after `after` of its `total` epochs (after that epoch's checkpoint is written),
/// counting both fits of `fine_tune`.
#[derive(Debug)]
struct StopAfter {
    after: usize,
    total: usize,
    /// Whether this process says so (rank 0 of a data-parallel job, or a single process).
    speak: bool,
}

impl Callback for StopAfter {
    fn name(&self) -> &str {
        "StopAfter"
    }

    fn on(&mut self, event: Event, learn: &mut Learn) -> mix_tch::Result<()> {
        let done = learn.epoch_offset + learn.epoch + 1;
        if event == Event::AfterEpoch && done >= self.after && done < self.total {
            if !self.speak {
                return Cancel::Fit.err();
            }
            println!(
                "stopping after epoch {done} of {} (--stop-after {}); continue with --resume",
                self.total, self.after
            );
            return Cancel::Fit.err();
        }
        Ok(())
    }
}

fn new_run(args: &TrainArgs, raw: &[String]) -> Result<()> {
    let (device, _) = resolve_device(&args.device)?;
    // A bad --out is reported before any dataset or weights download.
    let run = free_run_dir(&args.out)?;
    as_rank(args.speed.nproc, device, &run, |device, rank| {
        new_run_as(args, raw, &run, device, rank)
    })
}

/// A new run as a single process or as one rank (`rank`) of a data-parallel job.
fn new_run_as(
    args: &TrainArgs,
    raw: &[String],
    run: &Path,
    device: DeviceChoice,
    rank: Option<&Rank>,
) -> Result<()> {
    let device_used = device_label(device)?;
    let main = dist::is_main(rank);
    let data = DatasetArg::parse(&args.dataset);
    let (images, files) =
        rank_zero_first(rank, || Ok(dataset::labelled_files(&data, &args.pattern)?))?;
    let cache_images = args
        .speed
        .cache_images
        .unwrap_or_else(|| cache_fits(files.len(), args.resize));
    let dls = loaders(
        &files,
        &args.pattern,
        &images,
        &loader_config(
            args.bs,
            args.seed,
            args.resize,
            cache_images,
            shard_of(rank)?,
        ),
    )?;
    let weights = rank_zero_first(rank, || {
        Ok(weights::resolve(
            &args.pretrained,
            args.pretrained_sha256.as_deref(),
        )?)
    })?;
    let one_cycle = OneCycle {
        lr_max: args.lr,
        spread: match args.lr_slice {
            LrSlice::Same => LrSpread::Same,
            LrSlice::Tenth => LrSpread::Tenth,
            LrSlice::From(lo) => LrSpread::From(lo),
        },
        ..OneCycle::default()
    };
    let fine_tune = args.fine_tune.map(|ft| FineTune {
        base_lr: args.lr,
        freeze_epochs: ft.freeze_epochs,
        base: one_cycle,
        ..FineTune::default()
    });
    let config = RunConfig {
        format: FORMAT,
        mix: args.mix.name().to_string(),
        alpha: args.alpha,
        epochs: args.epochs,
        bs: args.bs,
        pretrained: weights.as_ref().map(|w| w.file.clone()),
        weights: weights.clone(),
        fine_tune,
        normalize: Some((IMAGENET_MEAN, IMAGENET_STD)),
        dataset: args.dataset.clone(),
        images: absolute(&images),
        pattern: args.pattern.clone(),
        device: args.device.clone(),
        device_used,
        seed: args.seed,
        resize: args.resize,
        size: args.size,
        valid_pct: VALID_PCT,
        classes: dls.vocab.labels().to_vec(),
        n_train: dls.train.len_items(),
        n_valid: dls.valid.len_items(),
        one_cycle,
        args: raw.to_vec(),
        timm: args.timm.as_ref().map(TimmRecord::from),
        mixup_off_epoch: args.mixup_off_epoch,
        save_best: args.save_best.map(|m| m.name().to_string()),
        sync_bn: args.sync_bn,
    };
    if let Some(ft) = &config.fine_tune {
        ft.validate()?;
    } else {
        config.one_cycle.validate()?;
    }
    let cbs = callbacks(&config, args.stop_after, rank)?;
    let lcfg = learner_config(
        &config,
        device,
        run,
        config.pretrained.clone(),
        &args.speed,
        rank,
    )?;
    let mut learner = Learner::new(Box::new(dls.train), Box::new(dls.valid), lcfg)?;
    sync_batch_norm(&mut learner, &config, rank);
    if main {
        claim_run(args, run, &config)?;
        announce(&config, run);
        println!("{}", compute_line(&learner, cache_images));
    }
    let summary = match config.fine_tune {
        Some(ft) => learner.fine_tune(config.epochs, ft, cbs)?,
        None => learner.fit_one_cycle(config.epochs, config.one_cycle, cbs)?,
    };
    if !main {
        return Ok(());
    }
    finish(&learner, run, &summary, config.total_epochs())
}

/// Every check has passed: claims the run folder and records the settings before the first epoch.
fn claim_run(args: &TrainArgs, run: &Path, config: &RunConfig) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out {}: cannot create it", args.out.display()))?;
    std::fs::create_dir(run)
        .with_context(|| format!("--out: cannot create the run folder {}", run.display()))?;
    if let Err(e) =
        mix_io::write_atomic(&run.join(CONFIG_FILE), &serde_json::to_vec_pretty(config)?)
    {
        // The folder holds nothing yet; leave no run folder that --resume would trip over.
        let _ = std::fs::remove_dir_all(run);
        return Err(e.into());
    }
    Ok(())
}

/// `--sync-bn`: a rank's model normalises with the whole job's batch statistics.
fn sync_batch_norm(learner: &mut Learner, config: &RunConfig, rank: Option<&Rank>) {
    if let Some(rank) = rank.filter(|_| config.sync_bn) {
        learner
            .learn_mut()
            .model
            .sync_batch_norm(Some(rank.collective()));
    }
}

/// Which part of every epoch this process loads (all of it alone, its shard as a rank), and with how
/// many decoding threads: one per core alone, the cores split between the ranks of this machine (which
/// also run their libtorch threads on them).
fn shard_of(rank: Option<&Rank>) -> Result<(Shard, usize)> {
    let Some(rank) = rank else {
        return Ok((Shard::whole(), 0));
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok((rank.shard()?, (cores / rank.env.local_world).max(1)))
}

/// Reads and checks `run`'s config.json.
pub fn read_config(run: &Path) -> Result<RunConfig> {
    let path = run.join(CONFIG_FILE);
    let text = std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {} ({e}); expected a run folder made by `cargo xtask train` \
             (for example runs/<timestamp>)",
            path.display()
        )
    })?;
    let config: RunConfig = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a mix-train config.json of format {FORMAT}",
            path.display()
        )
    })?;
    if config.format != FORMAT {
        bail!(
            "{}: expected format {FORMAT}, found {}",
            path.display(),
            config.format
        );
    }
    Ok(config)
}

fn resume(
    run: &Path,
    device: Option<&str>,
    stop_after: Option<usize>,
    speed: &SpeedArgs,
) -> Result<()> {
    let config = read_config(run).context("--resume")?;
    let done = epochs_done(run)?;
    let total = config.total_epochs();
    if done >= total {
        bail!(
            "--resume {}: all {total} epochs are done already; start a new run instead",
            run.display(),
        );
    }
    if let Some(n) = stop_after.filter(|&n| n <= done) {
        bail!("--stop-after {n}: {done} epochs are done already; expected a number above {done}");
    }
    let (choice, _) = resolve_device(device.unwrap_or(&config.device))?;
    as_rank(speed.nproc, choice, run, |choice, rank| {
        resume_as(run, &config, (done, total), choice, stop_after, speed, rank)
    })
}

/// Continues `run` as a single process or as one rank (`rank`) of a data-parallel job.
fn resume_as(
    run: &Path,
    config: &RunConfig,
    (done, total): (usize, usize),
    choice: DeviceChoice,
    stop_after: Option<usize>,
    speed: &SpeedArgs,
    rank: Option<&Rank>,
) -> Result<()> {
    let main = dist::is_main(rank);
    let files = dataset::image_files(&config.images)?;
    dataset::check_pattern(&files, &config.pattern, &config.images)?;
    let cache_images = speed
        .cache_images
        .unwrap_or_else(|| cache_fits(files.len(), config.resize));
    let dls = loaders(
        &files,
        &config.pattern,
        &config.images,
        &loader_config(
            config.bs,
            config.seed,
            config.resize,
            cache_images,
            shard_of(rank)?,
        ),
    )?;
    if dls.vocab.labels() != config.classes.as_slice() {
        bail!(
            "the images in {} changed since the run started: expected the classes {:?}, found {:?}; \
             start a new run",
            config.images.display(),
            config.classes,
            dls.vocab.labels()
        );
    }
    let cbs = callbacks(config, stop_after, rank)?;
    // The checkpoint holds every weight and whether the body was frozen: the pretrained file is not
    // needed again.
    let lcfg = learner_config(config, choice, run, None, speed, rank)?;
    let mut learner = Learner::new(Box::new(dls.train), Box::new(dls.valid), lcfg)?;
    sync_batch_norm(&mut learner, config, rank);
    if main {
        println!(
            "resuming {} after epoch {done} of {total} ({})",
            run.display(),
            describe(config)
        );
        println!("{}", compute_line(&learner, cache_images));
    }
    let summary = match config.fine_tune {
        Some(ft) => learner.resume_fine_tune(config.epochs, ft, cbs)?,
        None => learner.resume(cbs)?,
    };
    if !main {
        return Ok(());
    }
    finish(&learner, run, &summary, total)
}

/// Epochs completed in `run`, from its newest intact checkpoint (the learner resumes from the same one:
/// `checkpoint::latest` skips damaged checkpoints as `newest_valid` does, and this says so).
fn epochs_done(run: &Path) -> Result<usize> {
    let root = run.join("checkpoints");
    let choice = checkpoint::newest_valid(&root).with_context(|| {
        format!(
            "--resume {}: cannot resume from a damaged checkpoint",
            run.display()
        )
    })?;
    let Some(checkpoint::Choice { dir, skipped }) = choice else {
        bail!(
            "--resume {}: no checkpoint in {} (the run stopped before its first epoch ended); \
             start a new run instead",
            run.display(),
            root.display()
        );
    };
    for damaged in &skipped {
        eprintln!(
            "warning: skipping a damaged checkpoint: {damaged}; resuming from {}",
            dir.display()
        );
    }
    let path = dir.join(checkpoint::PROGRESS_FILE);
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let progress: Progress = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a checkpoint progress file", path.display()))?;
    Ok(progress.epoch_offset + progress.epochs_done)
}

fn describe(c: &RunConfig) -> String {
    let mix = match c.mix.as_str() {
        "none" => "no mix".to_string(),
        m => format!("{m} alpha {}", c.alpha),
    };
    let lr = match (c.fine_tune, c.one_cycle.spread) {
        (Some(ft), _) => format!("base_lr {}", ft.base_lr),
        (None, LrSpread::Same) => format!("lr {}", c.one_cycle.lr_max),
        (None, LrSpread::Tenth) => format!("lr slice({})", c.one_cycle.lr_max),
        (None, LrSpread::From(lo)) => format!("lr slice({lo}, {})", c.one_cycle.lr_max),
    };
    format!(
        "{mix}, bs {}, {lr}, Resize({}) -> {} px, {} classes, {} train / {} valid images, {}",
        c.bs,
        c.resize,
        c.size,
        c.classes.len(),
        c.n_train,
        c.n_valid,
        c.device_used
    )
}

fn announce(c: &RunConfig, run: &Path) {
    println!("run folder {}", run.display());
    let start = match &c.weights {
        Some(w) => format!("pretrained ({}, frozen body)", w.describe()),
        None => "from scratch".to_string(),
    };
    let fit = match c.fine_tune {
        Some(ft) => format!(
            "fine_tune({}, freeze_epochs={}): {} epoch(s)",
            c.epochs,
            ft.freeze_epochs,
            c.total_epochs()
        ),
        None => format!("fit_one_cycle: {} epoch(s)", c.epochs),
    };
    println!(
        "training ResNet18 {start}, {fit} on {}: {}",
        c.images.display(),
        describe(c)
    );
}

/// How the run computes: precision, memory format, image cache.
fn compute_line(learner: &Learner, cache_images: bool) -> String {
    let precision = match learner.precision() {
        Precision::Bf16 => "bf16 autocast",
        Precision::Fp16 => "fp16 autocast with loss scaling",
        Precision::Fp32 | Precision::Auto => "fp32",
    };
    let layout = match &learner.layout().check {
        Some(check) if learner.layout().channels_last => format!(
            "channels-last layout (a checking pass matched NCHW's gradients to {:.0e})",
            check.worst_diff
        ),
        Some(check) if check.agrees() => {
            "contiguous (NCHW) layout (another rank's channels-last check failed)".into()
        }
        Some(check) => format!(
            "contiguous (NCHW) layout (a checking pass found channels-last's gradients off by {:.0e} in \
             `{}`)",
            check.worst_diff, check.worst_param
        ),
        None => "contiguous (NCHW) layout".into(),
    };
    let cache = if cache_images {
        "decoded images kept in memory after their first epoch"
    } else {
        "images decoded every epoch"
    };
    format!("computing in {precision}, {layout}; {cache}")
}

/// Writes the model and says where everything is.
fn finish(learner: &Learner, run: &Path, summary: &FitSummary, epochs: usize) -> Result<()> {
    save_model(learner, &run.join(MODEL_FILE))?;
    let done = summary.epochs.len();
    println!(
        "{} {done} of {epochs} epoch(s); wrote {}/{{{CONFIG_FILE}, metrics.csv, steps.csv, curves.png, timings.json, events.jsonl, {MODEL_FILE}, checkpoints/}}",
        if done < epochs { "stopped after" } else { "finished" },
        run.display()
    );
    Ok(())
}

fn save_model(learner: &Learner, path: &Path) -> Result<()> {
    let vars = checkpoint::model_tensors(&*learner.learn().model);
    let tmp = mix_io::temp_path_beside(path);
    if let Err(e) = Tensor::write_safetensors(&vars, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    Ok(mix_io::persist(&tmp, path)?)
}

/// `<out>/<UTC timestamp>`, with `-2`, `-3`, ... when runs start in the same second, once `out` is
/// known to be usable. Nothing is created here: the run folder is claimed after every other check.
fn free_run_dir(out: &Path) -> Result<PathBuf> {
    check_out(out)?;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let stamp = utc_stamp(secs);
    let mut run = out.join(&stamp);
    let mut n = 2;
    while run.exists() {
        run = out.join(format!("{stamp}-{n}"));
        n += 1;
    }
    Ok(run)
}

/// Fails, naming `--out` and its path once, unless `out` is a folder a run folder can be made in, or
/// can be created under the nearest folder that exists.
fn check_out(out: &Path) -> Result<()> {
    let fail = |why: String| {
        anyhow::anyhow!(
            "--out {}: {why}; expected a folder you can write to: pass another --out",
            out.display()
        )
    };
    if out.as_os_str().is_empty() {
        return Err(fail("the path is empty".into()));
    }
    // The nearest ancestor that exists is where the first folder would be created.
    let mut existing = out;
    loop {
        match std::fs::metadata(existing) {
            Ok(m) if m.is_dir() => break,
            Ok(_) if existing == out => return Err(fail("it is a file, not a folder".into())),
            Ok(_) => {
                return Err(fail(format!(
                    "{} is a file, not a folder",
                    existing.display()
                )))
            }
            // Not found, or below a file (ENOTDIR), or below a folder that cannot be searched:
            // the nearest ancestor that exists tells which.
            Err(e) if existing == Path::new(".") => {
                return Err(fail(format!("cannot read the current folder ({e})")))
            }
            Err(_) => {
                existing = match existing.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
            }
        }
    }
    // Permission bits do not tell (root, ACLs, read-only mounts): make a folder and remove it at once.
    let probe = existing.join(format!(".mix-train-probe-{}", std::process::id()));
    match std::fs::create_dir(&probe) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&probe);
            Ok(())
        }
        Err(e) if existing == out => Err(fail(format!("cannot create a folder in it ({e})"))),
        Err(e) => Err(fail(format!(
            "cannot create a folder in {}, its nearest existing folder ({e})",
            existing.display()
        ))),
    }
}

/// `YYYYMMDD-HHMMSS` in UTC for seconds since the Unix epoch (Howard Hinnant's `civil_from_days`).
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        // 2000-02-29 12:34:56 UTC, a leap day.
        assert_eq!(utc_stamp(951_827_696), "20000229-123456");
        // 2024-12-31 23:59:59 UTC.
        assert_eq!(utc_stamp(1_735_689_599), "20241231-235959");
    }
}

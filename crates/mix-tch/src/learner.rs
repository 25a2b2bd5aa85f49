//! fastai's `Learner` loop (fastai/learner.py) on tch: events around fit, epoch, train, validate, batch,
//! backward and step with cancellation; `fit_one_cycle`, `fine_tune`, `lr_find`; the recorder's
//! bookkeeping and resuming. What is shown and written (table, CSVs, curves, checkpoints, best model,
//! event log, timings) is done by callbacks the learner registers by default.

use crate::augment::{self, AugTransforms, IMAGENET_MEAN, IMAGENET_STD};
use crate::callback::{Callback, Cancel, Event};
use crate::checkpoint::{self, Checkpointer, Monitor, Progress, SaveBest};
use crate::collective::Collective;
use crate::data::BatchSource;
use crate::device::{self, DeviceChoice, Precision};
use crate::events::EventLog;
use crate::layout::{self, channels_last, Layout, MemoryFormat, CHECK_SIZE};
use crate::loss::{default_loss, LossFunc};
use crate::model::{Model, VisionModel};
use crate::optim::{Adam, AdamConfig, LossScaler};
pub use crate::recorder::TIMINGS_FILE;
use crate::recorder::{
    CsvLogger, EpochRow, EpochTiming, History, LoggedStep, ProgressTable, SmoothLoss, StepRow,
    TimingsFile,
};
use crate::schedule::{CombinedCos, FineTune, OneCycle};
use crate::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mix_core::stream::{stream_rng, Purpose};
use mix_data::Batch;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Everything about a learner that is fixed when it is built.
#[derive(Debug, Clone)]
pub struct LearnerConfig {
    /// Classes of the head.
    pub n_classes: usize,
    /// Where to train.
    pub device: DeviceChoice,
    /// fp32 (fastai's default), bf16 or fp16 autocast (CUDA only; fp16 with loss scaling), or auto.
    pub precision: Precision,
    /// Seeds the weights, the augmentation and mixing draws, dropout and nothing else.
    pub seed: u64,
    /// Batch augmentation; `None` feeds the images as they come (after scaling to [0, 1]).
    pub aug: Option<AugTransforms>,
    /// Per-channel `(mean, std)`; fastai adds ImageNet statistics for pretrained models.
    pub normalize: Option<([f64; 3], [f64; 3])>,
    /// torchvision ResNet18 weights (`.safetensors`); when given the body is frozen except BatchNorm.
    pub pretrained: Option<PathBuf>,
    /// Folder for `metrics.csv`, `steps.csv`, `curves.png`, `timings.json`, `events.jsonl`,
    /// `checkpoints/` and `best/`, each written by a callback registered when the learner is built;
    /// `None` writes nothing. In a data-parallel job (`collective`) only rank 0 writes it (and shows the
    /// progress bars and table); the other ranks read checkpoints from it to resume.
    pub run_dir: Option<PathBuf>,
    /// Keep the best model by this validation metric in `<run_dir>/best/` (fastai's
    /// `SaveModelCallback(monitor=...)`); `None` keeps only the last checkpoint.
    pub save_best: Option<Monitor>,
    /// Progress bars and the per-epoch table on the console.
    pub progress: bool,
    /// The loss (fastai's `loss_func`).
    pub loss_func: Arc<dyn LossFunc>,
    /// Adam's fixed hyper-parameters.
    pub adam: AdamConfig,
    /// Read the training losses back from the device every this many steps (1: every step, as fastai).
    /// The history, the smoothed loss and the progress bar's loss are updated then, and a NaN loss is
    /// caught then: at the latest at the end of the training pass, before validation and the checkpoint.
    /// Callbacks that read `smooth_loss` after every batch need 1 (lr_find uses 1 whatever this says).
    pub sync_every: usize,
    /// Synchronise a CUDA device at every phase boundary so that [`EpochTiming`]'s phases measure device
    /// time (costs throughput; CPU phases are exact either way).
    pub sync_timing: bool,
    /// The layout of inputs and convolution weights: NCHW (fastai's), channels_last (faster convolutions
    /// with oneDNN and cuDNN), or auto. channels_last and auto first check, on this model and device, that
    /// a channels_last pass gives NCHW's gradients ([`crate::layout::check_channels_last`]); explicit
    /// channels_last is refused where they disagree, auto then stays NCHW. In a data-parallel job every
    /// rank checks and the job runs channels_last only if every rank agreed.
    pub memory_format: MemoryFormat,
    /// The data-parallel job this learner is one rank of (mix-dist's process group); `None` trains alone.
    /// With one, the augmentation, mixing and dropout draws come from a stream of their own per rank
    /// (rank 0's is the single-process stream), and the logged training losses and the validation
    /// metrics are averaged over the ranks, so every rank records the same numbers and takes the same
    /// decisions (a NaN stop, the best model). Gradients are averaged by mix-dist's `Ddp` callback.
    pub collective: Option<Arc<dyn Collective>>,
}

impl LearnerConfig {
    /// The seed's setup: `aug_transforms(size=224)`, ImageNet normalisation, cross entropy, automatic device,
    /// seed 42, no pretrained weights, no run folder, console output on.
    pub fn new(n_classes: usize) -> Self {
        LearnerConfig {
            n_classes,
            device: DeviceChoice::Auto,
            precision: Precision::Fp32,
            seed: 42,
            aug: Some(augment::aug_transforms(224)),
            normalize: Some((IMAGENET_MEAN, IMAGENET_STD)),
            pretrained: None,
            run_dir: None,
            save_best: None,
            progress: true,
            loss_func: default_loss(),
            adam: AdamConfig::default(),
            sync_every: 16,
            sync_timing: false,
            memory_format: MemoryFormat::Contiguous,
            collective: None,
        }
    }
}

/// The learner's state as callbacks see and change it (the attributes of fastai's `Learner`).
#[derive(Debug)]
pub struct Learn {
    /// The model.
    pub model: Box<dyn Model>,
    /// The optimizer; `lr` and `mom` are set from the schedule before each training batch.
    pub opt: Adam,
    /// The loss function in use (a mixing callback swaps it during training).
    pub loss_func: Arc<dyn LossFunc>,
    /// The device of the model and the batches.
    pub device: Device,
    /// Training (true) or validating (false).
    pub training: bool,
    /// Current epoch of this fit, 0-based.
    pub epoch: usize,
    /// Epochs in this fit.
    pub n_epoch: usize,
    /// Epochs of earlier fits of the same run (`fine_tune`'s frozen phase); the run's history numbers
    /// epochs from the run's start, `epoch_offset + epoch`.
    pub epoch_offset: usize,
    /// Batch index within the current pass.
    pub iter: usize,
    /// Batches in the current pass.
    pub n_iter: usize,
    /// Training steps done in this fit (the recorded history numbers steps from the run's start).
    pub train_iter: usize,
    /// Fraction of training done, the schedule's position.
    pub pct_train: f64,
    /// The input batch (after augmentation and normalisation; callbacks may replace it in `before_batch`).
    pub xb: Tensor,
    /// The targets as the loss takes them.
    pub yb: Tensor,
    /// The class indices of the batch (for the error rate).
    pub labels: Tensor,
    /// The model's output.
    pub pred: Tensor,
    /// The loss to differentiate (fastai's `loss_grad`); callbacks may replace it in `after_loss`.
    pub loss_grad: Tensor,
    /// The smoothed training loss.
    pub smooth_loss: SmoothLoss,
    /// The rng for this epoch's augmentation, mixing and dropout draws (derived from seed and epoch).
    pub rng: ChaCha8Rng,
    /// The one-cycle schedule of the current fit (what a checkpoint records to resume it).
    pub sched: OneCycle,
    /// The loss scaler, when training in fp16.
    pub scaler: Option<LossScaler>,
    /// What the run recorded: steps, epochs, timings, checkpoints.
    pub history: History,
    /// Whether this fit records (false during lr_find and `validate()`, fastai's `no_logging`): the
    /// recording callbacks write nothing then.
    pub logging: bool,
    /// The row of the epoch that just finished, from the end of its validation to the start of the next
    /// epoch; `None` for a cancelled epoch and when not logging. The recording callbacks act on it at
    /// `after_epoch`.
    pub epoch_row: Option<EpochRow>,
}

impl Learn {
    /// Whether the run starts afresh, with no step, epoch or earlier fit behind it (false for a resumed
    /// run and for `fine_tune`'s second fit).
    pub fn is_fresh(&self) -> bool {
        self.epoch_offset == 0
            && self.train_iter == 0
            && self.history.steps.is_empty()
            && self.history.epochs.is_empty()
    }
}

/// What a fit did.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSummary {
    /// Every epoch of the run so far (including epochs done before a resume).
    pub epochs: Vec<EpochRow>,
    /// Training steps done in the run so far.
    pub train_iter: usize,
    /// Optimizer steps skipped because of inf/NaN gradients (mixed precision only).
    pub skipped_steps: u64,
    /// The last checkpoint written.
    pub last_checkpoint: Option<PathBuf>,
}

struct Slot {
    cb: Box<dyn Callback>,
    temporary: bool,
}

struct Core {
    learn: Learn,
    cbs: Vec<Slot>,
    cfg: LearnerConfig,
    /// Per parameter group, the learning-rate schedule of this fit; `None` leaves the learning rate and
    /// momentum to callbacks (lr_find).
    lr_scheds: Option<Vec<CombinedCos>>,
    /// Set when the current fit was cancelled (a callback's `Cancel::Fit`).
    fit_cancelled: bool,
    /// No epoch table, no run-folder files (lr_find's `no_logging`).
    quiet: bool,
    /// The precision in use (never `Auto`) and its autocast dtype (`None`: float32).
    precision: Precision,
    autocast: Option<Kind>,
    /// The layout in use and the check that chose it.
    layout: Layout,
    /// The current batch's loss, still on the device.
    batch_loss: Option<Tensor>,
    /// Training losses not yet read back, with their step rows (loss and smoothed loss filled when read).
    pending: Vec<Pending>,
    /// The normalisation's mean and std on the device, made once.
    norm: Option<(Tensor, Tensor)>,
    /// Read losses back every this many steps: `cfg.sync_every`, or 1 during lr_find.
    sync_every: usize,
    valid: ValidSums,
    bar: ProgressBar,
}

/// A training loss not yet read back, with its step row (loss and smoothed loss filled when read), its
/// step count, every group's learning rate and when it was queued.
struct Pending {
    loss: Tensor,
    row: StepRow,
    train_iter: usize,
    lrs: Vec<f64>,
    at: Instant,
}

/// fastai's `Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=[error_rate])` over any
/// [`Model`]; [`Learner::new`] builds fastai's `vision_learner(dls, resnet18)`.
pub struct Learner {
    train: Box<dyn BatchSource>,
    valid: Box<dyn BatchSource>,
    core: Core,
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner")
            .field("cfg", &self.core.cfg)
            .field("device", &self.core.learn.device)
            .finish_non_exhaustive()
    }
}

/// The rng of epoch `epoch`'s augmentation, mix params and dropout masks: its own stream
/// (`Purpose::LearnerEpoch`), apart from the initial weights and from every loader's shuffles. Rank `r`
/// of a data-parallel job draws from stream `epoch + r * 2^40`, so ranks mix differently (as PyTorch's
/// per-process generators do) and rank 0 draws what a single process draws.
fn epoch_rng(seed: u64, epoch: usize, rank: usize) -> ChaCha8Rng {
    stream_rng(
        seed,
        Purpose::LearnerEpoch,
        epoch as u64 + ((rank as u64) << 40),
    )
}

/// This learner's rank in its data-parallel job (0 when it trains alone).
fn rank_of(cfg: &LearnerConfig) -> usize {
    cfg.collective.as_ref().map_or(0, |c| c.rank())
}

impl Learner {
    /// fastai's `vision_learner(dls, resnet18)`: builds the ResNet18 model on the configured device
    /// (pretrained and frozen when weights are given), then [`Learner::with_model`].
    pub fn new(
        train: Box<dyn BatchSource>,
        valid: Box<dyn BatchSource>,
        cfg: LearnerConfig,
    ) -> Result<Self> {
        let device = cfg.device.resolve()?;
        device::prepare(device);
        let mut init_rng = stream_rng(cfg.seed, Purpose::InitWeights, 0);
        let model = VisionModel::new(cfg.n_classes, device, &mut init_rng)?;
        Self::with_model(train, valid, Box::new(model), cfg)
    }

    /// fastai's `Learner(dls, model)`: trains the caller's `model`, which must live on the configured
    /// device and have `cfg.n_classes` outputs. Loads `cfg.pretrained` into it when set (through
    /// [`Model::load_pretrained`]) and builds Adam over its parameter groups. With a run folder, registers
    /// the recording callbacks ([`CsvLogger`], [`Checkpointer`], [`SaveBest`] when `cfg.save_best` is set,
    /// [`EventLog`], [`TimingsFile`]); with `cfg.progress`, the [`ProgressTable`].
    pub fn with_model(
        train: Box<dyn BatchSource>,
        valid: Box<dyn BatchSource>,
        mut model: Box<dyn Model>,
        cfg: LearnerConfig,
    ) -> Result<Self> {
        let device = cfg.device.resolve()?;
        let precision = cfg.precision.resolve(device)?;
        device::prepare(device);
        if model.device() != device {
            return Err(Error::Invalid(format!(
                "expected the model on the configured device {}, found it on {}; build it on the same device",
                device_name(device),
                device_name(model.device())
            )));
        }
        if model.n_classes() != cfg.n_classes {
            return Err(Error::Invalid(format!(
                "expected a model with the configured {} classes, found {}",
                cfg.n_classes,
                model.n_classes()
            )));
        }
        if let Some(path) = &cfg.pretrained {
            model.load_pretrained(path)?;
        }
        let layout = choose_layout(&cfg, &*model)?;
        if layout.channels_last {
            layout::set_layout(&*model, true)?;
        }
        let opt = Adam::new(&*model, cfg.adam);
        let learn = Learn {
            model,
            opt,
            loss_func: cfg.loss_func.clone(),
            device,
            training: false,
            epoch: 0,
            n_epoch: 0,
            epoch_offset: 0,
            iter: 0,
            n_iter: 0,
            train_iter: 0,
            pct_train: 0.0,
            xb: Tensor::new(),
            yb: Tensor::new(),
            labels: Tensor::new(),
            pred: Tensor::new(),
            loss_grad: Tensor::new(),
            smooth_loss: SmoothLoss::default(),
            rng: epoch_rng(cfg.seed, 0, rank_of(&cfg)),
            sched: OneCycle::default(),
            scaler: (precision == Precision::Fp16).then(LossScaler::default),
            history: History::default(),
            logging: false,
            epoch_row: None,
        };
        let mut core = Core {
            learn,
            cbs: Vec::new(),
            lr_scheds: None,
            fit_cancelled: false,
            quiet: false,
            precision,
            autocast: precision.autocast_kind(),
            layout,
            batch_loss: None,
            pending: Vec::new(),
            norm: cfg
                .normalize
                .map(|(mean, std)| (stats(mean, device), stats(std, device))),
            sync_every: cfg.sync_every.max(1),
            valid: ValidSums::new(device),
            bar: ProgressBar::hidden(),
            cfg,
        };
        for cb in default_callbacks(&core.cfg) {
            core.insert(cb, false);
        }
        Ok(Learner { train, valid, core })
    }

    /// The state callbacks see.
    pub fn learn(&self) -> &Learn {
        &self.core.learn
    }

    /// The state callbacks see, mutable (to freeze, unfreeze or swap the loss between fits).
    pub fn learn_mut(&mut self) -> &mut Learn {
        &mut self.core.learn
    }

    /// The precision the passes run in: the configured one, `Auto` resolved against the device.
    pub fn precision(&self) -> Precision {
        self.core.precision
    }

    /// The layout the passes run in, and the channels_last check behind it when there was one.
    pub fn layout(&self) -> &Layout {
        &self.core.layout
    }

    /// The configuration.
    pub fn config(&self) -> &LearnerConfig {
        &self.core.cfg
    }

    /// Every training step recorded in the current run.
    pub fn steps(&self) -> &[StepRow] {
        &self.core.learn.history.steps
    }

    /// Where each epoch's time went (also `timings.json` in the run folder).
    pub fn timings(&self) -> &[EpochTiming] {
        &self.core.learn.history.timings
    }

    /// Every epoch recorded in the current run.
    pub fn epochs(&self) -> &[EpochRow] {
        &self.core.learn.history.epochs
    }

    /// The names of the registered callbacks in the order they run (the defaults included).
    pub fn callback_names(&self) -> Vec<String> {
        self.core
            .cbs
            .iter()
            .map(|s| s.cb.name().to_owned())
            .collect()
    }

    /// Removes every registered callback named `name` (fastai's `remove_cb`), the defaults included;
    /// returns how many were removed.
    pub fn remove_callback(&mut self, name: &str) -> usize {
        let before = self.core.cbs.len();
        self.core.cbs.retain(|s| s.cb.name() != name);
        before - self.core.cbs.len()
    }

    /// Adds a callback for every later fit (fastai's `add_cb`).
    pub fn add_callback(&mut self, cb: Box<dyn Callback>) {
        self.core.insert(cb, false);
    }

    /// fastai's `fit_one_cycle(n_epoch, lr_max, ..., cbs=cbs)`: trains `n_epoch` epochs following `sched`;
    /// `cbs` run for this fit only. Writes the run folder and a checkpoint after every epoch when configured.
    pub fn fit_one_cycle(
        &mut self,
        n_epoch: usize,
        sched: OneCycle,
        cbs: Vec<Box<dyn Callback>>,
    ) -> Result<FitSummary> {
        sched.validate()?;
        if n_epoch == 0 {
            return Err(Error::Invalid(
                "expected at least one epoch to fit, found 0".into(),
            ));
        }
        self.clear_history();
        self.with_fit_callbacks(cbs, |l| l.fit_phase(n_epoch, 0, Some(sched)))?;
        Ok(self.summary())
    }

    /// fastai's `fine_tune(epochs, base_lr, freeze_epochs, lr_mult, pct_start, div)`: freeze the body,
    /// `fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99)`, halve `base_lr`, unfreeze,
    /// `fit_one_cycle(epochs, slice(base_lr/lr_mult, base_lr), pct_start, div)`. `cbs` run in both fits.
    /// The run's history (table, CSVs, checkpoints) numbers the second fit's epochs after the first's.
    pub fn fine_tune(
        &mut self,
        epochs: usize,
        ft: FineTune,
        cbs: Vec<Box<dyn Callback>>,
    ) -> Result<FitSummary> {
        ft.validate()?;
        if epochs == 0 {
            return Err(Error::Invalid(
                "expected at least one epoch to fine-tune, found 0".into(),
            ));
        }
        self.clear_history();
        self.core.learn.model.freeze_body();
        let frozen = (ft.freeze_epochs > 0).then(|| (ft.freeze_epochs, 0, ft.frozen_phase()));
        self.fine_tune_from(epochs, ft, cbs, frozen, true)
    }

    /// Continues a `fine_tune(epochs, ft)` run in `run_dir` from its newest checkpoint: the rest of the
    /// phase it stopped in, then the unfrozen phase if it stopped in the frozen one.
    pub fn resume_fine_tune(
        &mut self,
        epochs: usize,
        ft: FineTune,
        cbs: Vec<Box<dyn Callback>>,
    ) -> Result<FitSummary> {
        ft.validate()?;
        let progress = self.load_latest_checkpoint()?;
        let in_frozen_phase = ft.freeze_epochs > 0 && progress.epoch_offset == 0;
        let rest = (progress.n_epoch, progress.epochs_done, progress.sched);
        self.fine_tune_from(epochs, ft, cbs, Some(rest), in_frozen_phase)
    }

    /// The rest of a `fine_tune`: first the fit `(n_epoch, start_epoch, schedule)` if it has epochs
    /// left, then, when `then_unfrozen`, the unfrozen fit, all with `cbs`; stops early when a callback
    /// cancels a fit.
    fn fine_tune_from(
        &mut self,
        epochs: usize,
        ft: FineTune,
        cbs: Vec<Box<dyn Callback>>,
        first: Option<(usize, usize, OneCycle)>,
        then_unfrozen: bool,
    ) -> Result<FitSummary> {
        self.with_fit_callbacks(cbs, |l| {
            if let Some((n_epoch, start, sched)) = first {
                if start < n_epoch && !l.fit_phase(n_epoch, start, Some(sched))? {
                    return Ok(false);
                }
            }
            if !then_unfrozen {
                return Ok(true);
            }
            l.start_unfrozen_phase(&ft);
            l.fit_phase(epochs, 0, Some(ft.unfrozen_phase()))
        })?;
        Ok(self.summary())
    }

    /// fastai's `lr_find`: a mock training whose learning rate grows exponentially from `cfg.start_lr`
    /// to `cfg.end_lr` over `cfg.num_it` steps (no validation, no table, no run-folder files), stopped
    /// early when the smoothed loss passes 4 times its minimum (or turns non-finite). The model, the
    /// optimizer and the recorded history are restored afterwards, bit for bit.
    pub fn lr_find(&mut self, cfg: LrFind) -> Result<LrFindResult> {
        cfg.validate()?;
        let n_batches = self.train.num_batches();
        if n_batches == 0 {
            return Err(Error::Data(
                "lr_find needs at least one training batch, found none".into(),
            ));
        }
        let num_it = cfg.num_it.max(6);
        let n_epoch = num_it / n_batches + 1;
        let saved = self.save_state();
        self.core.quiet = true;
        // LRFinder reads the smoothed loss after every batch.
        self.core.sync_every = 1;
        self.clear_history();
        let finder = LrFinder {
            start_lr: cfg.start_lr,
            end_lr: cfg.end_lr,
            num_it,
            stop_div: cfg.stop_div,
            best: f64::INFINITY,
        };
        let result =
            self.with_fit_callbacks(vec![Box::new(finder)], |l| l.fit_phase(n_epoch, 0, None));
        let steps = &self.core.learn.history.steps;
        let lrs: Vec<f64> = steps.iter().map(|s| s.lr).collect();
        let losses: Vec<f64> = steps.iter().map(|s| s.smooth_loss).collect();
        self.restore_state(saved)?;
        match result {
            // A loss that turns inf or NaN ends the search like a diverging one.
            Ok(_) | Err(Error::NonFiniteLoss { .. }) => {}
            Err(e) => return Err(e),
        }
        let valley = suggest_valley(&lrs, &losses, num_it);
        Ok(LrFindResult {
            lrs,
            losses,
            valley,
        })
    }

    fn clear_history(&mut self) {
        let core = &mut self.core;
        core.learn.history.steps.clear();
        core.learn.history.epochs.clear();
        core.learn.history.resumed_from = None;
        core.learn.history.best = None;
        core.learn.epoch_offset = 0;
        core.learn.smooth_loss = SmoothLoss::default();
        core.learn.train_iter = 0;
        core.learn.pct_train = 0.0;
    }

    /// Between `fine_tune`'s fits: the second fit's epochs come after the first's, the body trains.
    fn start_unfrozen_phase(&mut self, ft: &FineTune) {
        let learn = &mut self.core.learn;
        learn.epoch_offset = ft.freeze_epochs;
        learn.model.unfreeze();
    }

    /// Everything lr_find changes, deep-copied.
    fn save_state(&self) -> SavedState {
        let learn = &self.core.learn;
        SavedState {
            vars: learn
                .model
                .variables()
                .into_iter()
                .map(|(n, t)| (n, t.detach().copy()))
                .collect(),
            opt: learn.opt.snapshot(),
            steps: learn.history.steps.clone(),
            epochs: learn.history.epochs.clone(),
            smooth: learn.smooth_loss,
            train_iter: learn.train_iter,
            epoch_offset: learn.epoch_offset,
            last_checkpoint: learn.history.last_checkpoint.clone(),
        }
    }

    fn restore_state(&mut self, saved: SavedState) -> Result<()> {
        let core = &mut self.core;
        core.quiet = false;
        core.sync_every = core.cfg.sync_every.max(1);
        let vars = core.learn.model.variables();
        for (name, src) in &saved.vars {
            let mut dst = vars[name].shallow_clone();
            tch::no_grad(|| dst.f_copy_(src))?;
        }
        core.learn.opt.restore(saved.opt);
        core.learn.opt.zero_grad();
        core.learn.history.steps = saved.steps;
        core.learn.history.epochs = saved.epochs;
        core.learn.smooth_loss = saved.smooth;
        core.learn.train_iter = saved.train_iter;
        core.learn.epoch_offset = saved.epoch_offset;
        core.learn.history.last_checkpoint = saved.last_checkpoint;
        Ok(())
    }

    /// Continues the run in `run_dir` from its newest checkpoint: weights, optimizer state, schedule
    /// position and history are restored, and the remaining epochs of the same one-cycle schedule run.
    pub fn resume(&mut self, cbs: Vec<Box<dyn Callback>>) -> Result<FitSummary> {
        let progress = self.load_latest_checkpoint()?;
        if progress.epochs_done >= progress.n_epoch {
            return Ok(self.summary());
        }
        self.with_fit_callbacks(cbs, |l| {
            l.fit_phase(progress.n_epoch, progress.epochs_done, Some(progress.sched))
        })?;
        Ok(self.summary())
    }

    fn load_latest_checkpoint(&mut self) -> Result<Progress> {
        let root = self.checkpoint_root().ok_or_else(|| {
            Error::Invalid(
                "resuming needs a run folder: set LearnerConfig::run_dir to the run to continue"
                    .into(),
            )
        })?;
        let dir = checkpoint::latest(&root)?.ok_or_else(|| Error::Checkpoint {
            path: root.clone(),
            problem: "no checkpoint to resume from; start the run with fit_one_cycle".into(),
        })?;
        self.load_checkpoint(&dir)
    }

    /// Restores weights, optimizer state, schedule position and history from checkpoint folder `dir`.
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<Progress> {
        let loaded = checkpoint::load(dir)?;
        let p = loaded.progress;
        let core = &mut self.core;
        let fail = |problem: String| Error::Checkpoint {
            path: dir.to_path_buf(),
            problem,
        };
        if p.n_classes != core.cfg.n_classes {
            return Err(fail(format!(
                "expected a model with {} classes, found {}; resume with the same data",
                core.cfg.n_classes, p.n_classes
            )));
        }
        let vars = core.learn.model.variables();
        for (name, var) in &vars {
            let src = loaded
                .model
                .get(name)
                .ok_or_else(|| fail(format!("model variable {name} missing")))?;
            if src.size() != var.size() {
                return Err(fail(format!(
                    "{name}: expected shape {:?}, found {:?}",
                    var.size(),
                    src.size()
                )));
            }
            let mut dst = var.shallow_clone();
            tch::no_grad(|| dst.f_copy_(&src.to_device(var.device())))?;
        }
        if p.frozen {
            core.learn.model.freeze_body();
        } else {
            core.learn.model.unfreeze();
        }
        core.learn.opt.load_state(&loaded.optimizer, &p.opt_steps)?;
        core.learn.opt.cfg = p.adam;
        core.learn.train_iter = p.train_iter;
        core.learn.epoch_offset = p.epoch_offset;
        core.learn.smooth_loss = p.smooth;
        if core.learn.scaler.is_some() {
            core.learn.scaler = Some(p.scaler.clone().unwrap_or_default());
        }
        core.learn.history.steps = p.steps.clone();
        core.learn.history.epochs = p.epochs.clone();
        // Earlier epochs' timings are diagnostics: kept when readable, never a reason to refuse a resume.
        core.learn.history.timings = core
            .cfg
            .run_dir
            .as_ref()
            .and_then(|d| std::fs::read(d.join(TIMINGS_FILE)).ok())
            .and_then(|b| serde_json::from_slice::<Vec<EpochTiming>>(&b).ok())
            .unwrap_or_default();
        core.learn.history.last_checkpoint = Some(dir.to_path_buf());
        core.learn.history.resumed_from = Some(dir.to_path_buf());
        Ok(p)
    }

    /// fastai's `validate()`: `before_fit`, `before_epoch`, one pass over the validation data with its
    /// events, `after_epoch`, `after_fit`; returns `(valid_loss, error_rate)`.
    pub fn validate(&mut self) -> Result<(f64, f64)> {
        let valid = &*self.valid;
        let core = &mut self.core;
        core.learn.training = false;
        core.learn.logging = false;
        core.learn.epoch_row = None;
        core.event(Event::BeforeFit)?;
        core.event(Event::BeforeEpoch)?;
        core.do_validate(valid)?;
        core.event(Event::AfterEpoch)?;
        core.event(Event::AfterFit)?;
        core.bar.finish_and_clear();
        core.valid_metrics()
    }

    fn checkpoint_root(&self) -> Option<PathBuf> {
        self.core
            .cfg
            .run_dir
            .as_ref()
            .map(|d| d.join("checkpoints"))
    }

    fn summary(&self) -> FitSummary {
        FitSummary {
            epochs: self.core.learn.history.epochs.clone(),
            train_iter: self.core.learn.train_iter,
            skipped_steps: self.core.learn.scaler.as_ref().map_or(0, |s| s.skipped),
            last_checkpoint: self.core.learn.history.last_checkpoint.clone(),
        }
    }

    /// Adds `cbs` for the duration of `body` (fastai's `fit(cbs=...)`), then removes them, whatever
    /// `body` returns.
    fn with_fit_callbacks<T>(
        &mut self,
        cbs: Vec<Box<dyn Callback>>,
        body: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        for cb in cbs {
            self.core.insert(cb, true);
        }
        let result = body(self);
        self.core.bar.finish_and_clear();
        self.core.cbs.retain(|s| !s.temporary);
        result
    }

    /// One fit from epoch `start_epoch` to `n_epoch` (fastai's `fit`): the events, the epochs, the
    /// table. `sched` drives learning rate and momentum; `None` leaves them to the callbacks. Returns
    /// whether the fit ran to its end (false when a callback cancelled it).
    fn fit_phase(
        &mut self,
        n_epoch: usize,
        start_epoch: usize,
        sched: Option<OneCycle>,
    ) -> Result<bool> {
        let core = &mut self.core;
        if start_epoch == 0 {
            // fastai's TrainEvalCallback and Recorder `before_fit`: each fit counts its own steps and
            // smooths its own loss.
            core.learn.train_iter = 0;
            core.learn.pct_train = 0.0;
            core.learn.smooth_loss = SmoothLoss::default();
        }
        core.fit_cancelled = false;
        core.lr_scheds = sched.map(|s| s.lr_scheds(core.learn.opt.n_groups()));
        if let Some(sched) = sched {
            core.learn.sched = sched;
            core.learn.opt.wd = sched.wd;
        }
        core.learn.n_epoch = n_epoch;
        core.learn.logging = !core.quiet;
        core.learn.epoch_row = None;
        if !core.quiet && rank_of(&core.cfg) == 0 {
            if let Some(dir) = &core.cfg.run_dir {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::io("creating the run folder", dir, e))?;
            }
        }
        let (train, valid) = (&*self.train, &*self.valid);
        let core = &mut self.core;
        core.with_events(
            Cancel::Fit,
            |core| {
                for epoch in start_epoch..n_epoch {
                    core.learn.epoch = epoch;
                    core.learn.epoch_row = None;
                    core.learn.history.timing_closed = false;
                    let done = core.with_events(
                        Cancel::Epoch,
                        |core| core.do_epoch(train, valid),
                        |_| Ok(()),
                    );
                    // Without a timings callback (no run folder) the timing is still kept in memory.
                    if core.learn.epoch_row.is_some() {
                        core.learn.history.close_timing();
                    }
                    done?;
                }
                Ok(())
            },
            |_| Ok(()),
        )?;
        self.core.bar.finish_and_clear();
        Ok(!self.core.fit_cancelled)
    }
}

/// What lr_find puts back.
struct SavedState {
    vars: Vec<(String, Tensor)>,
    opt: crate::optim::AdamSnapshot,
    steps: Vec<StepRow>,
    epochs: Vec<EpochRow>,
    smooth: SmoothLoss,
    train_iter: usize,
    epoch_offset: usize,
    last_checkpoint: Option<PathBuf>,
}

/// fastai's `lr_find` arguments, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrFind {
    /// Learning rate of the first step (fastai 1e-7).
    pub start_lr: f64,
    /// Learning rate the schedule would reach at step `num_it` (fastai 10).
    pub end_lr: f64,
    /// Steps of the search (fastai 100; fewer than 6 count as 6, as in fastai).
    pub num_it: usize,
    /// Stop when the smoothed loss passes 4 times its minimum (fastai `stop_div=True`).
    pub stop_div: bool,
}

impl Default for LrFind {
    fn default() -> Self {
        LrFind {
            start_lr: 1e-7,
            end_lr: 10.0,
            num_it: 100,
            stop_div: true,
        }
    }
}

impl LrFind {
    /// Checks `0 < start_lr < end_lr`, both finite.
    pub fn validate(&self) -> Result<()> {
        if self.start_lr.is_finite()
            && self.end_lr.is_finite()
            && self.start_lr > 0.0
            && self.end_lr > self.start_lr
        {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "expected lr_find rates with 0 < start_lr < end_lr, found start_lr {} and end_lr {}",
                self.start_lr, self.end_lr
            )))
        }
    }
}

/// What lr_find recorded: per step, the learning rate and the smoothed loss (fastai's
/// `recorder.lrs` and `recorder.losses`), and fastai's default suggestion.
#[derive(Debug, Clone, PartialEq)]
pub struct LrFindResult {
    /// Learning rate of every step run.
    pub lrs: Vec<f64>,
    /// Smoothed training loss after every step run.
    pub losses: Vec<f64>,
    /// fastai's `valley` suggestion as `(lr, loss)`; `None` when too few steps ran to suggest one
    /// (fastai fails there).
    pub valley: Option<(f64, f64)>,
}

/// fastai's `LRFinder` callback: sets the exponential learning rate before each training batch,
/// cancels validation, stops on divergence or after `num_it` steps.
#[derive(Debug)]
struct LrFinder {
    start_lr: f64,
    end_lr: f64,
    num_it: usize,
    stop_div: bool,
    best: f64,
}

impl Callback for LrFinder {
    fn name(&self) -> &str {
        "LRFinder"
    }

    fn order(&self) -> i32 {
        // After the recorder (fastai: ParamScheduler order 60 > Recorder 50).
        60
    }

    fn run_valid(&self) -> bool {
        false
    }

    fn on(&mut self, event: Event, learn: &mut Learn) -> Result<()> {
        match event {
            Event::BeforeBatch => {
                let pos = learn.train_iter as f64 / self.num_it as f64;
                // fastai's SchedExp: start * (end/start) ** pos.
                learn
                    .opt
                    .set_lr(self.start_lr * (self.end_lr / self.start_lr).powf(pos));
                Ok(())
            }
            Event::AfterBatch => {
                let smooth = learn.smooth_loss.value();
                if smooth < self.best {
                    self.best = smooth;
                }
                if (self.stop_div && smooth > 4.0 * self.best) || learn.train_iter >= self.num_it {
                    return Cancel::Fit.err();
                }
                Ok(())
            }
            Event::BeforeValidate => Cancel::Validate.err(),
            _ => Ok(()),
        }
    }
}

/// fastai's suggestion from an lr_find run: its `valley` on the steps `num_it/10 .. len-5`, cut at the
/// first NaN loss. `None` when nothing is left to suggest from.
pub fn suggest_valley(lrs: &[f64], losses: &[f64], num_it: usize) -> Option<(f64, f64)> {
    let n = lrs.len().min(losses.len());
    let (start, end) = (num_it / 10, n.saturating_sub(5));
    if start >= end {
        return None;
    }
    let (mut lrs, mut losses) = (&lrs[start..end], &losses[start..end]);
    if let Some(nan) = losses.iter().position(|l| l.is_nan()) {
        lrs = &lrs[..nan];
        losses = &losses[..nan];
    }
    if losses.is_empty() {
        return None;
    }
    let idx = valley_index(losses);
    Some((lrs[idx], losses[idx]))
}

/// fastai's `valley`: the longest decreasing subsequence of the losses (computed as fastai does, with
/// its bookkeeping of where that valley starts) and the index `max_start + int(len/3) + int(len/3/2)`,
/// about half way down it.
pub fn valley_index(losses: &[f64]) -> usize {
    let n = losses.len();
    // Signed, as in Python: `max_start` is -1 when the valley starts at the first point, and a
    // negative index then counts from the end, as Python's `lrs[idx]` does.
    let (mut max_start, mut max_end) = (0isize, 0usize);
    let mut lds = vec![1usize; n];
    for i in 1..n {
        for j in 0..i {
            if losses[i] < losses[j] && lds[i] < lds[j] + 1 {
                lds[i] = lds[j] + 1;
            }
            if lds[max_end] < lds[i] {
                max_end = i;
                max_start = max_end as isize - lds[max_end] as isize;
            }
        }
    }
    let sections = (max_end as isize - max_start) as f64 / 3.0;
    let idx = max_start + sections as isize + (sections / 2.0) as isize;
    if idx < 0 {
        (idx + n as isize).max(0) as usize
    } else {
        (idx as usize).min(n.saturating_sub(1))
    }
}

impl Core {
    fn insert(&mut self, cb: Box<dyn Callback>, temporary: bool) {
        let order = cb.order();
        let at = self
            .cbs
            .iter()
            .position(|s| s.cb.order() > order)
            .unwrap_or(self.cbs.len());
        self.cbs.insert(at, Slot { cb, temporary });
    }

    fn event(&mut self, event: Event) -> Result<()> {
        let started = Instant::now();
        let training = self.learn.training;
        for slot in &mut self.cbs {
            let cb = &mut slot.cb;
            if event.is_inner_loop()
                && !((cb.run_train() && training) || (cb.run_valid() && !training))
            {
                continue;
            }
            cb.on(event, &mut self.learn)?;
        }
        if event == Event::BeforeBatch {
            self.lap(started, |t| &mut t.mixing_s);
        }
        Ok(())
    }

    /// fastai's `_with_events`: `before_x`, the body, `after_cancel_x` if the body cancelled this level,
    /// then `after_x`. A cancellation of an outer level passes through untouched, as in fastai. Any other
    /// error also sends `after_cancel_x` (so callbacks can restore what they changed) and is returned.
    fn with_events(
        &mut self,
        kind: Cancel,
        body: impl FnOnce(&mut Self) -> Result<()>,
        before_after: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<()> {
        let (before, after_cancel, after) = kind.events();
        match self.event(before).and_then(|()| body(self)) {
            Ok(()) => {}
            Err(Error::Cancel(k)) if k == kind => {
                if kind == Cancel::Fit {
                    self.fit_cancelled = true;
                }
                self.event(after_cancel)?
            }
            Err(Error::Cancel(k)) => return Err(Error::Cancel(k)),
            Err(e) => {
                // The original error matters more than one raised while cleaning up.
                let _ = self.event(after_cancel);
                return Err(e);
            }
        }
        before_after(self)?;
        self.event(after)
    }

    fn new_bar(&mut self, n: usize, what: &str) {
        self.bar.finish_and_clear();
        self.bar = if self.cfg.progress && rank_of(&self.cfg) == 0 {
            let bar = ProgressBar::new(n as u64);
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(format!(
                "epoch {}/{} {what}",
                self.learn.epoch + 1,
                self.learn.n_epoch
            ));
            bar
        } else {
            ProgressBar::hidden()
        };
    }

    fn do_epoch(&mut self, train: &dyn BatchSource, valid: &dyn BatchSource) -> Result<()> {
        self.learn.history.epoch_start = Some(Instant::now());
        self.learn.history.fresh_steps.clear();
        let epoch = self.learn.epoch;
        // The run's epoch number: fine_tune's second fit does not repeat the first fit's draws.
        self.learn.rng = epoch_rng(
            self.cfg.seed,
            self.learn.epoch_offset + epoch,
            rank_of(&self.cfg),
        );
        self.learn.training = true;
        self.learn.pct_train = epoch as f64 / self.learn.n_epoch as f64;
        self.learn.history.timing = EpochTiming {
            epoch: self.learn.epoch_offset + epoch,
            device: device_name(self.learn.device),
            ..EpochTiming::default()
        };
        let started = self.now();
        let trained = self.with_events(Cancel::Train, |core| core.all_batches(train), |_| Ok(()));
        // Losses of a pass cut short are still recorded (and a NaN among them still stops the run).
        let flushed = self.flush_losses();
        trained.and(flushed)?;
        self.learn.history.timing.train_s = started.elapsed().as_secs_f64();
        let started = self.now();
        self.do_validate(valid)?;
        self.learn.history.timing.valid_s = started.elapsed().as_secs_f64();
        self.end_epoch()
    }

    fn do_validate(&mut self, valid: &dyn BatchSource) -> Result<()> {
        self.learn.training = false;
        self.valid = ValidSums::new(self.learn.device);
        let _guard = tch::no_grad_guard();
        self.with_events(Cancel::Validate, |core| core.all_batches(valid), |_| Ok(()))
    }

    /// Validation loss and error rate, read back from the device once per pass.
    fn valid_metrics(&self) -> Result<(f64, f64)> {
        let v = &self.valid;
        // A rank with nothing to validate still joins the reduction the others wait in.
        if v.n == 0 && self.cfg.collective.is_none() {
            return Ok((f64::NAN, f64::NAN));
        }
        let count = Tensor::from_slice(&[v.n as f64]).f_to_device(self.learn.device)?;
        let sums = Tensor::cat(&[&v.loss, &v.wrong, &count], 0);
        if let Some(ranks) = &self.cfg.collective {
            // Each rank validated its own shard: the job's metrics are the sums over all of them.
            ranks.sum(&[&sums])?;
        }
        let sums = sums.f_to_device(Device::Cpu)?;
        let (loss, wrong, n) = (
            sums.f_double_value(&[0])?,
            sums.f_double_value(&[1])?,
            sums.f_double_value(&[2])?,
        );
        if n == 0.0 {
            return Ok((f64::NAN, f64::NAN));
        }
        Ok((loss / n, wrong / n))
    }

    /// The current instant, after waiting for the device's queued work when phases are timed on CUDA.
    fn now(&self) -> Instant {
        if self.cfg.sync_timing {
            if let Device::Cuda(i) = self.learn.device {
                tch::Cuda::synchronize(i as i64);
            }
        }
        Instant::now()
    }

    /// Adds the time since `started` to a training phase (validation is timed as a whole).
    fn lap(&mut self, started: Instant, phase: fn(&mut EpochTiming) -> &mut f64) {
        if self.learn.training {
            *phase(&mut self.learn.history.timing) +=
                self.now().duration_since(started).as_secs_f64();
        }
    }

    fn all_batches(&mut self, src: &dyn BatchSource) -> Result<()> {
        self.learn.n_iter = src.num_batches();
        let what = if self.learn.training {
            "train"
        } else {
            "valid"
        };
        self.new_bar(self.learn.n_iter, what);
        if let Some((images, labels)) = src.resident() {
            let top = labels.f_max()?.f_int64_value(&[])?;
            if top < 0 || top as usize >= self.cfg.n_classes {
                return Err(Error::Data(format!(
                    "expected labels below the {} classes of the head, found {top}",
                    self.cfg.n_classes
                )));
            }
            for i in 0..self.learn.n_iter {
                self.learn.iter = i;
                self.prepare_on_device(images.shallow_clone(), labels.shallow_clone())?;
                self.run_batch()?;
            }
            self.bar.finish_and_clear();
            return Ok(());
        }
        let run_epoch = (self.learn.epoch_offset + self.learn.epoch) as u64;
        let mut batches = src.batches(run_epoch).enumerate();
        loop {
            let waiting = Instant::now();
            let Some((i, batch)) = batches.next() else {
                break;
            };
            self.lap(waiting, |t| &mut t.data_wait_s);
            self.learn.iter = i;
            self.one_batch(batch?)?;
        }
        self.bar.finish_and_clear();
        Ok(())
    }

    /// Moves a batch to the device as fastai's batch transforms leave it: floats in [0, 1], augmented (train)
    /// or resized (valid), normalised.
    fn prepare(&mut self, batch: Batch) -> Result<()> {
        let started = Instant::now();
        let images = batch.images.as_standard_layout();
        let (n, c, h, w) = images.dim();
        if c != 3 || n != batch.labels.len() || n == 0 {
            return Err(Error::Data(format!(
                "expected a non-empty RGB batch (N, 3, H, W) with one label per image, found {:?} and {} labels",
                images.dim(),
                batch.labels.len()
            )));
        }
        if let Some(&bad) = batch.labels.iter().find(|&&l| l >= self.cfg.n_classes) {
            return Err(Error::Data(format!(
                "expected labels below the {} classes of the head, found {bad}",
                self.cfg.n_classes
            )));
        }
        let device = self.learn.device;
        let slice = images
            .as_slice()
            .ok_or_else(|| Error::Data("batch images not contiguous".into()))?;
        let raw = Tensor::from_slice(slice).view([n as i64, c as i64, h as i64, w as i64]);
        let labels: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
        let labels = Tensor::from_slice(&labels);
        let (raw, labels) = (to_device(&raw, device)?, to_device(&labels, device)?);
        self.lap(started, |t| &mut t.h2d_s);
        self.prepare_on_device(raw, labels)
    }

    /// The batch transforms of [`Core::prepare`] on a `u8` batch and its labels already on the device.
    fn prepare_on_device(&mut self, raw: Tensor, labels: Tensor) -> Result<()> {
        let started = Instant::now();
        let n = raw.size()[0] as usize;
        let x = raw.f_to_kind(Kind::Float)? / 255.0;
        let mut x = match &self.cfg.aug {
            Some(aug) if self.learn.training => {
                let draw = aug.draw(n, &mut self.learn.rng);
                aug.apply(&x, &draw)?
            }
            Some(aug) => aug.apply_valid(&x)?,
            None => x,
        };
        if let Some((mean, std)) = &self.norm {
            x = (x - mean) / std;
        }
        if self.layout.channels_last {
            x = channels_last(&x)?;
        }
        self.learn.labels = labels;
        self.learn.yb = self
            .learn
            .loss_func
            .encode_targets(&self.learn.labels, self.cfg.n_classes as i64)?;
        self.learn.xb = x;
        self.lap(started, |t| &mut t.augment_s);
        Ok(())
    }

    fn one_batch(&mut self, batch: Batch) -> Result<()> {
        self.prepare(batch)?;
        self.run_batch()
    }

    /// One batch from its prepared `xb`/`yb`: schedule, events, step, recording.
    fn run_batch(&mut self) -> Result<()> {
        self.batch_loss = None;
        if self.learn.training {
            let total = (self.learn.n_iter * self.learn.n_epoch).max(1);
            let done = self.learn.epoch * self.learn.n_iter + self.learn.iter;
            self.learn.pct_train = done as f64 / total as f64;
            if let Some(scheds) = &self.lr_scheds {
                // fastai's ParamScheduler: every group's rate from its own schedule.
                let pct = self.learn.pct_train;
                let lrs: Vec<f64> = scheds.iter().map(|s| s.at(pct)).collect();
                self.learn.opt.set_lrs(&lrs)?;
                self.learn.opt.mom = self.learn.sched.mom_sched().at(pct);
            }
        }
        self.with_events(
            Cancel::Batch,
            |core| core.do_one_batch(),
            |core| core.record_batch(),
        )
    }

    fn do_one_batch(&mut self) -> Result<()> {
        let started = Instant::now();
        if let Some(kind) = self.autocast {
            // libtorch keeps the autocast dtype per thread: set it on the thread that runs the pass.
            crate::ffi::set_cuda_autocast_dtype(kind)?;
        }
        let amp = self.autocast.is_some();
        let learn = &mut self.learn;
        let pred = if learn.training {
            let rng: &mut dyn rand::RngCore = &mut learn.rng;
            let (model, xb) = (&*learn.model, &learn.xb);
            tch::autocast(amp, || model.forward(xb, Some(rng)))?
        } else {
            let (model, xb) = (&*learn.model, &learn.xb);
            tch::autocast(amp, || model.forward(xb, None))?
        };
        self.learn.pred = pred;
        self.event(Event::AfterPred)?;
        let pred = self.learn.pred.f_to_kind(Kind::Float)?;
        self.learn.loss_grad = self.learn.loss_func.loss(&pred, &self.learn.yb)?;
        self.event(Event::AfterLoss)?;
        // Kept on the device: reading it here would wait for the whole step on every batch.
        self.batch_loss = Some(self.learn.loss_grad.detach());
        if !self.learn.training {
            return Ok(());
        }
        self.with_events(
            Cancel::Backward,
            |core| {
                let loss = match &core.learn.scaler {
                    Some(s) => s.scale_loss(&core.learn.loss_grad),
                    None => core.learn.loss_grad.shallow_clone(),
                };
                Ok(loss.f_backward()?)
            },
            |_| Ok(()),
        )?;
        self.lap(started, |t| &mut t.forward_backward_s);
        let started = Instant::now();
        self.with_events(Cancel::Step, |core| core.opt_step(), |_| Ok(()))?;
        self.learn.opt.zero_grad();
        self.lap(started, |t| &mut t.optimizer_s);
        Ok(())
    }

    fn opt_step(&mut self) -> Result<()> {
        if let Some(scaler) = &mut self.learn.scaler {
            let grads = self.learn.opt.grads();
            if !scaler.unscale_and_check(&grads)? {
                return Ok(());
            }
        }
        self.learn.opt.step()
    }

    /// The Recorder's and TrainEvalCallback's `after_batch`.
    fn record_batch(&mut self) -> Result<()> {
        let started = Instant::now();
        let Some(loss) = self.batch_loss.take() else {
            return Ok(());
        };
        let n = self.learn.labels.size()[0] as usize;
        if self.learn.training {
            let row = StepRow {
                step: self.learn.history.steps.len() + self.pending.len(),
                epoch: self.learn.epoch_offset + self.learn.epoch,
                lr: self.learn.opt.lr(),
                mom: self.learn.opt.mom,
                loss: f64::NAN,
                smooth_loss: f64::NAN,
            };
            self.pending.push(Pending {
                loss,
                row,
                train_iter: self.learn.train_iter,
                lrs: self.learn.opt.lrs().to_vec(),
                at: Instant::now(),
            });
            self.learn.train_iter += 1;
            self.learn.history.timing.train_items += n;
            if self.pending.len() >= self.sync_every {
                self.flush_losses()?;
            }
        } else {
            let wrong = self
                .learn
                .pred
                .f_argmax(-1, false)?
                .f_ne_tensor(&self.learn.labels)?
                .f_sum(Kind::Double)?;
            let v = &mut self.valid;
            v.loss = (&v.loss + loss.f_to_kind(Kind::Double)? * n as f64).f_view([1])?;
            v.wrong = (&v.wrong + wrong).f_view([1])?;
            v.n += n;
            self.learn.history.timing.valid_items += n;
        }
        self.bar.inc(1);
        self.lap(started, |t| &mut t.logging_s);
        Ok(())
    }

    /// Reads the pending training losses back in one transfer: the smoothed loss, the history and the
    /// progress bar catch up, and the first non-finite loss stops the run (fastai checks every step).
    fn flush_losses(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        let losses: Vec<&Tensor> = pending.iter().map(|p| &p.loss).collect();
        let mut stacked = Tensor::stack(&losses, 0).f_to_kind(Kind::Double)?;
        if let Some(ranks) = &self.cfg.collective {
            // The loss of the job's global batch: the mean of the ranks' batch losses, one all-reduce
            // per read-back rather than one per step.
            ranks.sum(&[&stacked])?;
            stacked /= ranks.world() as f64;
        }
        let values: Vec<f64> = Vec::try_from(stacked.f_to_device(Device::Cpu)?)?;
        for (p, value) in pending.into_iter().zip(values) {
            if !value.is_finite() {
                return Err(Error::NonFiniteLoss {
                    value,
                    epoch: self.learn.epoch_offset + self.learn.epoch,
                    step: p.train_iter,
                    last_checkpoint: self.learn.history.last_checkpoint.clone(),
                });
            }
            self.learn.smooth_loss.accumulate(value);
            let row = StepRow {
                loss: value,
                smooth_loss: self.learn.smooth_loss.value(),
                ..p.row
            };
            self.learn.history.steps.push(row);
            self.learn.history.fresh_steps.push(LoggedStep {
                row,
                lrs: p.lrs,
                at: p.at,
            });
        }
        self.bar
            .set_message(format!("loss {:.4}", self.learn.smooth_loss.value()));
        self.lap(started, |t| &mut t.logging_s);
        Ok(())
    }

    /// The Recorder's `after_epoch` bookkeeping: the epoch's row, handed to the recording callbacks
    /// (table, CSVs, curves, checkpoint, best model, event log, timings) through `learn.epoch_row`.
    fn end_epoch(&mut self) -> Result<()> {
        self.learn.history.end_epoch_start = Some(Instant::now());
        let (valid_loss, error_rate) = self.valid_metrics()?;
        let seconds = self
            .learn
            .history
            .epoch_start
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        let row = EpochRow {
            epoch: self.learn.epoch_offset + self.learn.epoch,
            train_loss: self.learn.smooth_loss.value(),
            valid_loss,
            error_rate,
            seconds,
        };
        self.learn.history.epochs.push(row);
        if !self.quiet {
            self.learn.epoch_row = Some(row);
        }
        Ok(())
    }
}

/// The callbacks a learner registers for `cfg`: the table with `progress`, and with a run folder the
/// CSVs and curves, the last checkpoint, the best model when `save_best` is set, the event log and the
/// timings.
fn default_callbacks(cfg: &LearnerConfig) -> Vec<Box<dyn Callback>> {
    let mut cbs: Vec<Box<dyn Callback>> = Vec::new();
    // In a data-parallel job only rank 0 shows and writes anything; the other ranks keep the run
    // folder only to read checkpoints from when they resume.
    if rank_of(cfg) != 0 {
        return cbs;
    }
    if cfg.progress {
        cbs.push(Box::new(ProgressTable));
    }
    if let Some(dir) = &cfg.run_dir {
        cbs.push(Box::new(CsvLogger::new(dir)));
        cbs.push(Box::new(Checkpointer::new(
            &dir.join("checkpoints"),
            cfg.seed,
        )));
        if let Some(monitor) = cfg.save_best {
            cbs.push(Box::new(SaveBest::new(dir, monitor)));
        }
        cbs.push(Box::new(EventLog::new(dir)));
        cbs.push(Box::new(TimingsFile::new(dir)));
    }
    cbs
}

/// The layout `cfg.memory_format` asks for, checked on `model` where it asks for channels_last (at the
/// training image size); in a data-parallel job channels_last only when every rank's check agreed.
fn choose_layout(cfg: &LearnerConfig, model: &dyn Model) -> Result<Layout> {
    if cfg.memory_format == MemoryFormat::Contiguous {
        return Ok(Layout {
            channels_last: false,
            check: None,
        });
    }
    let size = cfg
        .aug
        .as_ref()
        .map_or(CHECK_SIZE, |a| a.size.0.max(a.size.1));
    let check = layout::check_channels_last(model, size)?;
    let mut agrees = check.agrees();
    if let Some(job) = &cfg.collective {
        let yes = Tensor::from_slice(&[f32::from(u8::from(agrees))]).f_to_device(model.device())?;
        job.sum(&[&yes])?;
        agrees = yes.f_double_value(&[0])? == job.world() as f64;
    }
    if cfg.memory_format == MemoryFormat::ChannelsLast && !agrees {
        let whose = if check.agrees() {
            "another rank's".to_string()
        } else {
            format!("this {}'s", device_name(model.device()))
        };
        return Err(Error::Invalid(format!(
            "channels_last is refused: on {whose} kernels its gradients disagree with the contiguous              (NCHW) layout's ({check}); use the contiguous layout, or auto, which checks and falls back"
        )));
    }
    Ok(Layout {
        channels_last: agrees,
        check: Some(check),
    })
}

/// Validation sums kept on the device: loss times batch size, misclassified count, images.
struct ValidSums {
    loss: Tensor,
    wrong: Tensor,
    n: usize,
}

impl ValidSums {
    fn new(device: Device) -> Self {
        let zero = || Tensor::zeros([1], (Kind::Double, device));
        ValidSums {
            loss: zero(),
            wrong: zero(),
            n: 0,
        }
    }
}

/// A per-channel statistic as a `(1, 3, 1, 1)` float tensor on `device`.
fn stats(v: [f64; 3], device: Device) -> Tensor {
    Tensor::from_slice(&v.map(|a| a as f32))
        .to_device(device)
        .view([1, 3, 1, 1])
}

/// `cpu` or `cuda:N`, as `timings.json` names the device.
fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// A host tensor on `device`: on CUDA from pinned memory without waiting (the copy is queued on the
/// stream, so the host goes on preparing while the device computes); unchanged on the CPU.
fn to_device(t: &Tensor, device: Device) -> Result<Tensor> {
    if device.is_cuda() {
        Ok(t.f_pin_memory(device)?
            .f_to_device_(device, t.kind(), true, false)?)
    } else {
        Ok(t.shallow_clone())
    }
}

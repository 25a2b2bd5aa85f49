//! fastai's `Learner` loop (fastai/learner.py) on tch: events around fit, epoch, train, validate, batch,
//! backward and step with cancellation; `fit_one_cycle`; the recorder; checkpoints and resuming.

use crate::augment::{self, AugTransforms, IMAGENET_MEAN, IMAGENET_STD};
use crate::callback::{Callback, Cancel, Event};
use crate::checkpoint::{self, Progress};
use crate::data::BatchSource;
use crate::device::{self, DeviceChoice};
use crate::loss::{default_loss, LossFunc};
use crate::model::VisionModel;
use crate::optim::{Adam, AdamConfig, LossScaler};
use crate::recorder::{self, EpochRow, SmoothLoss, StepRow};
use crate::schedule::OneCycle;
use crate::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mix_data::Batch;
use rand::SeedableRng;
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
    /// float16 autocast with loss scaling (CUDA only).
    pub mixed_precision: bool,
    /// Seeds the weights, the augmentation and mixing draws, dropout and nothing else.
    pub seed: u64,
    /// Batch augmentation; `None` feeds the images as they come (after scaling to [0, 1]).
    pub aug: Option<AugTransforms>,
    /// Per-channel `(mean, std)`; fastai adds ImageNet statistics for pretrained models.
    pub normalize: Option<([f64; 3], [f64; 3])>,
    /// torchvision ResNet18 weights (`.safetensors`); when given the body is frozen except BatchNorm.
    pub pretrained: Option<PathBuf>,
    /// Folder for `metrics.csv`, `steps.csv`, `curves.png` and `checkpoints/`; `None` writes nothing.
    pub run_dir: Option<PathBuf>,
    /// Progress bars and the per-epoch table on the console.
    pub progress: bool,
    /// The loss (fastai's `loss_func`).
    pub loss_func: Arc<dyn LossFunc>,
    /// Adam's fixed hyper-parameters.
    pub adam: AdamConfig,
}

impl LearnerConfig {
    /// The seed's setup: `aug_transforms(size=224)`, ImageNet normalisation, cross entropy, automatic device,
    /// seed 42, no pretrained weights, no run folder, console output on.
    pub fn new(n_classes: usize) -> Self {
        LearnerConfig {
            n_classes,
            device: DeviceChoice::Auto,
            mixed_precision: false,
            seed: 42,
            aug: Some(augment::aug_transforms(224)),
            normalize: Some((IMAGENET_MEAN, IMAGENET_STD)),
            pretrained: None,
            run_dir: None,
            progress: true,
            loss_func: default_loss(),
            adam: AdamConfig::default(),
        }
    }
}

/// The learner's state as callbacks see and change it (the attributes of fastai's `Learner`).
#[derive(Debug)]
pub struct Learn {
    /// The model.
    pub model: VisionModel,
    /// The optimizer; `lr` and `mom` are set from the schedule before each training batch.
    pub opt: Adam,
    /// The loss function in use (a mixing callback swaps it during training).
    pub loss_func: Arc<dyn LossFunc>,
    /// The device of the model and the batches.
    pub device: Device,
    /// Training (true) or validating (false).
    pub training: bool,
    /// Current epoch, 0-based.
    pub epoch: usize,
    /// Epochs in this fit.
    pub n_epoch: usize,
    /// Batch index within the current pass.
    pub iter: usize,
    /// Batches in the current pass.
    pub n_iter: usize,
    /// Training steps done in this fit.
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
    sched: OneCycle,
    scaler: Option<LossScaler>,
    steps: Vec<StepRow>,
    epochs: Vec<EpochRow>,
    batch_loss: Option<f64>,
    valid: (f64, f64, usize),
    bar: ProgressBar,
    epoch_start: Instant,
    last_checkpoint: Option<PathBuf>,
}

/// A ResNet18 vision learner: fastai's `vision_learner(dls, resnet18, loss_func=CrossEntropyLossFlat(),
/// metrics=[error_rate])`.
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

fn epoch_rng(seed: u64, epoch: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Stream 0 draws the initial weights; epoch e uses stream e + 1.
    rng.set_stream(epoch as u64 + 1);
    rng
}

impl Learner {
    /// Builds the model on the configured device (pretrained and frozen when weights are given) and Adam.
    pub fn new(
        train: Box<dyn BatchSource>,
        valid: Box<dyn BatchSource>,
        cfg: LearnerConfig,
    ) -> Result<Self> {
        let device = cfg.device.resolve()?;
        if cfg.mixed_precision && !device.is_cuda() {
            return Err(Error::CudaUnavailable {
                what: "mixed precision",
            });
        }
        device::prepare(device);
        let mut init_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut model = VisionModel::new(cfg.n_classes, device, &mut init_rng)?;
        if let Some(path) = &cfg.pretrained {
            model.load_pretrained(path)?;
        }
        let opt = Adam::new(&model, cfg.adam);
        let learn = Learn {
            model,
            opt,
            loss_func: cfg.loss_func.clone(),
            device,
            training: false,
            epoch: 0,
            n_epoch: 0,
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
            rng: epoch_rng(cfg.seed, 0),
        };
        let scaler = cfg.mixed_precision.then(LossScaler::default);
        let core = Core {
            learn,
            cbs: Vec::new(),
            sched: OneCycle::default(),
            scaler,
            steps: Vec::new(),
            epochs: Vec::new(),
            batch_loss: None,
            valid: (0.0, 0.0, 0),
            bar: ProgressBar::hidden(),
            epoch_start: Instant::now(),
            last_checkpoint: None,
            cfg,
        };
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

    /// The configuration.
    pub fn config(&self) -> &LearnerConfig {
        &self.core.cfg
    }

    /// Every training step recorded in the current run.
    pub fn steps(&self) -> &[StepRow] {
        &self.core.steps
    }

    /// Every epoch recorded in the current run.
    pub fn epochs(&self) -> &[EpochRow] {
        &self.core.epochs
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
        let core = &mut self.core;
        core.steps.clear();
        core.epochs.clear();
        core.learn.smooth_loss = SmoothLoss::default();
        core.learn.train_iter = 0;
        core.learn.pct_train = 0.0;
        self.run_fit(n_epoch, 0, sched, cbs)
    }

    /// Continues the run in `run_dir` from its newest checkpoint: weights, optimizer state, schedule
    /// position and history are restored, and the remaining epochs of the same one-cycle schedule run.
    pub fn resume(&mut self, cbs: Vec<Box<dyn Callback>>) -> Result<FitSummary> {
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
        let progress = self.load_checkpoint(&dir)?;
        if progress.epochs_done >= progress.n_epoch {
            return Ok(self.summary());
        }
        self.run_fit(progress.n_epoch, progress.epochs_done, progress.sched, cbs)
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
        core.learn.smooth_loss = p.smooth;
        if core.scaler.is_some() {
            core.scaler = Some(p.scaler.clone().unwrap_or_default());
        }
        core.steps = p.steps.clone();
        core.epochs = p.epochs.clone();
        core.last_checkpoint = Some(dir.to_path_buf());
        Ok(p)
    }

    /// fastai's `validate()`: `before_fit`, `before_epoch`, one pass over the validation data with its
    /// events, `after_epoch`, `after_fit`; returns `(valid_loss, error_rate)`.
    pub fn validate(&mut self) -> Result<(f64, f64)> {
        let valid = &*self.valid;
        let core = &mut self.core;
        core.learn.training = false;
        core.event(Event::BeforeFit)?;
        core.event(Event::BeforeEpoch)?;
        core.do_validate(valid)?;
        core.event(Event::AfterEpoch)?;
        core.event(Event::AfterFit)?;
        core.bar.finish_and_clear();
        Ok(core.valid_metrics())
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
            epochs: self.core.epochs.clone(),
            train_iter: self.core.learn.train_iter,
            skipped_steps: self.core.scaler.as_ref().map_or(0, |s| s.skipped),
            last_checkpoint: self.core.last_checkpoint.clone(),
        }
    }

    fn run_fit(
        &mut self,
        n_epoch: usize,
        start_epoch: usize,
        sched: OneCycle,
        cbs: Vec<Box<dyn Callback>>,
    ) -> Result<FitSummary> {
        for cb in cbs {
            self.core.insert(cb, true);
        }
        self.core.sched = sched;
        self.core.learn.opt.wd = sched.wd;
        self.core.learn.n_epoch = n_epoch;
        if let Some(dir) = &self.core.cfg.run_dir {
            if let Err(e) = std::fs::create_dir_all(dir) {
                self.core.cbs.retain(|s| !s.temporary);
                return Err(Error::io("creating the run folder", dir, e));
            }
        }
        let (train, valid) = (&*self.train, &*self.valid);
        let core = &mut self.core;
        if core.cfg.progress {
            println!("{}", recorder::table_header());
        }
        let result = core.with_events(
            Cancel::Fit,
            |core| {
                for epoch in start_epoch..n_epoch {
                    core.learn.epoch = epoch;
                    core.with_events(
                        Cancel::Epoch,
                        |core| core.do_epoch(train, valid),
                        |_| Ok(()),
                    )?;
                }
                Ok(())
            },
            |_| Ok(()),
        );
        self.core.bar.finish_and_clear();
        self.core.cbs.retain(|s| !s.temporary);
        result.map(|()| self.summary())
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
            Err(Error::Cancel(k)) if k == kind => self.event(after_cancel)?,
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
        self.bar = if self.cfg.progress {
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
        self.epoch_start = Instant::now();
        let epoch = self.learn.epoch;
        self.learn.rng = epoch_rng(self.cfg.seed, epoch);
        self.learn.training = true;
        self.learn.pct_train = epoch as f64 / self.learn.n_epoch as f64;
        self.with_events(Cancel::Train, |core| core.all_batches(train), |_| Ok(()))?;
        self.do_validate(valid)?;
        self.end_epoch()
    }

    fn do_validate(&mut self, valid: &dyn BatchSource) -> Result<()> {
        self.learn.training = false;
        self.valid = (0.0, 0.0, 0);
        let _guard = tch::no_grad_guard();
        self.with_events(Cancel::Validate, |core| core.all_batches(valid), |_| Ok(()))
    }

    fn valid_metrics(&self) -> (f64, f64) {
        let (loss, errors, n) = self.valid;
        if n == 0 {
            (f64::NAN, f64::NAN)
        } else {
            (loss / n as f64, errors / n as f64)
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
        for (i, batch) in src.batches(self.learn.epoch as u64).enumerate() {
            self.learn.iter = i;
            self.one_batch(batch?)?;
        }
        self.bar.finish_and_clear();
        Ok(())
    }

    /// Moves a batch to the device as fastai's batch transforms leave it: floats in [0, 1], augmented (train)
    /// or resized (valid), normalised.
    fn prepare(&mut self, batch: Batch) -> Result<()> {
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
        let mut x = augment::to_float(&raw, device);
        if let Some(aug) = &self.cfg.aug {
            x = if self.learn.training {
                let draw = aug.draw(n, &mut self.learn.rng);
                aug.apply(&x, &draw)?
            } else {
                aug.apply_valid(&x)?
            };
        }
        if let Some((mean, std)) = self.cfg.normalize {
            x = augment::normalize(&x, mean, std);
        }
        let labels: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
        self.learn.labels = Tensor::from_slice(&labels).to_device(device);
        self.learn.yb = self
            .learn
            .loss_func
            .encode_targets(&self.learn.labels, self.cfg.n_classes as i64)?;
        self.learn.xb = x;
        Ok(())
    }

    fn one_batch(&mut self, batch: Batch) -> Result<()> {
        self.prepare(batch)?;
        self.batch_loss = None;
        if self.learn.training {
            let total = (self.learn.n_iter * self.learn.n_epoch).max(1);
            let done = self.learn.epoch * self.learn.n_iter + self.learn.iter;
            self.learn.pct_train = done as f64 / total as f64;
            self.learn.opt.lr = self.sched.lr_sched().at(self.learn.pct_train);
            self.learn.opt.mom = self.sched.mom_sched().at(self.learn.pct_train);
        }
        self.with_events(
            Cancel::Batch,
            |core| core.do_one_batch(),
            |core| core.record_batch(),
        )
    }

    fn do_one_batch(&mut self) -> Result<()> {
        let amp = self.scaler.is_some();
        let learn = &mut self.learn;
        let pred = if learn.training {
            let rng: &mut dyn rand::RngCore = &mut learn.rng;
            let (model, xb) = (&learn.model, &learn.xb);
            tch::autocast(amp, || model.forward(xb, Some(rng)))?
        } else {
            let (model, xb) = (&learn.model, &learn.xb);
            tch::autocast(amp, || model.forward(xb, None))?
        };
        self.learn.pred = pred;
        self.event(Event::AfterPred)?;
        let pred = self.learn.pred.f_to_kind(Kind::Float)?;
        self.learn.loss_grad = self.learn.loss_func.loss(&pred, &self.learn.yb)?;
        self.event(Event::AfterLoss)?;
        let value = self.learn.loss_grad.f_double_value(&[])?;
        self.batch_loss = Some(value);
        if !self.learn.training {
            return Ok(());
        }
        if !value.is_finite() {
            return Err(Error::NonFiniteLoss {
                value,
                epoch: self.learn.epoch,
                step: self.learn.train_iter,
                last_checkpoint: self.last_checkpoint.clone(),
            });
        }
        self.with_events(
            Cancel::Backward,
            |core| {
                let loss = match &core.scaler {
                    Some(s) => s.scale_loss(&core.learn.loss_grad),
                    None => core.learn.loss_grad.shallow_clone(),
                };
                Ok(loss.f_backward()?)
            },
            |_| Ok(()),
        )?;
        self.with_events(Cancel::Step, |core| core.opt_step(), |_| Ok(()))?;
        self.learn.opt.zero_grad();
        Ok(())
    }

    fn opt_step(&mut self) -> Result<()> {
        if let Some(scaler) = &mut self.scaler {
            let grads = self.learn.opt.grads();
            if !scaler.unscale_and_check(&grads)? {
                return Ok(());
            }
        }
        self.learn.opt.step()
    }

    /// The Recorder's and TrainEvalCallback's `after_batch`.
    fn record_batch(&mut self) -> Result<()> {
        let Some(loss) = self.batch_loss else {
            return Ok(());
        };
        if self.learn.training {
            self.learn.smooth_loss.accumulate(loss);
            let smooth = self.learn.smooth_loss.value();
            self.steps.push(StepRow {
                step: self.learn.train_iter,
                epoch: self.learn.epoch,
                lr: self.learn.opt.lr,
                mom: self.learn.opt.mom,
                loss,
                smooth_loss: smooth,
            });
            self.learn.train_iter += 1;
            self.bar.set_message(format!("loss {smooth:.4}"));
        } else {
            let n = self.learn.labels.size()[0] as usize;
            let wrong = self
                .learn
                .pred
                .f_argmax(-1, false)?
                .f_ne_tensor(&self.learn.labels)?
                .f_sum(Kind::Float)?
                .f_double_value(&[])?;
            self.valid.0 += loss * n as f64;
            self.valid.1 += wrong;
            self.valid.2 += n;
        }
        self.bar.inc(1);
        Ok(())
    }

    /// The Recorder's `after_epoch`: table row, CSVs, curves and checkpoint.
    fn end_epoch(&mut self) -> Result<()> {
        let (valid_loss, error_rate) = self.valid_metrics();
        let row = EpochRow {
            epoch: self.learn.epoch,
            train_loss: self.learn.smooth_loss.value(),
            valid_loss,
            error_rate,
            seconds: self.epoch_start.elapsed().as_secs_f64(),
        };
        self.epochs.push(row);
        if self.cfg.progress {
            println!("{}", recorder::table_row(&row));
        }
        let Some(dir) = self.cfg.run_dir.clone() else {
            return Ok(());
        };
        recorder::write_atomic(
            &dir.join("metrics.csv"),
            recorder::metrics_csv(&self.epochs).as_bytes(),
        )?;
        recorder::write_atomic(
            &dir.join("steps.csv"),
            recorder::steps_csv(&self.steps).as_bytes(),
        )?;
        let epoch = self.learn.epoch;
        let per_epoch = self.steps.iter().filter(|s| s.epoch == epoch).count();
        recorder::curves_png(
            &dir.join("curves.png"),
            &self.steps,
            &self.epochs,
            per_epoch,
        )?;
        let (opt_tensors, opt_steps) = self.learn.opt.state();
        let mut model: Vec<(String, Tensor)> = self.learn.model.variables().into_iter().collect();
        model.sort_by(|a, b| a.0.cmp(&b.0));
        let progress = Progress {
            format: checkpoint::FORMAT,
            epochs_done: self.learn.epoch + 1,
            n_epoch: self.learn.n_epoch,
            train_iter: self.learn.train_iter,
            sched: self.sched,
            adam: self.learn.opt.cfg,
            opt_steps,
            seed: self.cfg.seed,
            n_classes: self.cfg.n_classes,
            frozen: self.learn.model.is_frozen(),
            smooth: self.learn.smooth_loss,
            scaler: self.scaler.clone(),
            steps: self.steps.clone(),
            epochs: self.epochs.clone(),
        };
        self.last_checkpoint = Some(checkpoint::save(
            &dir.join("checkpoints"),
            &model,
            &opt_tensors,
            &progress,
        )?);
        Ok(())
    }
}

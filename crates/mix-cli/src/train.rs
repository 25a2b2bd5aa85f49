//! The options of `train`, `lr-find` and `predict` (xtask's tasks and the mix-train binary) as clap
//! types, and the checks that turn them into settings with every default filled in.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, ValueEnum};
use mix_core::{MixConfig, MixMode, Mixer};

use crate::dataset::{DatasetArg, DATASET_HELP, SEED_PATTERN};
use crate::error::usage;
use crate::weights::PretrainedArg;
use crate::{Error, Result};

/// What `train --help` says the command does.
pub const ABOUT: &str = "Train ResNet18 on a dataset with MixUp or CutMix and fit_one_cycle: the seed's \
vision_learner(dls, resnet18, metrics=error_rate).fit_one_cycle(EPOCHS, LR, cbs=MixUp(ALPHA)), \
ImageNet-pretrained with the body frozen (as fastai) unless --pretrained none; --fine-tune N runs \
fastai's fine_tune(N) instead. Writes runs/<timestamp>/ with config.json, metrics.csv (fastai's epoch \
table), steps.csv (lr, momentum and loss per step), events.jsonl (every step and epoch as JSON lines), \
model.safetensors, checkpoints, best/ and curves.png. The sample dataset gets smaller defaults (--bs 16 \
--resize 128 --size 112 --pretrained none) so that it trains offline in about a minute on a CPU.";

/// What `lr-find --help` says.
pub const LR_FIND_ABOUT: &str = "fastai's lr_find on the same data and model as train: a mock \
training whose learning rate grows exponentially from --start-lr to --end-lr over --num-it steps, \
stopped when the smoothed loss passes 4x its minimum; the model is restored afterwards. Writes a PNG \
of loss against learning rate (log scale) with fastai's valley suggestion marked, and prints the \
suggestion.";

/// What `predict --help` says.
pub const PREDICT_ABOUT: &str = "fastai's learn.predict for a finished run: each IMAGE (or every \
image in a folder) through the run's validation transform and model, then its most probable \
classes with their probabilities, one line per image. The run folder holds everything needed \
(classes, sizes and normalisation come from its config.json).";

/// The seed notebook's `MixUp(1.)` and `CutMix(1.)`: the default of `train` and `preview` for both
/// mixes (fastai's `MixUp` class itself defaults to 0.4).
pub const SEED_ALPHA: f32 = 1.0;
/// fastai's `defaults.lr`, `fit_one_cycle`'s `lr_max` when none is given.
pub const DEFAULT_LR: f64 = 1e-3;
/// fastai's `fine_tune` `base_lr`.
pub const FINE_TUNE_BASE_LR: f64 = 2e-3;
/// Largest `--resize`/`--size` accepted: a 4096-pixel square item is already 48 MiB as u8.
pub const MAX_IMAGE_SIDE: usize = 4096;
/// The largest learning rate `--lr` takes: lr_find's default end, where every model has diverged.
pub const MAX_LR: f64 = 10.0;
/// The largest `--alpha`: Beta(A, A) is then 0.5 within 1%, and far larger concentrations make the
/// Gamma draws behind it overflow.
pub const MAX_ALPHA: f32 = 10_000.0;
/// The most processes `--nproc` launches: beyond any one machine's GPUs or sensible CPU split,
/// low enough that a typo does not start thousands of processes.
pub const MAX_NPROC: usize = 256;
/// The most epochs a fit may ask for: far beyond any real run, low enough that epoch and step counts
/// cannot overflow.
pub const MAX_EPOCHS: usize = 100_000;

/// Which mix callback trains the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MixChoice {
    /// fastai's `MixUp(alpha)`.
    #[value(name = "mixup")]
    MixUp,
    /// fastai's `CutMix(alpha)`.
    #[value(name = "cutmix")]
    CutMix,
    /// timm's `Mixup`: MixUp and/or CutMix with its probabilities, modes and label smoothing.
    #[value(name = "timm")]
    Timm,
    /// No mix: plain cross-entropy training.
    #[value(name = "none")]
    None,
}

impl MixChoice {
    /// The option value naming it (as config.json records it).
    pub fn name(self) -> &'static str {
        match self {
            MixChoice::MixUp => "mixup",
            MixChoice::CutMix => "cutmix",
            MixChoice::Timm => "timm",
            MixChoice::None => "none",
        }
    }

    /// Reads a recorded value (config.json's `mix`).
    pub fn parse(value: &str) -> Result<MixChoice> {
        MixChoice::from_str(value, false).map_err(|_| {
            Error::usage(format!(
                "--mix {value}: expected mixup, cutmix, timm or none"
            ))
        })
    }

    /// The default alpha: the seed's 1.0 for fastai's mixes (timm and none: unused, 0).
    pub fn default_alpha(self) -> f32 {
        match self {
            MixChoice::MixUp | MixChoice::CutMix => SEED_ALPHA,
            MixChoice::Timm | MixChoice::None => 0.0,
        }
    }
}

/// `--precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    /// bf16 autocast on a CUDA device that supports it, fp16 with loss scaling on one that does
    /// not, fp32 on the CPU.
    Auto,
    /// fastai's default.
    Fp32,
    /// bf16 autocast.
    Bf16,
    /// fp16 autocast with the loss scaler.
    Fp16,
}

/// `--memory-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MemoryFormat {
    /// channels-last where a check on this model and device finds it gives NCHW's gradients, else
    /// contiguous.
    Auto,
    /// fastai's NCHW.
    Contiguous,
    /// NHWC for oneDNN and cuDNN, refused where the check finds its gradients disagree with NCHW's.
    ChannelsLast,
}

/// `--cache-images`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheImages {
    /// On when the worst case takes under half the memory available.
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// `--mixup-mode`: timm's per-batch, per-pair or per-element draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimmMode {
    /// One draw for the batch.
    Batch,
    /// One draw per pair `(i, n - 1 - i)`.
    Pair,
    /// One draw per element.
    Elem,
}

/// `--save-best`: the validation metric a best checkpoint is kept by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BestMetric {
    /// The validation loss, lower is better (fastai's SaveModelCallback default).
    #[value(name = "valid_loss")]
    ValidLoss,
    /// The error rate, lower is better.
    #[value(name = "error_rate")]
    ErrorRate,
    /// The accuracy, higher is better.
    #[value(name = "accuracy")]
    Accuracy,
    /// No best checkpoint.
    #[value(name = "none")]
    None,
}

impl BestMetric {
    /// The option value naming it.
    pub fn name(self) -> &'static str {
        match self {
            BestMetric::ValidLoss => "valid_loss",
            BestMetric::ErrorRate => "error_rate",
            BestMetric::Accuracy => "accuracy",
            BestMetric::None => "none",
        }
    }
}

/// Refuses an empty value, naming nothing (clap names the option).
fn non_empty(value: &str) -> std::result::Result<String, String> {
    if value.trim().is_empty() {
        return Err("expected a value, found an empty one".into());
    }
    Ok(value.to_string())
}

/// Reads `--device`: `auto`, `cpu`, `cuda` or `cuda:N`.
fn device(value: &str) -> std::result::Result<String, String> {
    let ok = matches!(value, "auto" | "cpu" | "cuda")
        || value
            .strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<usize>().is_ok());
    if !ok {
        return Err("expected auto, cpu, cuda or cuda:N".into());
    }
    Ok(value.to_string())
}

/// The data and model options shared by `train` and `lr-find`.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct DataModelOpts {
    /// Where the images come from.
    #[arg(long, value_name = "pets|sample|URL|DIR", value_parser = non_empty, help = DATASET_HELP)]
    pub dataset: Option<String>,
    /// Batch size.
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        help = "batch size (default 64; sample: 16)"
    )]
    pub bs: Option<usize>,
    /// Item transform size.
    #[arg(
        long,
        value_name = "PX",
        allow_hyphen_values = true,
        help = "item transform Resize(PX, method='crop') (default 256; sample: 128)"
    )]
    pub resize: Option<usize>,
    /// Training image size.
    #[arg(
        long,
        value_name = "PX",
        allow_hyphen_values = true,
        help = "aug_transforms(size=PX): the training image size (default 224; sample: 112)"
    )]
    pub size: Option<usize>,
    /// Label regex.
    #[arg(long, value_name = "RE", value_parser = non_empty,
          help = "label regex, group 1 is the label (default the seed's ([^/]+)_\\d+.*$)")]
    pub pattern: Option<String>,
    /// Starting weights.
    #[arg(long, value_name = "imagenet|none|PATH|URL", value_parser = non_empty,
          help = "starting weights: imagenet (torchvision's ResNet18, downloaded once and checked, the \
                  default as in fastai; sample: none), none (from scratch), or torchvision ResNet18 \
                  weights as .safetensors from a file or URL; pretrained bodies start frozen except BatchNorm")]
    pub pretrained: Option<String>,
    /// The SHA-256 of `--pretrained URL`.
    #[arg(
        long,
        value_name = "HEX",
        help = "with --pretrained URL: the SHA-256 the download must have"
    )]
    pub pretrained_sha256: Option<String>,
    /// The seed.
    #[arg(
        long,
        value_name = "S",
        allow_hyphen_values = true,
        help = "seed of the split, shuffles, crops, augmentation, mix and weights (default 0)"
    )]
    pub seed: Option<u64>,
    /// Where to run.
    #[arg(long, value_name = "auto|cpu|cuda|cuda:N", value_parser = device,
          help = "where to run; auto picks CUDA when libtorch sees it (default auto)")]
    pub device: Option<String>,
}

/// timm's `Mixup` settings on the command line (`--mix timm`), under timm's train.py names.
#[derive(Debug, Clone, Default, PartialEq, Args)]
#[command(next_help_heading = "timm's Mixup (with --mix timm)")]
pub struct TimmOpts {
    /// `--mixup`: MixUp's alpha.
    #[arg(
        long = "mixup",
        value_name = "A",
        allow_hyphen_values = true,
        help = "MixUp's Beta(A, A); 0 turns MixUp off (default 1.0, timm's Mixup class)"
    )]
    pub mixup_alpha: Option<f32>,
    /// `--cutmix`: CutMix's alpha.
    #[arg(
        long = "cutmix",
        value_name = "A",
        allow_hyphen_values = true,
        help = "CutMix's Beta(A, A); 0 turns CutMix off (default 0)"
    )]
    pub cutmix_alpha: Option<f32>,
    /// `--cutmix-minmax LO,HI`.
    #[arg(
        long,
        value_name = "LO,HI",
        help = "CutMix box sides drawn uniformly between these fractions of the image instead of from \
                  lambda (turns CutMix on; timm's cutmix_minmax)"
    )]
    pub cutmix_minmax: Option<String>,
    /// `--mixup-prob`.
    #[arg(
        long,
        value_name = "P",
        allow_hyphen_values = true,
        help = "probability that a batch (pair, element) is mixed at all (default 1.0)"
    )]
    pub mixup_prob: Option<f32>,
    /// `--mixup-switch-prob`.
    #[arg(
        long,
        value_name = "P",
        allow_hyphen_values = true,
        help = "probability of CutMix rather than MixUp when both are on (default 0.5)"
    )]
    pub mixup_switch_prob: Option<f32>,
    /// `--mixup-mode`.
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        help = "one draw per batch, per pair or per element (default batch)"
    )]
    pub mixup_mode: Option<TimmMode>,
    /// `--no-correct-lam`.
    #[arg(
        long,
        help = "keep CutMix's drawn lambda instead of the clipped box's area (timm corrects it)"
    )]
    pub no_correct_lam: bool,
    /// `--smoothing`.
    #[arg(
        long,
        value_name = "S",
        allow_hyphen_values = true,
        help = "label smoothing of the mixed targets, in [0, 1) (default 0.1, timm's)"
    )]
    pub smoothing: Option<f32>,
}

/// The options of `train`, as given (`None`: not given). [`TrainOpts::resolve`] checks them and
/// fills in the defaults.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct TrainOpts {
    /// The mix callback.
    #[arg(
        long,
        value_enum,
        help = "the mix callback: fastai's MixUp or CutMix, timm's Mixup, or none (default mixup)"
    )]
    pub mix: Option<MixChoice>,
    /// Beta concentration.
    #[arg(
        long,
        value_name = "A",
        allow_hyphen_values = true,
        help = "Beta(A, A) concentration of --mix mixup|cutmix (default 1.0, the seed's MixUp(1.) and \
                  CutMix(1.); --alpha 0.4 is fastai's MixUp class default)"
    )]
    pub alpha: Option<f32>,
    /// Epochs.
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        help = "epochs of the one-cycle schedule (default 1)"
    )]
    pub epochs: Option<usize>,
    /// `lr_max`.
    #[arg(
        long,
        value_name = "LR|LO..HI|..HI",
        allow_hyphen_values = true,
        help = "lr_max of fit_one_cycle (default 1e-3); LO..HI spreads it over the parameter groups \
                  like fastai's slice(LO, HI), ..HI like slice(HI)"
    )]
    pub lr: Option<String>,
    /// `fine_tune(N)`.
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        help = "run fastai's fine_tune(N) instead of fit_one_cycle: --freeze-epochs with the body frozen, \
                  then N epochs unfrozen with slice(lr/200, lr/2); --lr is base_lr (default 2e-3)"
    )]
    pub fine_tune: Option<usize>,
    /// Frozen epochs first.
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        help = "with --fine-tune: epochs with the body frozen first (default 1, as fastai)"
    )]
    pub freeze_epochs: Option<usize>,
    /// Data and model.
    #[command(flatten)]
    pub data: DataModelOpts,
    /// Resume a run folder.
    #[arg(
        long,
        value_name = "RUN",
        help = "continue the run folder RUN from its last intact checkpoint, with its config.json"
    )]
    pub resume: Option<PathBuf>,
    /// Where run folders go.
    #[arg(
        long,
        value_name = "DIR",
        help = "where run folders are made (default runs)"
    )]
    pub out: Option<PathBuf>,
    /// Stop early.
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        help = "stop after N epochs of the schedule and keep the checkpoint (continue with --resume)"
    )]
    pub stop_after: Option<usize>,
    /// Switch mixing off.
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        help = "train without mixing from epoch N on (0-based, timm's --mixup-off-epoch); default never"
    )]
    pub mixup_off_epoch: Option<usize>,
    /// Best checkpoint.
    #[arg(
        long,
        value_enum,
        value_name = "METRIC",
        help = "keep best/ beside the last checkpoint: the weights of the epoch with the best validation \
                  METRIC (fastai's SaveModelCallback; default valid_loss)"
    )]
    pub save_best: Option<BestMetric>,
    /// SyncBatchNorm.
    #[arg(
        long,
        help = "with data-parallel training (--nproc or torchrun), normalise every BatchNorm layer with the \
                  whole job's batch statistics (PyTorch's SyncBatchNorm) instead of each rank's own \
                  (DDP's default); a single process has nothing to synchronise"
    )]
    pub sync_bn: bool,
    /// Arithmetic.
    #[arg(
        long,
        value_enum,
        help = "arithmetic of the passes: auto is bf16 autocast on a CUDA device that supports it, fp16 \
                  with loss scaling on one that does not, fp32 on the CPU; fp32 is fastai's default (default auto)"
    )]
    pub precision: Option<Precision>,
    /// Layout.
    #[arg(
        long,
        value_enum,
        help = "layout of images and convolution weights: contiguous is fastai's NCHW; channels-last is NHWC \
                  (faster convolutions on CPU and CUDA), refused where a check of both layouts finds its \
                  gradients disagree with NCHW's; auto is channels-last where that check agrees, else contiguous (default \
                  auto)"
    )]
    pub memory_format: Option<MemoryFormat>,
    /// Image cache.
    #[arg(
        long,
        value_enum,
        help = "keep decoded, resized images in memory after their first epoch; auto does when the worst \
                  case takes under half the memory available (default auto)"
    )]
    pub cache_images: Option<CacheImages>,
    /// Data-parallel processes.
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        help = "processes to launch on this machine for data-parallel training, one rank each (torchrun \
                  --nproc_per_node); on CUDA one per GPU (default 1)"
    )]
    pub nproc: Option<usize>,
    /// timm's knobs.
    #[command(flatten)]
    pub timm: TimmOpts,
    /// A settings file.
    #[arg(
        long,
        value_name = "FILE",
        help = "read settings from a TOML (or .json) file whose keys are these options' long names \
                  (bs = 32, mixup_off_epoch = 5); options on the command line win"
    )]
    pub config: Option<PathBuf>,
}

/// `train`'s options as a command of their own: how both binaries read `--config` files (the file's
/// settings go first, the command line after, and the last value of an option wins).
#[derive(Debug, Parser)]
#[command(name = "train", args_override_self = true)]
pub struct TrainCli {
    /// The options.
    #[command(flatten)]
    pub opts: TrainOpts,
}

/// How `--lr` spreads over the parameter groups (fastai's float, `slice(hi)`, `slice(lo, hi)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrSlice {
    /// `LR`: every group the same.
    Same,
    /// `..HI`: `slice(HI)`, the body's groups at HI/10.
    Tenth,
    /// `LO..HI`: `slice(LO, HI)`, evenly spaced on a log scale.
    From(f64),
}

/// Reads `--lr`: `LR`, `..HI` or `LO..HI`, each rate finite, > 0 and at most [`MAX_LR`], LO < HI.
pub fn parse_lr(raw: &str) -> Result<(f64, LrSlice)> {
    let rate = |s: &str| -> Result<f64> {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|e| Error::usage(format!("--lr {raw}: cannot read `{s}`: {e}")))?;
        if !(v.is_finite() && v > 0.0 && v <= MAX_LR) {
            usage!("--lr {raw}: expected learning rates that are finite and > 0, at most {MAX_LR}");
        }
        Ok(v)
    };
    match raw.split_once("..") {
        None => Ok((rate(raw)?, LrSlice::Same)),
        Some(("", hi)) => Ok((rate(hi)?, LrSlice::Tenth)),
        Some((lo, hi)) => {
            let (lo, hi) = (rate(lo)?, rate(hi)?);
            if lo >= hi {
                usage!("--lr {raw}: expected LO..HI with LO < HI");
            }
            Ok((hi, LrSlice::From(lo)))
        }
    }
}

/// fastai's `fine_tune(epochs, base_lr, freeze_epochs)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FineTuneArgs {
    /// Epochs after unfreezing.
    pub epochs: usize,
    /// Epochs with the body frozen first.
    pub freeze_epochs: usize,
}

/// How a run computes, as opposed to what it computes: may change when a run is resumed (whether
/// a resumed run may change `nproc` is the trainer's to decide: it knows what the run recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeedArgs {
    /// `--precision`: `auto`, `fp32`, `bf16` or `fp16`.
    pub precision: String,
    /// `--memory-format`: `auto`, `contiguous` or `channels-last`.
    pub memory_format: String,
    /// `--cache-images`: `None` for auto, else on or off.
    pub cache_images: Option<bool>,
    /// `--nproc`: data-parallel processes on this machine, 1 to [`MAX_NPROC`].
    pub nproc: usize,
}

impl Default for SpeedArgs {
    fn default() -> Self {
        SpeedArgs {
            precision: "auto".into(),
            memory_format: "auto".into(),
            cache_images: None,
            nproc: 1,
        }
    }
}

/// A new run's settings, every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainArgs {
    /// The mix callback.
    pub mix: MixChoice,
    /// Its Beta concentration (0 for no mix and for timm, whose alphas are in `timm`).
    pub alpha: f32,
    /// timm's `Mixup` settings, with `--mix timm`.
    pub timm: Option<MixConfig>,
    /// Mixing stops from this epoch on.
    pub mixup_off_epoch: Option<usize>,
    /// The metric `best/` is kept by; `None` keeps no best checkpoint.
    pub save_best: Option<BestMetric>,
    /// `--sync-bn`: SyncBatchNorm across the ranks of a data-parallel run.
    pub sync_bn: bool,
    /// Epochs of the one-cycle schedule (with `fine_tune`: of the unfrozen fit).
    pub epochs: usize,
    /// Batch size.
    pub bs: usize,
    /// `lr_max` of the last parameter group (with `fine_tune`: `base_lr`).
    pub lr: f64,
    /// How `lr` spreads over the parameter groups.
    pub lr_slice: LrSlice,
    /// `fine_tune` instead of `fit_one_cycle`.
    pub fine_tune: Option<FineTuneArgs>,
    /// The starting weights.
    pub pretrained: PretrainedArg,
    /// The SHA-256 a `--pretrained URL` download must have.
    pub pretrained_sha256: Option<String>,
    /// The `--dataset` value as given.
    pub dataset: String,
    /// The `--device` value (`auto`, `cpu`, `cuda`, `cuda:N`).
    pub device: String,
    /// The seed.
    pub seed: u64,
    /// The folder run folders are made in.
    pub out: PathBuf,
    /// Item Resize size.
    pub resize: usize,
    /// Training (augmented) image size.
    pub size: usize,
    /// Label regex.
    pub pattern: String,
    /// Stop after this many epochs of the schedule.
    pub stop_after: Option<usize>,
    /// Precision, memory format and image cache.
    pub speed: SpeedArgs,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainCommand {
    /// A new run.
    New(Box<TrainArgs>),
    /// Continue a run folder from its last checkpoint.
    Resume {
        /// The run folder.
        run: PathBuf,
        /// The `--device` value, when given (else the run's own).
        device: Option<String>,
        /// Stop after this many epochs of the schedule.
        stop_after: Option<usize>,
        /// Precision, memory format and image cache for the rest of the run.
        speed: SpeedArgs,
    },
}

/// The name a `--flag` value has on the command line.
fn value_name(v: impl ValueEnum) -> String {
    v.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

fn positive(name: &str, value: Option<usize>, default: usize) -> Result<usize> {
    let n = value.unwrap_or(default);
    if n == 0 {
        usage!("--{name} 0: expected at least 1");
    }
    Ok(n)
}

/// An epoch count of at most [`MAX_EPOCHS`]; `min` is 0 or 1.
fn epochs(name: &str, value: Option<usize>, default: usize, min: usize) -> Result<usize> {
    let n = if min == 0 {
        value.unwrap_or(default)
    } else {
        positive(name, value, default)?
    };
    if n > MAX_EPOCHS {
        usage!("--{name} {n}: expected at most {MAX_EPOCHS} epochs");
    }
    Ok(n)
}

fn side(name: &str, value: Option<usize>, default: usize) -> Result<usize> {
    let n = positive(name, value, default)?;
    if n > MAX_IMAGE_SIDE {
        usage!("--{name} {n}: expected at most {MAX_IMAGE_SIDE} pixels");
    }
    Ok(n)
}

fn probability(name: &str, value: Option<f32>, default: f32) -> Result<f32> {
    let p = value.unwrap_or(default);
    if !(0.0..=1.0).contains(&p) {
        usage!("--{name} {p}: expected a probability in [0, 1]");
    }
    Ok(p)
}

/// The data and model settings shared by `train` and `lr-find`, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct DataModel {
    /// `--dataset` as given.
    pub dataset: String,
    /// Batch size.
    pub bs: usize,
    /// Item Resize size.
    pub resize: usize,
    /// Training image size.
    pub size: usize,
    /// Label regex.
    pub pattern: String,
    /// Starting weights.
    pub pretrained: PretrainedArg,
    /// The SHA-256 of a `--pretrained URL`.
    pub pretrained_sha256: Option<String>,
    /// The seed.
    pub seed: u64,
    /// `--device`.
    pub device: String,
}

impl DataModelOpts {
    /// Checks the options and fills in the defaults (smaller ones for the sample).
    pub fn resolve(&self) -> Result<DataModel> {
        let dataset = self.dataset.clone().unwrap_or_else(|| "pets".into());
        let sample = DatasetArg::parse(&dataset).is_sample();
        let (bs, resize, size) = if sample {
            (16, 128, 112)
        } else {
            (64, 256, 224)
        };
        let resize = side("resize", self.resize, resize)?;
        let size = side("size", self.size, size)?;
        if size > resize {
            usage!("--size {size} is larger than --resize {resize}: expected the training size to be at most the item size");
        }
        let pretrained = match &self.pretrained {
            Some(v) => PretrainedArg::parse(v)?,
            // fastai's vision_learner is pretrained by default; the bundled sample stays offline.
            None if sample => PretrainedArg::None,
            None => PretrainedArg::ImageNet,
        };
        if let Some(hex) = &self.pretrained_sha256 {
            if !matches!(pretrained, PretrainedArg::Url(_)) {
                usage!("--pretrained-sha256 goes with --pretrained URL (imagenet has its checksum built in)");
            }
            crate::weights::check_sha256(hex)?;
        }
        Ok(DataModel {
            dataset,
            bs: positive("bs", self.bs, bs)?,
            resize,
            size,
            pattern: self.pattern.clone().unwrap_or_else(|| SEED_PATTERN.into()),
            pretrained,
            pretrained_sha256: self.pretrained_sha256.clone(),
            seed: self.seed.unwrap_or(0),
            device: self.device.clone().unwrap_or_else(|| "auto".into()),
        })
    }
}

impl TimmOpts {
    /// The options given, by name, to refuse them away from `--mix timm`.
    fn given(&self) -> Option<&'static str> {
        [
            ("mixup", self.mixup_alpha.is_some()),
            ("cutmix", self.cutmix_alpha.is_some()),
            ("cutmix-minmax", self.cutmix_minmax.is_some()),
            ("mixup-prob", self.mixup_prob.is_some()),
            ("mixup-switch-prob", self.mixup_switch_prob.is_some()),
            ("mixup-mode", self.mixup_mode.is_some()),
            ("no-correct-lam", self.no_correct_lam),
            ("smoothing", self.smoothing.is_some()),
        ]
        .into_iter()
        .find(|(_, given)| *given)
        .map(|(name, _)| name)
    }

    /// timm's `Mixup` settings, checked by mix-core's [`Mixer::new`].
    pub fn resolve(&self) -> Result<MixConfig> {
        let defaults = MixConfig::default();
        let alpha = |name: &str, v: Option<f32>, default: Option<f32>| -> Result<Option<f32>> {
            match v {
                None => Ok(default),
                Some(0.0) => Ok(None),
                Some(a) if a.is_finite() && a > 0.0 && a <= MAX_ALPHA => Ok(Some(a)),
                Some(a) => usage!(
                    "--{name} {a}: expected 0 (off) or a finite number > 0 and at most {MAX_ALPHA}"
                ),
            }
        };
        let cutmix_minmax = match &self.cutmix_minmax {
            None => None,
            Some(raw) => {
                let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
                let read = |s: &str| s.parse::<f32>().ok().filter(|v| v.is_finite());
                match parts.as_slice() {
                    [lo, hi] => match (read(lo), read(hi)) {
                        (Some(lo), Some(hi)) if 0.0 <= lo && lo < hi && hi <= 1.0 => Some((lo, hi)),
                        _ => usage!("--cutmix-minmax {raw}: expected LO,HI with 0 <= LO < HI <= 1"),
                    },
                    _ => usage!("--cutmix-minmax {raw}: expected two numbers LO,HI"),
                }
            }
        };
        let smoothing = self.smoothing.unwrap_or(defaults.label_smoothing);
        if !(0.0..1.0).contains(&smoothing) {
            usage!("--smoothing {smoothing}: expected a number in [0, 1)");
        }
        let config = MixConfig {
            mixup_alpha: alpha("mixup", self.mixup_alpha, defaults.mixup_alpha)?,
            cutmix_alpha: alpha("cutmix", self.cutmix_alpha, defaults.cutmix_alpha)?,
            cutmix_minmax,
            prob: probability("mixup-prob", self.mixup_prob, defaults.prob)?,
            switch_prob: probability(
                "mixup-switch-prob",
                self.mixup_switch_prob,
                defaults.switch_prob,
            )?,
            mode: match self.mixup_mode.unwrap_or(TimmMode::Batch) {
                TimmMode::Batch => MixMode::Batch,
                TimmMode::Pair => MixMode::Pair,
                TimmMode::Elem => MixMode::Elem,
            },
            correct_lam: !self.no_correct_lam,
            label_smoothing: smoothing,
        };
        if config.mixup_alpha.is_none()
            && config.cutmix_alpha.is_none()
            && config.cutmix_minmax.is_none()
        {
            usage!("--mix timm with --mixup 0 and --cutmix 0: expected at least one of them on (or --mix none)");
        }
        Mixer::new(config.clone()).map_err(|e| Error::usage(format!("--mix timm: {e}")))?;
        Ok(config)
    }
}

impl TrainOpts {
    /// Reads `args` (the options after the command's name) as `train`'s options, `--config`
    /// applied, and checks them.
    pub fn parse_args(args: &[OsString]) -> Result<TrainCommand> {
        let cli = TrainCli::try_parse_from(
            std::iter::once(OsString::from("train")).chain(args.iter().cloned()),
        )?;
        cli.opts.finish(args)
    }

    /// Applies `--config` (the file's settings read before `args`, the command line these options
    /// were parsed from) and checks the result.
    pub fn finish(self, args: &[OsString]) -> Result<TrainCommand> {
        let Some(path) = &self.config else {
            return self.resolve();
        };
        if self.resume.is_some() {
            usage!("--config cannot be combined with --resume: a resumed run keeps the settings in its config.json");
        }
        let mut argv = vec![OsString::from("train")];
        argv.extend(crate::config::file_args(
            path,
            &<TrainCli as clap::CommandFactory>::command(),
        )?);
        argv.extend(args.iter().cloned());
        TrainCli::try_parse_from(argv)?.opts.resolve()
    }

    /// Checks the options and fills in every default.
    pub fn resolve(&self) -> Result<TrainCommand> {
        let speed = self.speed()?;
        let stop_after = match self.stop_after {
            None => None,
            Some(n) => Some(positive("stop-after", Some(n), 1)?),
        };
        if let Some(run) = &self.resume {
            let allowed = TrainOpts {
                resume: self.resume.clone(),
                data: DataModelOpts {
                    device: self.data.device.clone(),
                    ..DataModelOpts::default()
                },
                stop_after: self.stop_after,
                precision: self.precision,
                memory_format: self.memory_format,
                cache_images: self.cache_images,
                nproc: self.nproc,
                ..TrainOpts::default()
            };
            if allowed != *self {
                let extra = self.first_given_except_resume_options();
                usage!(
                    "--{extra} cannot be combined with --resume: a resumed run keeps the settings in its \
                     config.json (only --device, --stop-after, --precision, --memory-format, \
                     --cache-images and --nproc may change)"
                );
            }
            return Ok(TrainCommand::Resume {
                run: run.clone(),
                device: self.data.device.clone(),
                stop_after,
                speed,
            });
        }
        let mix = self.mix.unwrap_or(MixChoice::MixUp);
        let alpha = self.alpha.unwrap_or(mix.default_alpha());
        match mix {
            MixChoice::None | MixChoice::Timm if self.alpha.is_some() => {
                usage!(
                    "--alpha goes with --mix mixup or cutmix, not --mix {}",
                    mix.name()
                )
            }
            MixChoice::MixUp | MixChoice::CutMix
                if !(alpha.is_finite() && alpha > 0.0 && alpha <= MAX_ALPHA) =>
            {
                usage!("--alpha {alpha}: expected a finite number > 0 and at most {MAX_ALPHA}")
            }
            _ => {}
        }
        let timm = match (mix, self.timm.given()) {
            (MixChoice::Timm, _) => Some(self.timm.resolve()?),
            (_, Some(name)) => usage!(
                "--{name} goes with --mix timm (timm's Mixup), not --mix {}",
                mix.name()
            ),
            (_, None) => None,
        };
        if mix == MixChoice::None && self.mixup_off_epoch.is_some() {
            usage!("--mixup-off-epoch goes with a mix, not --mix none");
        }
        let mixup_off_epoch = match self.mixup_off_epoch {
            Some(n) => Some(epochs("mixup-off-epoch", Some(n), 0, 0)?),
            None => None,
        };
        let dm = self.data.resolve()?;
        let fine_tune = match self.fine_tune {
            None => {
                if self.freeze_epochs.is_some() {
                    usage!("--freeze-epochs goes with --fine-tune N");
                }
                None
            }
            Some(n) => {
                if self.epochs.is_some() {
                    usage!("--epochs cannot be combined with --fine-tune N: N is the number of epochs after unfreezing");
                }
                Some(FineTuneArgs {
                    epochs: epochs("fine-tune", Some(n), 1, 1)?,
                    freeze_epochs: epochs("freeze-epochs", self.freeze_epochs, 1, 0)?,
                })
            }
        };
        let (lr, lr_slice) = match (&self.lr, fine_tune) {
            (None, None) => (DEFAULT_LR, LrSlice::Same),
            (None, Some(_)) => (FINE_TUNE_BASE_LR, LrSlice::Same),
            (Some(raw), None) => parse_lr(raw)?,
            (Some(raw), Some(_)) => match parse_lr(raw)? {
                (lr, LrSlice::Same) => (lr, LrSlice::Same),
                _ => usage!("--lr {raw}: with --fine-tune, --lr is fine_tune's base_lr, one number (it makes the slices itself)"),
            },
        };
        let epochs = match fine_tune {
            Some(ft) => ft.epochs,
            None => epochs("epochs", self.epochs, 1, 1)?,
        };
        let save_best = match self.save_best.unwrap_or(BestMetric::ValidLoss) {
            BestMetric::None => None,
            metric => Some(metric),
        };
        Ok(TrainCommand::New(Box::new(TrainArgs {
            mix,
            alpha: if matches!(mix, MixChoice::MixUp | MixChoice::CutMix) {
                alpha
            } else {
                0.0
            },
            timm,
            mixup_off_epoch,
            save_best,
            sync_bn: self.sync_bn,
            epochs,
            bs: dm.bs,
            lr,
            lr_slice,
            fine_tune,
            pretrained: dm.pretrained,
            pretrained_sha256: dm.pretrained_sha256,
            dataset: dm.dataset,
            device: dm.device,
            seed: dm.seed,
            out: self.out.clone().unwrap_or_else(|| PathBuf::from("runs")),
            resize: dm.resize,
            size: dm.size,
            pattern: dm.pattern,
            stop_after,
            speed,
        })))
    }

    fn speed(&self) -> Result<SpeedArgs> {
        let nproc = positive("nproc", self.nproc, 1)?;
        if nproc > MAX_NPROC {
            usage!("--nproc {nproc}: expected at most {MAX_NPROC} processes");
        }
        Ok(SpeedArgs {
            precision: value_name(self.precision.unwrap_or(Precision::Auto)),
            memory_format: value_name(self.memory_format.unwrap_or(MemoryFormat::Auto)),
            cache_images: match self.cache_images.unwrap_or(CacheImages::Auto) {
                CacheImages::Auto => None,
                CacheImages::On => Some(true),
                CacheImages::Off => Some(false),
            },
            nproc,
        })
    }

    /// The first option given that a resumed run cannot take, for the message.
    fn first_given_except_resume_options(&self) -> &'static str {
        let d = &self.data;
        [
            ("mix", self.mix.is_some()),
            ("alpha", self.alpha.is_some()),
            ("epochs", self.epochs.is_some()),
            ("lr", self.lr.is_some()),
            ("fine-tune", self.fine_tune.is_some()),
            ("freeze-epochs", self.freeze_epochs.is_some()),
            ("dataset", d.dataset.is_some()),
            ("bs", d.bs.is_some()),
            ("resize", d.resize.is_some()),
            ("size", d.size.is_some()),
            ("pattern", d.pattern.is_some()),
            ("pretrained", d.pretrained.is_some()),
            ("pretrained-sha256", d.pretrained_sha256.is_some()),
            ("seed", d.seed.is_some()),
            ("out", self.out.is_some()),
            ("mixup-off-epoch", self.mixup_off_epoch.is_some()),
            ("save-best", self.save_best.is_some()),
            ("sync-bn", self.sync_bn),
            ("config", self.config.is_some()),
        ]
        .into_iter()
        .find(|(_, given)| *given)
        .map(|(name, _)| name)
        .or_else(|| self.timm.given())
        .unwrap_or("an option")
    }
}

/// The options of `lr-find`.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct LrFindOpts {
    /// Data and model.
    #[command(flatten)]
    pub data: DataModelOpts,
    /// First rate.
    #[arg(
        long,
        value_name = "LR",
        allow_hyphen_values = true,
        help = "learning rate of the first step (default 1e-7)"
    )]
    pub start_lr: Option<f64>,
    /// Last rate.
    #[arg(
        long,
        value_name = "LR",
        allow_hyphen_values = true,
        help = "learning rate the schedule reaches at --num-it (default 10)"
    )]
    pub end_lr: Option<f64>,
    /// Steps.
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        help = "steps of the search (default 100)"
    )]
    pub num_it: Option<usize>,
    /// Run every step.
    #[arg(long, help = "run all --num-it steps even when the loss diverges")]
    pub no_stop_div: bool,
    /// The plot.
    #[arg(
        long,
        value_name = "PNG",
        help = "the plot to write (default lr_find.png)"
    )]
    pub out: Option<PathBuf>,
}

/// `lr-find`'s settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LrFindArgs {
    /// Data and model, defaults filled in.
    pub data: DataModel,
    /// First learning rate.
    pub start_lr: f64,
    /// Last learning rate.
    pub end_lr: f64,
    /// Steps.
    pub num_it: usize,
    /// Stop on divergence.
    pub stop_div: bool,
    /// The PNG to write.
    pub out: PathBuf,
}

impl LrFindOpts {
    /// Checks the options and fills in the defaults.
    pub fn resolve(&self) -> Result<LrFindArgs> {
        let rate = |name: &str, v: Option<f64>, default: f64| -> Result<f64> {
            let v = v.unwrap_or(default);
            if !(v.is_finite() && v > 0.0) {
                usage!("--{name} {v}: expected a finite number > 0");
            }
            Ok(v)
        };
        let data = self.data.resolve()?;
        let start_lr = rate("start-lr", self.start_lr, 1e-7)?;
        let end_lr = rate("end-lr", self.end_lr, 10.0)?;
        if start_lr >= end_lr {
            usage!("--start-lr {start_lr} --end-lr {end_lr}: expected the start below the end");
        }
        Ok(LrFindArgs {
            data,
            start_lr,
            end_lr,
            num_it: positive("num-it", self.num_it, 100)?,
            stop_div: !self.no_stop_div,
            out: self
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("lr_find.png")),
        })
    }
}

/// The options of `predict`.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct PredictOpts {
    /// The run folder.
    #[arg(
        long,
        value_name = "RUN",
        help = "the run folder to predict with (made by train: config.json and model.safetensors)"
    )]
    pub run: Option<PathBuf>,
    /// Classes per image.
    #[arg(
        long,
        value_name = "K",
        allow_hyphen_values = true,
        help = "how many classes to print per image (default 3)"
    )]
    pub top: Option<usize>,
    /// Images per pass.
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        help = "images per forward pass (default 64)"
    )]
    pub bs: Option<usize>,
    /// Where to run.
    #[arg(long, value_name = "auto|cpu|cuda|cuda:N", value_parser = device,
          help = "where to run; auto picks CUDA when libtorch sees it (default auto)")]
    pub device: Option<String>,
    /// The images.
    #[arg(value_name = "IMAGE", help = "image files or folders of images")]
    pub images: Vec<PathBuf>,
}

/// `predict`'s settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictArgs {
    /// The run folder.
    pub run: PathBuf,
    /// Images and folders of images.
    pub images: Vec<PathBuf>,
    /// Classes per line.
    pub top: usize,
    /// Images per forward pass.
    pub bs: usize,
    /// `--device`.
    pub device: String,
}

impl PredictOpts {
    /// Checks the options and fills in the defaults.
    pub fn resolve(&self) -> Result<PredictArgs> {
        let Some(run) = &self.run else {
            usage!("--run RUN is required: the run folder to predict with (for example runs/<timestamp>)");
        };
        if self.images.is_empty() {
            usage!(
                "no images given: expected one or more image files or folders after the options"
            );
        }
        Ok(PredictArgs {
            run: run.clone(),
            images: self.images.clone(),
            top: positive("top", self.top, 3)?,
            bs: positive("bs", self.bs, 64)?,
            device: self.device.clone().unwrap_or_else(|| "auto".into()),
        })
    }
}

/// Fails unless `run` holds a config.json (a run folder made by `train`); `option` names the flag.
pub fn check_run_folder(option: &str, run: &Path) -> Result<()> {
    if !run.join("config.json").is_file() {
        usage!(
            "{option} {}: no config.json there; expected a run folder made by `train` (for example \
             runs/<timestamp>)",
            run.display()
        );
    }
    Ok(())
}

//! The options of `cargo xtask train`, `lr-find` and `predict` and of the mix-train binary: one set
//! of tables, read and checked the same way by both. xtask uses them to fail fast (before building
//! anything that links libtorch); the binary compiles this same file with `#[path]`.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::args::{self, Opt, Parsed};
use crate::dataset::{DatasetArg, DATASET_HELP, SEED_PATTERN};
use crate::weights::PretrainedArg;

/// What `--help` says the command does.
pub const ABOUT: &str = "Train ResNet18 on a dataset with MixUp or CutMix and fit_one_cycle: the seed's \
vision_learner(dls, resnet18, metrics=error_rate).fit_one_cycle(EPOCHS, LR, cbs=MixUp(ALPHA)), \
ImageNet-pretrained with the body frozen (as fastai) unless --pretrained none; --fine-tune N runs \
fastai's fine_tune(N) instead. Writes runs/<timestamp>/ with config.json, metrics.csv (fastai's epoch \
table), steps.csv (lr, momentum and loss per step), model.safetensors, checkpoints and curves.png. The \
sample dataset gets smaller defaults (--bs 16 --resize 128 --size 112 --pretrained none) so that it \
trains offline in about a minute on a CPU.";

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

const MIX: Opt = Opt {
    name: "mix",
    value: Some("mixup|cutmix|none"),
    help: "the mix callback (default mixup)",
};
const ALPHA: Opt = Opt {
    name: "alpha",
    value: Some("A"),
    help: "Beta(A, A) concentration (default 1.0, the seed's MixUp(1.) and CutMix(1.); --alpha 0.4 is \
           fastai's MixUp class default)",
};
const EPOCHS: Opt = Opt {
    name: "epochs",
    value: Some("N"),
    help: "epochs of the one-cycle schedule (default 1)",
};
const FINE_TUNE: Opt = Opt {
    name: "fine-tune",
    value: Some("N"),
    help:
        "run fastai's fine_tune(N) instead of fit_one_cycle: --freeze-epochs with the body frozen, \
           then N epochs unfrozen with slice(lr/200, lr/2); --lr is base_lr (default 2e-3)",
};
const FREEZE_EPOCHS: Opt = Opt {
    name: "freeze-epochs",
    value: Some("N"),
    help: "with --fine-tune: epochs with the body frozen first (default 1, as fastai)",
};
const BS: Opt = Opt {
    name: "bs",
    value: Some("N"),
    help: "batch size (default 64; sample: 16)",
};
const LR: Opt = Opt {
    name: "lr",
    value: Some("LR|LO..HI|..HI"),
    help:
        "lr_max of fit_one_cycle (default 1e-3); LO..HI spreads it over the parameter groups like \
           fastai's slice(LO, HI), ..HI like slice(HI)",
};
const PRETRAINED: Opt = Opt {
    name: "pretrained",
    value: Some("imagenet|none|PATH|URL"),
    help: "starting weights: imagenet (torchvision's ResNet18, downloaded once and checked, the \
           default as in fastai; sample: none), none (from scratch), or torchvision ResNet18 weights \
           as .safetensors from a file or URL; pretrained bodies start frozen except BatchNorm",
};
const PRETRAINED_SHA256: Opt = Opt {
    name: "pretrained-sha256",
    value: Some("HEX"),
    help: "with --pretrained URL: the SHA-256 the download must have",
};
const DATASET: Opt = Opt {
    name: "dataset",
    value: Some("pets|sample|URL|DIR"),
    help: DATASET_HELP,
};
const DEVICE: Opt = Opt {
    name: "device",
    value: Some("auto|cpu|cuda|cuda:N"),
    help: "where to run; auto picks CUDA when libtorch sees it (default auto)",
};
const SEED: Opt = Opt {
    name: "seed",
    value: Some("S"),
    help: "seed of the split, shuffles, crops, augmentation, mix and weights (default 0)",
};
const RESUME: Opt = Opt {
    name: "resume",
    value: Some("RUN"),
    help: "continue the run folder RUN from its last checkpoint, with its config.json",
};
const OUT: Opt = Opt {
    name: "out",
    value: Some("DIR"),
    help: "where run folders are made (default runs)",
};
const RESIZE: Opt = Opt {
    name: "resize",
    value: Some("PX"),
    help: "item transform Resize(PX, method='crop') (default 256; sample: 128)",
};
const SIZE: Opt = Opt {
    name: "size",
    value: Some("PX"),
    help: "aug_transforms(size=PX): the training image size (default 224; sample: 112)",
};
const PATTERN: Opt = Opt {
    name: "pattern",
    value: Some("RE"),
    help: "label regex, group 1 is the label (default the seed's ([^/]+)_\\d+.*$)",
};
const STOP_AFTER: Opt = Opt {
    name: "stop-after",
    value: Some("N"),
    help: "stop after N epochs of the schedule and keep the checkpoint (continue with --resume)",
};
const PRECISION: Opt = Opt {
    name: "precision",
    value: Some("auto|fp32|bf16|fp16"),
    help: "arithmetic of the passes: auto is bf16 autocast on a CUDA device that supports it, fp16 with \
           loss scaling on one that does not, fp32 on the CPU; fp32 is fastai's default (default auto)",
};
const MEMORY_FORMAT: Opt = Opt {
    name: "memory-format",
    value: Some("channels-last|contiguous"),
    help: "layout of images and convolution weights on CUDA: contiguous is fastai's NCHW, channels-last \
           is NHWC for cuDNN; refused on the CPU, where its gradients disagree with NCHW (default contiguous)",
};
const CACHE_IMAGES: Opt = Opt {
    name: "cache-images",
    value: Some("auto|on|off"),
    help: "keep decoded, resized images in memory after their first epoch; auto does when the worst case \
           takes under half the memory available (default auto)",
};

/// Every option of `train`, in the order `--help` lists them.
pub const OPTS: &[Opt] = &[
    MIX,
    ALPHA,
    EPOCHS,
    BS,
    LR,
    PRETRAINED,
    PRETRAINED_SHA256,
    FINE_TUNE,
    FREEZE_EPOCHS,
    DATASET,
    DEVICE,
    SEED,
    RESUME,
    OUT,
    RESIZE,
    SIZE,
    PATTERN,
    STOP_AFTER,
    PRECISION,
    MEMORY_FORMAT,
    CACHE_IMAGES,
];

/// Every option of `lr-find`.
pub const LR_FIND_OPTS: &[Opt] = &[
    DATASET,
    BS,
    PRETRAINED,
    PRETRAINED_SHA256,
    DEVICE,
    SEED,
    RESIZE,
    SIZE,
    PATTERN,
    Opt {
        name: "start-lr",
        value: Some("LR"),
        help: "learning rate of the first step (default 1e-7)",
    },
    Opt {
        name: "end-lr",
        value: Some("LR"),
        help: "learning rate the schedule reaches at --num-it (default 10)",
    },
    Opt {
        name: "num-it",
        value: Some("N"),
        help: "steps of the search (default 100)",
    },
    Opt {
        name: "no-stop-div",
        value: None,
        help: "run all --num-it steps even when the loss diverges",
    },
    Opt {
        name: "out",
        value: Some("PNG"),
        help: "the plot to write (default lr_find.png)",
    },
];

/// Every option of `predict`.
pub const PREDICT_OPTS: &[Opt] = &[
    Opt {
        name: "run",
        value: Some("RUN"),
        help: "the run folder to predict with (made by train: config.json and model.safetensors)",
    },
    Opt {
        name: "top",
        value: Some("K"),
        help: "how many classes to print per image (default 3)",
    },
    Opt {
        name: "bs",
        value: Some("N"),
        help: "images per forward pass (default 64)",
    },
    DEVICE,
];

/// Options that may come with `--resume` (everything else is fixed by the run's config.json).
const RESUME_OPTS: &[&str] = &[
    "resume",
    "device",
    "stop-after",
    "precision",
    "memory-format",
    "cache-images",
];

/// How a run computes, as opposed to what it computes: may change when a run is resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeedArgs {
    /// `--precision`: `auto`, `fp32`, `bf16` or `fp16`.
    pub precision: String,
    /// `--memory-format channels-last` (true) or `contiguous`.
    pub channels_last: bool,
    /// `--cache-images`: `None` for auto, else on or off.
    pub cache_images: Option<bool>,
}

impl Default for SpeedArgs {
    fn default() -> Self {
        SpeedArgs {
            precision: "auto".into(),
            channels_last: false,
            cache_images: None,
        }
    }
}

fn speed(opts: &Parsed) -> Result<SpeedArgs> {
    let precision = opts.get("precision").unwrap_or("auto").to_string();
    if !matches!(precision.as_str(), "auto" | "fp32" | "bf16" | "fp16") {
        bail!("--precision {precision}: expected auto, fp32, bf16 or fp16");
    }
    let channels_last = match opts.get("memory-format").unwrap_or("contiguous") {
        "channels-last" => true,
        "contiguous" => false,
        other => bail!("--memory-format {other}: expected channels-last or contiguous"),
    };
    let cache_images = match opts.get("cache-images").unwrap_or("auto") {
        "auto" => None,
        "on" => Some(true),
        "off" => Some(false),
        other => bail!("--cache-images {other}: expected auto, on or off"),
    };
    Ok(SpeedArgs {
        precision,
        channels_last,
        cache_images,
    })
}

/// Largest `--resize`/`--size` accepted: a 4096-pixel square item is already 48 MiB as u8.
pub const MAX_IMAGE_SIDE: usize = 4096;

/// Which mix callback trains the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixChoice {
    /// fastai's `MixUp(alpha)`.
    MixUp,
    /// fastai's `CutMix(alpha)`.
    CutMix,
    /// No mix: plain cross-entropy training.
    None,
}

impl MixChoice {
    /// The option value naming it.
    pub fn name(self) -> &'static str {
        match self {
            MixChoice::MixUp => "mixup",
            MixChoice::CutMix => "cutmix",
            MixChoice::None => "none",
        }
    }

    /// Reads an option value.
    pub fn parse(value: &str) -> Result<MixChoice> {
        Ok(match value {
            "mixup" => MixChoice::MixUp,
            "cutmix" => MixChoice::CutMix,
            "none" => MixChoice::None,
            other => bail!("--mix {other}: expected mixup, cutmix or none"),
        })
    }

    /// The default alpha: the seed's 1.0 for both mixes (none: unused, 0).
    pub fn default_alpha(self) -> f32 {
        match self {
            MixChoice::MixUp | MixChoice::CutMix => SEED_ALPHA,
            MixChoice::None => 0.0,
        }
    }
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

/// The largest learning rate `--lr` takes: lr_find's default end, where every model has diverged.
pub const MAX_LR: f64 = 10.0;
/// The largest `--alpha`: Beta(A, A) is then 0.5 within 1%, and far larger concentrations make the
/// Gamma draws behind it overflow.
pub const MAX_ALPHA: f32 = 10_000.0;

/// Reads `--lr`: `LR`, `..HI` or `LO..HI`, each rate finite, > 0 and at most [`MAX_LR`], LO < HI.
pub fn parse_lr(raw: &str) -> Result<(f64, LrSlice)> {
    let rate = |s: &str| -> Result<f64> {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("--lr {raw}: cannot read `{s}`: {e}"))?;
        if !(v.is_finite() && v > 0.0 && v <= MAX_LR) {
            bail!("--lr {raw}: expected learning rates that are finite and > 0, at most {MAX_LR}");
        }
        Ok(v)
    };
    match raw.split_once("..") {
        None => Ok((rate(raw)?, LrSlice::Same)),
        Some(("", hi)) => Ok((rate(hi)?, LrSlice::Tenth)),
        Some((lo, hi)) => {
            let (lo, hi) = (rate(lo)?, rate(hi)?);
            if lo >= hi {
                bail!("--lr {raw}: expected LO..HI with LO < HI");
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

/// A new run's settings, every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainArgs {
    /// The mix callback.
    pub mix: MixChoice,
    /// Its Beta concentration (0 for no mix).
    pub alpha: f32,
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
    New(TrainArgs),
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

/// `lr-find`'s settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LrFindArgs {
    /// `--dataset` as given.
    pub dataset: String,
    /// Batch size.
    pub bs: usize,
    /// The starting weights.
    pub pretrained: PretrainedArg,
    /// The SHA-256 a `--pretrained URL` download must have.
    pub pretrained_sha256: Option<String>,
    /// `--device`.
    pub device: String,
    /// The seed.
    pub seed: u64,
    /// Item Resize size.
    pub resize: usize,
    /// Training image size.
    pub size: usize,
    /// Label regex.
    pub pattern: String,
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

/// Reads `--device`: `auto`, `cpu`, `cuda` or `cuda:N`.
pub fn check_device(value: &str) -> Result<()> {
    let ok = matches!(value, "auto" | "cpu" | "cuda")
        || value
            .strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<usize>().is_ok());
    if !ok {
        bail!("--device {value}: expected auto, cpu, cuda or cuda:N");
    }
    Ok(())
}

fn positive(opts: &Parsed, name: &str, default: usize) -> Result<usize> {
    let n: usize = opts.parse_or(name, default)?;
    if n == 0 {
        bail!("--{name} 0: expected at least 1");
    }
    Ok(n)
}

/// The most epochs a fit may ask for: far beyond any real run, low enough that epoch and step counts
/// cannot overflow.
pub const MAX_EPOCHS: usize = 100_000;

/// Reads an epoch count of at most [`MAX_EPOCHS`]; `min` is 0 or 1.
fn epochs(opts: &Parsed, name: &str, default: usize, min: usize) -> Result<usize> {
    let n = if min == 0 {
        opts.parse_or(name, default)?
    } else {
        positive(opts, name, default)?
    };
    if n > MAX_EPOCHS {
        bail!("--{name} {n}: expected at most {MAX_EPOCHS} epochs");
    }
    Ok(n)
}

/// Refuses an option given with an empty value (`--out ""`, `--bs=`), naming it.
fn no_empty_values(opts: &Parsed, table: &[Opt]) -> Result<()> {
    if let Some(o) = table
        .iter()
        .find(|o| o.value.is_some() && opts.get(o.name) == Some(""))
    {
        bail!(
            "--{}: expected {}, found an empty value",
            o.name,
            o.value.unwrap_or("a value")
        );
    }
    Ok(())
}

fn side(opts: &Parsed, name: &str, default: usize) -> Result<usize> {
    let n = positive(opts, name, default)?;
    if n > MAX_IMAGE_SIDE {
        bail!("--{name} {n}: expected at most {MAX_IMAGE_SIDE} pixels");
    }
    Ok(n)
}

fn rate(opts: &Parsed, name: &str, default: f64) -> Result<f64> {
    let v: f64 = opts.parse_or(name, default)?;
    if !(v.is_finite() && v > 0.0) {
        bail!("--{name} {v}: expected a finite number > 0");
    }
    Ok(v)
}

/// The data and model options shared by `train` and `lr-find`.
struct DataModel {
    dataset: String,
    bs: usize,
    resize: usize,
    size: usize,
    pattern: String,
    pretrained: PretrainedArg,
    pretrained_sha256: Option<String>,
    seed: u64,
    device: String,
}

fn data_model(opts: &Parsed) -> Result<DataModel> {
    let device = opts.get("device").unwrap_or("auto").to_string();
    check_device(&device)?;
    let dataset = opts.get("dataset").unwrap_or("pets").to_string();
    let sample = DatasetArg::parse(&dataset).is_sample();
    let (bs, resize, size) = if sample {
        (16, 128, 112)
    } else {
        (64, 256, 224)
    };
    let resize = side(opts, "resize", resize)?;
    let size = side(opts, "size", size)?;
    if size > resize {
        bail!("--size {size} is larger than --resize {resize}: expected the training size to be at most the item size");
    }
    let pretrained = match opts.get("pretrained") {
        Some(v) => PretrainedArg::parse(v)?,
        // fastai's vision_learner is pretrained by default; the bundled sample stays offline.
        None if sample => PretrainedArg::None,
        None => PretrainedArg::ImageNet,
    };
    let pretrained_sha256 = opts.get("pretrained-sha256").map(str::to_string);
    if let Some(hex) = &pretrained_sha256 {
        if !matches!(pretrained, PretrainedArg::Url(_)) {
            bail!("--pretrained-sha256 goes with --pretrained URL (imagenet has its checksum built in)");
        }
        crate::weights::check_sha256(hex)?;
    }
    Ok(DataModel {
        dataset,
        bs: positive(opts, "bs", bs)?,
        resize,
        size,
        pattern: opts.get("pattern").unwrap_or(SEED_PATTERN).to_string(),
        pretrained,
        pretrained_sha256,
        seed: opts.parse_or("seed", 0)?,
        device,
    })
}

/// Parses and checks the arguments of `train`. `Ok(None)` means `--help` was printed. `task` names
/// the command in the help text.
pub fn parse(task: &str, rest: &[String]) -> Result<Option<TrainCommand>> {
    let Some(opts) = args::parse(task, ABOUT, OPTS, rest)? else {
        return Ok(None);
    };
    no_empty_values(&opts, OPTS)?;
    let stop_after = match opts.get("stop-after") {
        None => None,
        Some(_) => Some(positive(&opts, "stop-after", 1)?),
    };
    if let Some(run) = opts.get("resume") {
        if let Some(extra) = OPTS
            .iter()
            .map(|o| o.name)
            .find(|n| !RESUME_OPTS.contains(n) && opts.get(n).is_some())
        {
            bail!(
                "--{extra} cannot be combined with --resume: a resumed run keeps the settings in its \
                 config.json (only --device, --stop-after, --precision, --memory-format and \
                 --cache-images may change)"
            );
        }
        let device = opts.get("device").map(str::to_string);
        if let Some(d) = &device {
            check_device(d)?;
        }
        return Ok(Some(TrainCommand::Resume {
            run: PathBuf::from(run),
            device,
            stop_after,
            speed: speed(&opts)?,
        }));
    }
    let mix = MixChoice::parse(opts.get("mix").unwrap_or("mixup"))?;
    let alpha: f32 = opts.parse_or("alpha", mix.default_alpha())?;
    if mix == MixChoice::None {
        if opts.get("alpha").is_some() {
            bail!("--alpha goes with --mix mixup or cutmix, not --mix none");
        }
    } else if !(alpha.is_finite() && alpha > 0.0 && alpha <= MAX_ALPHA) {
        bail!("--alpha {alpha}: expected a finite number > 0 and at most {MAX_ALPHA}");
    }
    let dm = data_model(&opts)?;
    let fine_tune = match opts.get("fine-tune") {
        None => {
            if opts.get("freeze-epochs").is_some() {
                bail!("--freeze-epochs goes with --fine-tune N");
            }
            None
        }
        Some(_) => {
            if opts.get("epochs").is_some() {
                bail!("--epochs cannot be combined with --fine-tune N: N is the number of epochs after unfreezing");
            }
            Some(FineTuneArgs {
                epochs: epochs(&opts, "fine-tune", 1, 1)?,
                freeze_epochs: epochs(&opts, "freeze-epochs", 1, 0)?,
            })
        }
    };
    let (lr, lr_slice) = match (opts.get("lr"), fine_tune) {
        (None, None) => (DEFAULT_LR, LrSlice::Same),
        (None, Some(_)) => (FINE_TUNE_BASE_LR, LrSlice::Same),
        (Some(raw), None) => parse_lr(raw)?,
        (Some(raw), Some(_)) => match parse_lr(raw)? {
            (lr, LrSlice::Same) => (lr, LrSlice::Same),
            _ => bail!("--lr {raw}: with --fine-tune, --lr is fine_tune's base_lr, one number (it makes the slices itself)"),
        },
    };
    let epochs = match fine_tune {
        Some(ft) => ft.epochs,
        None => epochs(&opts, "epochs", 1, 1)?,
    };
    let args = TrainArgs {
        mix,
        alpha: if mix == MixChoice::None { 0.0 } else { alpha },
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
        out: PathBuf::from(opts.get("out").unwrap_or("runs")),
        resize: dm.resize,
        size: dm.size,
        pattern: dm.pattern,
        stop_after,
        speed: speed(&opts)?,
    };
    Ok(Some(TrainCommand::New(args)))
}

/// Parses and checks the arguments of `lr-find`. `Ok(None)` means `--help` was printed.
pub fn parse_lr_find(task: &str, rest: &[String]) -> Result<Option<LrFindArgs>> {
    let Some(opts) = args::parse(task, LR_FIND_ABOUT, LR_FIND_OPTS, rest)? else {
        return Ok(None);
    };
    let dm = data_model(&opts)?;
    let start_lr = rate(&opts, "start-lr", 1e-7)?;
    let end_lr = rate(&opts, "end-lr", 10.0)?;
    if start_lr >= end_lr {
        bail!("--start-lr {start_lr} --end-lr {end_lr}: expected the start below the end");
    }
    Ok(Some(LrFindArgs {
        dataset: dm.dataset,
        bs: dm.bs,
        pretrained: dm.pretrained,
        pretrained_sha256: dm.pretrained_sha256,
        device: dm.device,
        seed: dm.seed,
        resize: dm.resize,
        size: dm.size,
        pattern: dm.pattern,
        start_lr,
        end_lr,
        num_it: positive(&opts, "num-it", 100)?,
        stop_div: !opts.flag("no-stop-div"),
        out: PathBuf::from(opts.get("out").unwrap_or("lr_find.png")),
    }))
}

/// Parses and checks the arguments of `predict`. `Ok(None)` means `--help` was printed.
pub fn parse_predict(task: &str, rest: &[String]) -> Result<Option<PredictArgs>> {
    let Some(opts) =
        args::parse_with_positionals(task, PREDICT_ABOUT, PREDICT_OPTS, "IMAGE...", rest)?
    else {
        return Ok(None);
    };
    let Some(run) = opts.get("run") else {
        bail!(
            "--run RUN is required: the run folder to predict with (for example runs/<timestamp>)"
        );
    };
    if opts.positionals().is_empty() {
        bail!("no images given: expected one or more image files or folders after the options");
    }
    let device = opts.get("device").unwrap_or("auto").to_string();
    check_device(&device)?;
    Ok(Some(PredictArgs {
        run: PathBuf::from(run),
        images: opts.positionals().iter().map(PathBuf::from).collect(),
        top: positive(&opts, "top", 3)?,
        bs: positive(&opts, "bs", 64)?,
        device,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    fn new_run(args: &[&str]) -> TrainArgs {
        match parse("train", &strings(args)).unwrap().unwrap() {
            TrainCommand::New(a) => a,
            other => panic!("expected a new run, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_seeds_and_the_sample_gets_smaller_ones() {
        let a = new_run(&[]);
        assert_eq!(
            (a.mix, a.alpha, a.epochs, a.bs, a.lr, a.dataset.as_str()),
            (MixChoice::MixUp, 1.0, 1, 64, 1e-3, "pets")
        );
        assert_eq!(
            (a.pretrained, a.lr_slice, a.fine_tune),
            (PretrainedArg::ImageNet, LrSlice::Same, None)
        );
        assert_eq!((a.resize, a.size, a.device.as_str()), (256, 224, "auto"));
        let s = new_run(&["--dataset", "sample", "--mix", "cutmix"]);
        assert_eq!((s.bs, s.resize, s.size, s.alpha), (16, 128, 112, 1.0));
        assert_eq!(s.pretrained, PretrainedArg::None);
        let s = new_run(&[
            "--dataset",
            "sample",
            "--bs",
            "4",
            "--size",
            "32",
            "--resize",
            "40",
        ]);
        assert_eq!((s.bs, s.resize, s.size), (4, 40, 32));
    }

    #[test]
    fn bad_values_are_refused_with_the_option_named() {
        for (args, want) in [
            (
                &["--mix", "mixop"][..],
                "--mix mixop: expected mixup, cutmix or none",
            ),
            (
                &["--alpha", "0"][..],
                "--alpha 0: expected a finite number > 0",
            ),
            (&["--mix", "none", "--alpha", "1"][..], "--alpha goes with"),
            (&["--epochs", "0"][..], "--epochs 0: expected at least 1"),
            (
                &["--device", "gpu"][..],
                "--device gpu: expected auto, cpu, cuda or cuda:N",
            ),
            (
                &["--size", "300"][..],
                "--size 300 is larger than --resize 256",
            ),
            (
                &["--pretrained", "/no/such.safetensors"][..],
                "no such file",
            ),
            (&["--pretrained", "imagenett"][..], "no such file"),
            (
                &["--resume", "r", "--lr", "1"][..],
                "--lr cannot be combined with --resume",
            ),
            (&["--bogus", "1"][..], "unknown option `--bogus`"),
            (
                &["--fine-tune", "2", "--epochs", "3"][..],
                "--epochs cannot be combined with --fine-tune",
            ),
            (
                &["--freeze-epochs", "2"][..],
                "--freeze-epochs goes with --fine-tune",
            ),
            (
                &["--fine-tune", "1", "--lr", "1e-5..1e-3"][..],
                "base_lr, one number",
            ),
            (&["--lr", "1e-3..1e-5"][..], "LO < HI"),
            (&["--lr", "..0"][..], "finite and > 0"),
            (&["--resize", "100000"][..], "at most 4096"),
            (
                &["--pretrained-sha256", "ab"][..],
                "--pretrained-sha256 goes with --pretrained URL",
            ),
            (
                &[
                    "--pretrained",
                    "http://h/w.safetensors",
                    "--pretrained-sha256",
                    "xyz",
                ][..],
                "64 hexadecimal",
            ),
        ] {
            let err = parse("train", &strings(args)).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn learning_rates_read_like_fastai_floats_and_slices() {
        assert_eq!(parse_lr("3e-3").unwrap(), (3e-3, LrSlice::Same));
        assert_eq!(parse_lr("..1e-3").unwrap(), (1e-3, LrSlice::Tenth));
        assert_eq!(parse_lr("1e-5..1e-3").unwrap(), (1e-3, LrSlice::From(1e-5)));
        let a = new_run(&["--lr", "1e-6..1e-4"]);
        assert_eq!((a.lr, a.lr_slice), (1e-4, LrSlice::From(1e-6)));
    }

    #[test]
    fn fine_tune_takes_fastais_defaults() {
        let a = new_run(&["--fine-tune", "3"]);
        assert_eq!(
            a.fine_tune,
            Some(FineTuneArgs {
                epochs: 3,
                freeze_epochs: 1
            })
        );
        assert_eq!((a.lr, a.epochs), (2e-3, 3));
        let a = new_run(&["--fine-tune", "2", "--freeze-epochs", "0", "--lr", "1e-3"]);
        assert_eq!(
            (a.lr, a.epochs, a.fine_tune.unwrap().freeze_epochs),
            (1e-3, 2, 0)
        );
    }

    #[test]
    fn pretrained_values_are_read_in_order() {
        let a = new_run(&["--pretrained", "none"]);
        assert_eq!(a.pretrained, PretrainedArg::None);
        let a = new_run(&["--dataset", "sample", "--pretrained", "imagenet"]);
        assert_eq!(a.pretrained, PretrainedArg::ImageNet);
        let sha = "ab".repeat(32);
        let a = new_run(&[
            "--pretrained",
            "http://127.0.0.1:1/w.safetensors",
            "--pretrained-sha256",
            &sha,
        ]);
        assert_eq!(
            a.pretrained,
            PretrainedArg::Url("http://127.0.0.1:1/w.safetensors".into())
        );
        assert_eq!(a.pretrained_sha256.as_deref(), Some(sha.as_str()));
    }

    #[test]
    fn lr_find_and_predict_options() {
        let a = parse_lr_find(
            "lr-find",
            &strings(&["--dataset", "sample", "--num-it", "20"]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (a.start_lr, a.end_lr, a.num_it, a.stop_div),
            (1e-7, 10.0, 20, true)
        );
        assert_eq!((a.bs, a.pretrained.clone()), (16, PretrainedArg::None));
        let err = parse_lr_find("lr-find", &strings(&["--start-lr", "1", "--end-lr", "0.1"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected the start below the end"), "{err}");
        let p = parse_predict(
            "predict",
            &strings(&["--run", "r", "a.jpg", "dir", "--top", "2"]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.images, vec![PathBuf::from("a.jpg"), PathBuf::from("dir")]);
        assert_eq!((p.top, p.run), (2, PathBuf::from("r")));
        for (args, want) in [
            (&["a.jpg"][..], "--run RUN is required"),
            (&["--run", "r"][..], "no images given"),
        ] {
            let err = parse_predict("predict", &strings(args))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn every_numeric_option_refuses_zero_negative_nan_inf_huge_and_empty_naming_itself() {
        // Values each option accepts among the hostile ones: a seed of 0 and no frozen epochs.
        let accepted = [("seed", "0"), ("freeze-epochs", "0")];
        for name in [
            "alpha",
            "epochs",
            "fine-tune",
            "freeze-epochs",
            "bs",
            "lr",
            "seed",
            "resize",
            "size",
            "stop-after",
        ] {
            for value in [
                "0",
                "-1",
                "-0.5",
                "NaN",
                "nan",
                "inf",
                "-inf",
                "1e400",
                "18446744073709551616",
                "340282366920938463463374607431768211456",
                "",
                " ",
            ] {
                let mut args = vec![format!("--{name}"), value.to_string()];
                if name == "freeze-epochs" {
                    args.extend(["--fine-tune".to_string(), "1".to_string()]);
                }
                if name == "size" {
                    args.extend(["--resize".to_string(), "4096".to_string()]);
                }
                let got = parse("train", &args);
                if accepted.contains(&(name, value)) {
                    assert!(got.is_ok(), "{args:?}: {got:?}");
                    continue;
                }
                let err = match got {
                    Ok(cmd) => panic!("{args:?} was accepted: {cmd:?}"),
                    Err(e) => format!("{e:#}"),
                };
                assert!(err.starts_with(&format!("--{name}")), "{args:?}: {err}");
                assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            }
        }
        // The largest counts that parse are refused too, instead of overflowing later.
        for (args, want) in [
            (
                &["--epochs", "18446744073709551615"][..],
                "--epochs 18446744073709551615: expected at most 100000 epochs",
            ),
            (
                &[
                    "--fine-tune",
                    "1",
                    "--freeze-epochs",
                    "18446744073709551615",
                ][..],
                "--freeze-epochs 18446744073709551615: expected at most",
            ),
            (
                &["--fine-tune", "100001"][..],
                "--fine-tune 100001: expected at most",
            ),
            (&["--bs", "18446744073709551615"][..], ""),
            (&["--resize", "18446744073709551615"][..], "at most 4096"),
            (
                &["--alpha", "1e39"][..],
                "--alpha inf: expected a finite number > 0",
            ),
            (
                &["--lr", "1e400"][..],
                "--lr 1e400: expected learning rates that are finite",
            ),
        ] {
            match parse("train", &strings(args)) {
                Err(e) => assert!(e.to_string().contains(want), "{args:?}: {e}"),
                // A huge batch size parses; the run refuses it against the dataset's size.
                Ok(_) => assert_eq!(want, "", "{args:?} was accepted"),
            }
        }
        let a = new_run(&["--epochs", "100000", "--seed", "18446744073709551615"]);
        assert_eq!((a.epochs, a.seed), (100_000, u64::MAX));
    }

    #[test]
    fn empty_paths_and_names_are_refused_naming_the_option() {
        for name in [
            "dataset",
            "resume",
            "out",
            "pattern",
            "pretrained",
            "device",
            "mix",
        ] {
            for args in [
                vec![format!("--{name}"), String::new()],
                vec![format!("--{name}=")],
            ] {
                let err = parse("train", &args).unwrap_err().to_string();
                assert!(
                    err.starts_with(&format!("--{name}: expected ")) && err.contains("empty value"),
                    "{args:?}: {err}"
                );
            }
        }
    }

    #[test]
    fn resume_takes_only_device_and_stop_after() {
        let got = parse(
            "train",
            &strings(&["--resume", "runs/a", "--device", "cpu"]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            got,
            TrainCommand::Resume {
                run: PathBuf::from("runs/a"),
                device: Some("cpu".into()),
                stop_after: None,
                speed: SpeedArgs::default(),
            }
        );
    }
}

//! The options of `cargo xtask train` and of the mix-train binary: one table, read and checked the
//! same way by both. xtask uses it to fail fast (before building anything that links libtorch); the
//! binary compiles this same file with `#[path]`.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::args::{self, Opt, Parsed};
use crate::dataset::{DatasetArg, DATASET_HELP, SEED_PATTERN};

/// What `--help` says the command does.
pub const ABOUT: &str = "Train ResNet18 on a dataset with MixUp or CutMix and fit_one_cycle: the seed's \
vision_learner(dls, resnet18, metrics=error_rate).fit_one_cycle(EPOCHS, LR, cbs=MixUp(ALPHA)). \
Writes runs/<timestamp>/ with config.json, metrics.csv (fastai's epoch table), steps.csv (lr, \
momentum and loss per step), model.safetensors, checkpoints and curves.png. The sample dataset gets \
smaller defaults (--bs 16 --resize 128 --size 112) so that it trains in about a minute on a CPU.";

/// Every option, in the order `--help` lists them.
pub const OPTS: &[Opt] = &[
    Opt {
        name: "mix",
        value: Some("mixup|cutmix|none"),
        help: "the mix callback (default mixup)",
    },
    Opt {
        name: "alpha",
        value: Some("A"),
        help: "Beta(A, A) concentration (default: mixup 0.4, cutmix 1.0, as fastai)",
    },
    Opt {
        name: "epochs",
        value: Some("N"),
        help: "epochs of the one-cycle schedule (default 1)",
    },
    Opt {
        name: "bs",
        value: Some("N"),
        help: "batch size (default 64; sample: 16)",
    },
    Opt {
        name: "lr",
        value: Some("LR"),
        help: "lr_max of fit_one_cycle (default 1e-3)",
    },
    Opt {
        name: "pretrained",
        value: Some("PATH|none"),
        help: "torchvision ResNet18 weights (.safetensors) to start from, body frozen except \
               BatchNorm; none trains from scratch (default none)",
    },
    Opt {
        name: "dataset",
        value: Some("pets|sample|URL|DIR"),
        help: DATASET_HELP,
    },
    Opt {
        name: "device",
        value: Some("auto|cpu|cuda|cuda:N"),
        help: "where to train; auto picks CUDA when libtorch sees it (default auto)",
    },
    Opt {
        name: "seed",
        value: Some("S"),
        help: "seed of the split, shuffles, crops, augmentation, mix and weights (default 0)",
    },
    Opt {
        name: "resume",
        value: Some("RUN"),
        help: "continue the run folder RUN from its last checkpoint, with its config.json",
    },
    Opt {
        name: "out",
        value: Some("DIR"),
        help: "where run folders are made (default runs)",
    },
    Opt {
        name: "resize",
        value: Some("PX"),
        help: "item transform Resize(PX, method='crop') (default 256; sample: 128)",
    },
    Opt {
        name: "size",
        value: Some("PX"),
        help: "aug_transforms(size=PX): the training image size (default 224; sample: 112)",
    },
    Opt {
        name: "pattern",
        value: Some("RE"),
        help: "label regex, group 1 is the label (default the seed's ([^/]+)_\\d+.*$)",
    },
    Opt {
        name: "stop-after",
        value: Some("N"),
        help:
            "stop after N epochs of the schedule and keep the checkpoint (continue with --resume)",
    },
];

/// Options that may come with `--resume` (everything else is fixed by the run's config.json).
const RESUME_OPTS: &[&str] = &["resume", "device", "stop-after"];

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

    /// fastai's default alpha for this mix (none: unused, 0).
    pub fn default_alpha(self) -> f32 {
        match self {
            MixChoice::MixUp => 0.4,
            MixChoice::CutMix => 1.0,
            MixChoice::None => 0.0,
        }
    }
}

/// A new run's settings, every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainArgs {
    /// The mix callback.
    pub mix: MixChoice,
    /// Its Beta concentration (0 for no mix).
    pub alpha: f32,
    /// Epochs of the one-cycle schedule.
    pub epochs: usize,
    /// Batch size.
    pub bs: usize,
    /// `lr_max`.
    pub lr: f64,
    /// Weights to start from; `None` trains from scratch.
    pub pretrained: Option<PathBuf>,
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
    },
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

/// Parses and checks the arguments. `Ok(None)` means `--help` was printed. `task` names the command
/// in the help text.
pub fn parse(task: &str, rest: &[String]) -> Result<Option<TrainCommand>> {
    let Some(opts) = args::parse(task, ABOUT, OPTS, rest)? else {
        return Ok(None);
    };
    let stop_after = match opts.get("stop-after") {
        None => None,
        Some(_) => Some(positive(&opts, "stop-after", 1)?),
    };
    let device = opts.get("device").map(str::to_string);
    if let Some(d) = &device {
        check_device(d)?;
    }
    if let Some(run) = opts.get("resume") {
        if let Some(extra) = OPTS
            .iter()
            .map(|o| o.name)
            .find(|n| !RESUME_OPTS.contains(n) && opts.get(n).is_some())
        {
            bail!(
                "--{extra} cannot be combined with --resume: a resumed run keeps the settings in its \
                 config.json (only --device and --stop-after may change)"
            );
        }
        return Ok(Some(TrainCommand::Resume {
            run: PathBuf::from(run),
            device,
            stop_after,
        }));
    }
    let mix = MixChoice::parse(opts.get("mix").unwrap_or("mixup"))?;
    let alpha: f32 = opts.parse_or("alpha", mix.default_alpha())?;
    if mix == MixChoice::None {
        if opts.get("alpha").is_some() {
            bail!("--alpha goes with --mix mixup or cutmix, not --mix none");
        }
    } else if !(alpha.is_finite() && alpha > 0.0) {
        bail!("--alpha {alpha}: expected a finite number > 0");
    }
    let dataset = opts.get("dataset").unwrap_or("pets").to_string();
    let sample = DatasetArg::parse(&dataset).is_sample();
    let (bs, resize, size) = if sample {
        (16, 128, 112)
    } else {
        (64, 256, 224)
    };
    let lr: f64 = opts.parse_or("lr", 1e-3)?;
    if !(lr.is_finite() && lr > 0.0) {
        bail!("--lr {lr}: expected a finite number > 0");
    }
    let resize = positive(&opts, "resize", resize)?;
    let size = positive(&opts, "size", size)?;
    if size > resize {
        bail!("--size {size} is larger than --resize {resize}: expected the training size to be at most the item size");
    }
    let pretrained = match opts.get("pretrained") {
        None | Some("none") => None,
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.is_file() {
                bail!(
                    "--pretrained {}: no such file; expected torchvision ResNet18 weights as \
                     .safetensors, or none",
                    path.display()
                );
            }
            Some(path)
        }
    };
    Ok(Some(TrainCommand::New(TrainArgs {
        mix,
        alpha: if mix == MixChoice::None { 0.0 } else { alpha },
        epochs: positive(&opts, "epochs", 1)?,
        bs: positive(&opts, "bs", bs)?,
        lr,
        pretrained,
        dataset,
        device: device.unwrap_or_else(|| "auto".to_string()),
        seed: opts.parse_or("seed", 0)?,
        out: PathBuf::from(opts.get("out").unwrap_or("runs")),
        resize,
        size,
        pattern: opts.get("pattern").unwrap_or(SEED_PATTERN).to_string(),
        stop_after,
    })))
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
            (MixChoice::MixUp, 0.4, 1, 64, 1e-3, "pets")
        );
        assert_eq!((a.resize, a.size, a.device.as_str()), (256, 224, "auto"));
        let s = new_run(&["--dataset", "sample", "--mix", "cutmix"]);
        assert_eq!((s.bs, s.resize, s.size, s.alpha), (16, 128, 112, 1.0));
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
            (
                &["--resume", "r", "--lr", "1"][..],
                "--lr cannot be combined with --resume",
            ),
            (&["--bogus", "1"][..], "unknown option `--bogus`"),
        ] {
            let err = parse("train", &strings(args)).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
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
                stop_after: None
            }
        );
    }
}

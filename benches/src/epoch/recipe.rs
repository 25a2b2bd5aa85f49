//! The epoch step's recipe: the device, sizes and seed both sides train with, and the command-line
//! arguments of mix-train, the fastai peer and the ceiling example that carry it. Plain std, so that
//! xtask's gpu-pack includes this same file (`#[path]`) to write its script.

use std::ffi::OsString;
use std::path::Path;

/// The step's name in `--only` and in the report's markers.
pub const STEP: &str = "epoch";
/// The peer script's stem in benches/peers.
pub const PEER: &str = "fastai_epoch";
/// The file mix-train writes in its run folder: one object of timings per epoch.
pub const TIMINGS_FILE: &str = "timings.json";

/// Seed of the corpus generator, so that every run times the same files (the speed steps' too).
pub const CORPUS_SEED: u64 = 0;

/// Where both sides train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// The CPU, with every core.
    Cpu,
    /// The first CUDA device.
    Cuda,
}

impl Device {
    /// Reads `--device`.
    pub fn parse(value: &str) -> Result<Device, String> {
        match value {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            _ => Err(format!("expected cpu or cuda, found `{value}`")),
        }
    }

    /// The name both command lines take.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

/// The recipe of the timed epoch: the seed notebook's, one epoch, from scratch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipe {
    /// Both sides' device.
    pub device: Device,
    /// Images per breed of the corpus (37 breeds).
    pub per_breed: usize,
    /// `Resize(item, method='crop')`.
    pub item: usize,
    /// `aug_transforms(size=size)`.
    pub size: usize,
    /// Batch size.
    pub bs: usize,
    /// `MixUp(alpha)`.
    pub alpha: &'static str,
    /// `fit_one_cycle`'s `lr_max`: fastai's default, `defaults.lr`.
    pub lr: &'static str,
    /// The seed of split, shuffles, augmentation and weights.
    pub seed: u64,
}

/// The CPU epoch: 370 images at a small size, a few minutes on 2 cores for both sides.
pub const CPU: Recipe = Recipe {
    device: Device::Cpu,
    per_breed: 10,
    item: 144,
    size: 128,
    bs: 64,
    alpha: "1",
    lr: "1e-3",
    seed: 0,
};

/// The GPU epoch: the size of Oxford-IIIT Pet (37 x 200 images) at the seed notebook's sizes.
pub const CUDA: Recipe = Recipe {
    device: Device::Cuda,
    per_breed: 200,
    item: 256,
    size: 224,
    ..CPU
};

impl Recipe {
    /// The recipe of a device.
    pub fn for_device(device: Device) -> &'static Recipe {
        match device {
            Device::Cpu => &CPU,
            Device::Cuda => &CUDA,
        }
    }

    /// mix-train's arguments, reading `images` and writing its run folder under `out`.
    pub fn ours_args(&self, images: &Path, out: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--dataset".into(), images.as_os_str().to_owned()];
        push_flags(
            &mut args,
            [
                ("--epochs", "1".to_string()),
                ("--bs", self.bs.to_string()),
                ("--resize", self.item.to_string()),
                ("--size", self.size.to_string()),
                ("--lr", self.lr.to_string()),
                ("--mix", "mixup".to_string()),
                ("--alpha", self.alpha.to_string()),
                ("--pretrained", "none".to_string()),
                ("--seed", self.seed.to_string()),
                ("--device", self.device.name().to_string()),
            ],
        );
        args.push("--out".into());
        args.push(out.as_os_str().to_owned());
        args
    }

    /// The peer script's arguments (after the script).
    pub fn peer_args(&self, images: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--images".into(), images.as_os_str().to_owned()];
        push_flags(
            &mut args,
            [
                ("--item", self.item.to_string()),
                ("--size", self.size.to_string()),
                ("--bs", self.bs.to_string()),
                ("--alpha", self.alpha.to_string()),
                ("--seed", self.seed.to_string()),
                ("--device", self.device.name().to_string()),
            ],
        );
        args
    }

    /// The ceiling example's arguments (mix-tch's `epoch_ceiling`), reading `images`.
    pub fn ceiling_args(&self, images: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--images".into(), images.as_os_str().to_owned()];
        push_flags(
            &mut args,
            [
                ("--item", self.item.to_string()),
                ("--size", self.size.to_string()),
                ("--bs", self.bs.to_string()),
                ("--alpha", self.alpha.to_string()),
                ("--device", self.device.name().to_string()),
            ],
        );
        args
    }

    /// The fastai calls the recipe stands for.
    pub fn fastai_calls(&self) -> String {
        format!(
            "`Resize({}, method='crop')`, `aug_transforms(size={})`, ImageNet `Normalize`, batch {}, \
             `vision_learner(dls, resnet18, pretrained=False, metrics=error_rate)`, \
             `fit_one_cycle(1, cbs=MixUp({}))` (lr_max {}), seed {}, {}",
            self.item,
            self.size,
            self.bs,
            self.alpha,
            self.lr,
            self.seed,
            self.device.name()
        )
    }
}

/// Appends `--flag value` pairs to `args`.
fn push_flags<const N: usize>(args: &mut Vec<OsString>, flags: [(&str, String); N]) {
    for (k, v) in flags {
        args.push(k.into());
        args.push(v.into());
    }
}

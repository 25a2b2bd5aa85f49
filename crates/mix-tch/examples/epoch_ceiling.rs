//! The device-only ceiling of a training epoch: the learner's steps (augmentation, mix, forward,
//! backward, optimizer) on one batch kept on the device, as many steps as the real epoch has.
//!
//! usage: `epoch_ceiling --images DIR [--item PX] [--size PX] [--bs N] [--alpha A] [--device cpu|cuda]
//! [--precision auto|fp32|bf16|fp16] [--memory-format auto|channels-last|contiguous]` (the defaults are
//! mix-train's: auto); prints one JSON line `{"train_items", "train_s", "steps", "device", "precision",
//! "channels_last"}`. `cargo xtask bench --only epoch` runs it
//! beside mix-train and fastai.

use mix_core::MixUp;
use mix_data::{get_image_files, DataLoaders, LoaderConfig};
use mix_tch::{
    aug_transforms, DeviceChoice, Error, Learner, LearnerConfig, MemoryFormat, MixCallback,
    OneCycle, Precision, Resident, Result,
};
use std::path::PathBuf;

/// The seed's label pattern.
const PATTERN: &str = r"([^/]+)_\d+.*$";

fn value<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Invalid(format!("{name}: expected a value of the right type"))),
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let images: PathBuf = value(&args, "--images", PathBuf::new())?;
    let item: usize = value(&args, "--item", 144)?;
    let size: i64 = value(&args, "--size", 128)?;
    let bs: usize = value(&args, "--bs", 64)?;
    let alpha: f32 = value(&args, "--alpha", 1.0)?;
    let device: DeviceChoice = value(&args, "--device", DeviceChoice::Cpu)?;
    let precision: Precision = value(&args, "--precision", Precision::Auto)?;
    let memory_format: MemoryFormat = value(&args, "--memory-format", MemoryFormat::Auto)?;
    let files = get_image_files(&images).map_err(|e| Error::Data(e.to_string()))?;
    let cfg = LoaderConfig {
        batch_size: bs,
        item_size: item,
        ..LoaderConfig::default()
    };
    let dls =
        DataLoaders::from_name_re(&files, PATTERN, &cfg).map_err(|e| Error::Data(e.to_string()))?;
    let first = dls
        .train
        .epoch(0)
        .next()
        .ok_or_else(|| Error::Data("no training batch".into()))?
        .map_err(|e| Error::Data(e.to_string()))?;
    let steps = dls.train.num_batches();
    let resolved = device.resolve()?;
    let train = Resident::new(&first, resolved, steps)?;
    let valid = Resident::new(&first, resolved, 1)?;
    let lcfg = LearnerConfig {
        device,
        precision,
        memory_format,
        aug: Some(aug_transforms(size)),
        progress: false,
        seed: 0,
        ..LearnerConfig::new(dls.vocab.labels().len())
    };
    let mut learner = Learner::new(Box::new(train), Box::new(valid), lcfg)?;
    let mixup = MixCallback::new(Box::new(MixUp::new(alpha)?));
    learner.fit_one_cycle(1, OneCycle::default(), vec![Box::new(mixup)])?;
    let t = &learner.timings()[0];
    println!(
        "{}",
        serde_json::json!({
            "train_items": t.train_items,
            "train_s": t.train_s,
            "steps": steps,
            "device": t.device,
            "precision": format!("{:?}", learner.precision()).to_lowercase(),
            "channels_last": learner.layout().channels_last,
        })
    );
    Ok(())
}

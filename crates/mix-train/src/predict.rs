//! `mix-train predict`: fastai's `learn.predict` with a finished run: each image through the run's
//! validation transform and model, then its most probable classes, one line per image.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mix_data::{load_item, CropPos};
use mix_tch::augment::aug_transforms;
use mix_tch::tch::Device;
use mix_tch::{predict_probs, top_k, VisionModel};
use ndarray::{Array4, Axis};
use rand::SeedableRng;

use mix_cli::{dataset, PredictArgs, PredictOpts};

use crate::run::{read_config, resolve_device, MODEL_FILE};

/// Runs `predict` with `opts`.
pub fn main(opts: &PredictOpts) -> Result<()> {
    let args = opts.resolve()?;
    for line in predict(&args)? {
        println!("{line}");
    }
    Ok(())
}

/// The image files named by `inputs`: files as given, folders searched for images (sorted).
fn image_list(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            files.extend(dataset::image_files(input)?);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            bail!(
                "{}: no such file or folder; expected image files or folders of images",
                input.display()
            );
        }
    }
    Ok(files)
}

/// One line per image: `<path>: <class> <p>, <class> <p>, ...`, most probable first.
pub fn predict(args: &PredictArgs) -> Result<Vec<String>> {
    let config = read_config(&args.run)?;
    let files = image_list(&args.images)?;
    let (choice, _) = resolve_device(&args.device)?;
    let device: Device = choice.resolve()?;
    // The weights are all read from the run's file: the initial draw only has to be valid.
    let mut init = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut model = VisionModel::new(config.classes.len(), device, &mut init)?;
    let weights = args.run.join(MODEL_FILE);
    if !weights.is_file() {
        bail!(
            "--run {}: no {MODEL_FILE} there (the run has not finished); predict with a finished run, \
             or finish this one with `cargo xtask train --resume {}`",
            args.run.display(),
            args.run.display()
        );
    }
    model.load_all(&weights)?;
    let aug = aug_transforms(config.size as i64);
    let k = args.top.min(config.classes.len());
    let mut lines = Vec::with_capacity(files.len());
    for chunk in files.chunks(args.bs) {
        let items: Vec<_> = chunk
            .iter()
            .map(|f| load_item(f, config.resize, CropPos::CENTER).with_context(|| describe(f)))
            .collect::<Result<_>>()?;
        let views: Vec<_> = items.iter().map(|a| a.view()).collect();
        let batch: Array4<u8> = ndarray::stack(Axis(0), &views)?;
        let probs = predict_probs(&model, batch.view(), Some(&aug), Some(config.mean_std()))?;
        for (file, row) in chunk.iter().zip(probs.outer_iter()) {
            let row: Vec<f32> = row.to_vec();
            let ranked: Vec<String> = top_k(&row, k)
                .into_iter()
                .map(|(c, p)| format!("{} {p:.4}", config.classes[c]))
                .collect();
            lines.push(format!("{}: {}", file.display(), ranked.join(", ")));
        }
    }
    Ok(lines)
}

fn describe(path: &Path) -> String {
    format!("cannot read {} as an image", path.display())
}

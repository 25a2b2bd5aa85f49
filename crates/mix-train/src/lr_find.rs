//! `mix-train lr-find`: fastai's `learn.lr_find()` on the data and model `train` would use, with the
//! loss-against-learning-rate plot (log scale, the suggestion marked) and the suggestion printed.

use std::path::Path;

use anyhow::{Context, Result};
use mix_tch::{aug_transforms, Learner, LearnerConfig, LrFind, LrFindResult};
use mix_viz::plot::{Panel, Series};

use mix_cli::dataset::{self, DatasetArg};
use mix_cli::{weights, LrFindArgs, LrFindOpts};

use crate::run::{cache_fits, loader_config, loaders, resolve_device};

/// fastai's `plot_lr_find(skip_end=5)`: the last five steps are left off the plot.
const SKIP_END: usize = 5;

/// Runs `lr-find` with `opts`.
pub fn main(opts: &LrFindOpts) -> Result<()> {
    run(&opts.resolve()?)
}

fn run(args: &LrFindArgs) -> Result<()> {
    let (device, device_used) = resolve_device(&args.data.device)?;
    let data = DatasetArg::parse(&args.data.dataset);
    let (images, files) = dataset::labelled_files(&data, &args.data.pattern)?;
    let cache = cache_fits(files.len(), args.data.resize);
    let dls = loaders(
        &files,
        &args.data.pattern,
        &images,
        &loader_config(
            args.data.bs,
            args.data.seed,
            args.data.resize,
            cache,
            (mix_data::Shard::whole(), 0),
        ),
    )?;
    let weights = weights::resolve(
        &args.data.pretrained,
        args.data.pretrained_sha256.as_deref(),
    )?;
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            anyhow::bail!(
                "--out {}: the folder {} does not exist; create it or choose another path",
                args.out.display(),
                parent.display()
            );
        }
    }
    let n_classes = dls.vocab.labels().len();
    let cfg = LearnerConfig {
        device,
        seed: args.data.seed,
        aug: Some(aug_transforms(args.data.size as i64)),
        pretrained: weights.as_ref().map(|w| w.file.clone()),
        progress: true,
        ..LearnerConfig::new(n_classes)
    };
    let mut learner = Learner::new(Box::new(dls.train), Box::new(dls.valid), cfg)?;
    println!(
        "lr_find on {} ({} classes, bs {}, {} px, {}, {}): {} steps from {:e} to {:e}",
        images.display(),
        n_classes,
        args.data.bs,
        args.data.size,
        match &weights {
            Some(w) => format!("pretrained ({}, frozen body)", w.describe()),
            None => "from scratch".to_string(),
        },
        device_used,
        args.num_it,
        args.start_lr,
        args.end_lr
    );
    let found = learner.lr_find(LrFind {
        start_lr: args.start_lr,
        end_lr: args.end_lr,
        num_it: args.num_it,
        stop_div: args.stop_div,
    })?;
    plot(&found, &args.out)?;
    let steps = found.lrs.len();
    match found.valley {
        Some((lr, loss)) => println!(
            "suggested lr (valley): {lr:.2e} (smoothed loss {loss:.4}); {steps} steps run; plot {}",
            args.out.display()
        ),
        None => println!(
            "no suggestion: only {steps} steps ran before the loss diverged (fastai needs more than \
             num_it/10 + 5); try a smaller --start-lr or a larger --num-it; plot {}",
            args.out.display()
        ),
    }
    Ok(())
}

/// fastai's `plot_lr_find`: smoothed loss against learning rate on a log axis, the last five steps left
/// off, the valley point marked.
pub fn plot(found: &LrFindResult, out: &Path) -> Result<()> {
    let keep = found
        .lrs
        .len()
        .saturating_sub(SKIP_END)
        .max(1.min(found.lrs.len()));
    let mut series = vec![Series {
        name: "smoothed loss".into(),
        points: found
            .lrs
            .iter()
            .zip(&found.losses)
            .take(keep)
            .map(|(&lr, &loss)| (lr, loss))
            .collect(),
    }];
    if let Some((lr, loss)) = found.valley {
        series.push(Series {
            name: format!("valley {lr:.2e}"),
            points: vec![(lr, loss)],
        });
    }
    let panel = Panel {
        title: "lr_find".into(),
        x_label: "learning rate (log scale)".into(),
        series,
        x_log: true,
    };
    mix_viz::plot::curves_png(out, &[panel])
        .with_context(|| format!("cannot write {}", out.display()))
}

//! `cargo xtask preview`: the seed's `dls.show_batch(b=(mixup.x, mixup.y))` as a PNG: one training
//! batch after the item transforms and the mix, the first nine items captioned with both labels.
//! CPU only, through mix-data, mix-core and mix-viz: no libtorch.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mix_core::rand::rngs::StdRng;
use mix_core::rand::SeedableRng;
use mix_core::{Alpha, BatchShape, CutMix, Mix, MixParams, MixUp};
use mix_data::{DataLoaders, LoaderConfig, Vocab};
use mix_viz::grid::{self, Tile};

use mix_cli::dataset::{self, DatasetArg, DATASET_HELP, SEED_PATTERN};

/// `preview`'s options.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Write one mixed training batch as a 3x3 grid PNG: the items after \
Resize(PX, crop) and MixUp or CutMix (drawn by mix-core), each captioned with both labels and \
their weights in the mixed target (for CutMix the area-corrected lambda). Batch augmentation \
(flips, warps, lighting) happens on the training device and is not shown. No libtorch needed."
)]
pub struct PreviewOpts {
    /// The mix to show.
    #[arg(long, value_enum, default_value = "mixup")]
    mix: Kind,
    /// Beta(A, A) concentration (default 1.0, the seed's MixUp(1.) and CutMix(1.); fastai's class
    /// default is 0.4 for MixUp).
    #[arg(long, value_name = "A", allow_hyphen_values = true, default_value_t = mix_cli::train::SEED_ALPHA)]
    alpha: f32,
    /// Seed of the split, the crops and the mix.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Where the images come from.
    #[arg(long, value_name = "pets|sample|URL|DIR", default_value = "pets", help = DATASET_HELP)]
    dataset: String,
    /// The PNG to write.
    #[arg(long, value_name = "PATH", default_value = "preview.png")]
    out: PathBuf,
    /// Batch size the mix is drawn over (fewer when there are fewer items).
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        default_value_t = 64
    )]
    bs: usize,
    /// Item transform Resize(PX, method='crop').
    #[arg(
        long,
        value_name = "PX",
        allow_hyphen_values = true,
        default_value_t = 256
    )]
    resize: usize,
    /// Label regex, group 1 is the label (default the seed's ([^/]+)_\d+.*$).
    #[arg(long, value_name = "RE", default_value = SEED_PATTERN)]
    pattern: String,
}

/// Tiles in the grid: the seed's 3x3 subplots.
const COLS: usize = 3;
const TILES: usize = COLS * COLS;

/// Which mix to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    #[value(name = "mixup")]
    MixUp,
    #[value(name = "cutmix")]
    CutMix,
}

/// Runs `cargo xtask preview`.
pub fn preview(opts: &PreviewOpts) -> Result<()> {
    let kind = opts.mix;
    // The seed notebook runs `MixUp(1.)` and `CutMix(1.)`, whatever the classes' defaults.
    let alpha = opts.alpha;
    let alpha = Alpha::new(alpha)
        .map_err(|_| anyhow::anyhow!("--alpha {alpha}: expected a finite number > 0"))?;
    let (seed, bs, size) = (opts.seed, opts.bs, opts.resize);
    if bs == 0 || size == 0 || size > mix_data::MAX_ITEM_SIDE {
        bail!(
            "--bs must be at least 1 and --resize in 1..={}, found {bs} and {size}",
            mix_data::MAX_ITEM_SIDE
        );
    }
    let out = opts.out.clone();
    let pattern = opts.pattern.as_str();
    let data = DatasetArg::parse(&opts.dataset);

    let (folder, files) = dataset::labelled_files(&data, pattern)?;
    let cfg = LoaderConfig {
        batch_size: bs,
        seed,
        item_size: size,
        ..LoaderConfig::default()
    };
    let mut dls = DataLoaders::from_name_re(&files, pattern, &cfg)?;
    let n_train = dls.train.len_items();
    if n_train == 0 {
        bail!(
            "{} has {} images, too few for a training split: expected at least 2",
            folder.display(),
            files.len()
        );
    }
    if n_train < bs {
        // The training loader drops a partial batch, so a small dataset gets one smaller batch.
        dls = DataLoaders::from_name_re(
            &files,
            pattern,
            &LoaderConfig {
                batch_size: n_train,
                ..cfg
            },
        )?;
    }
    let batch = dls
        .train
        .epoch(0)
        .next()
        .context("the training loader gave no batch: every image failed to decode")??;

    let mix: Box<dyn Mix> = match kind {
        Kind::MixUp => Box::new(MixUp::from_alpha(alpha)),
        Kind::CutMix => Box::new(CutMix::from_alpha(alpha)),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let params = mix.sample(BatchShape::of(&batch.images), &mut rng)?;
    let mixed = params.apply_u8(batch.images.view())?;

    let tiles: Vec<Tile> = (0..batch.len().min(TILES))
        .map(|i| Tile {
            image: mixed.index_axis(mix_core::ndarray::Axis(0), i).to_owned(),
            caption: caption(&params, &batch.labels, &dls.vocab, i),
        })
        .collect();
    write_grid(&out, &tiles)?;
    println!(
        "{} (alpha {alpha}) on a training batch of {} from {}:",
        mix.name(),
        batch.len(),
        folder.display()
    );
    for (i, tile) in tiles.iter().enumerate() {
        println!("  {}: {}", i + 1, tile.caption);
    }
    println!("wrote {}", out.display());
    Ok(())
}

/// `beagle 71% / pug 29%`: item `i`'s own label with its weight `lam[i]`, then its partner's with
/// the rest; whole percentages that add up to 100.
fn caption(params: &MixParams, labels: &[usize], vocab: &Vocab, i: usize) -> String {
    let own = vocab.label(labels[i]);
    let other = vocab.label(labels[params.perm[i]]);
    let pct = (f64::from(params.lam[i]) * 100.0).round().clamp(0.0, 100.0) as u32;
    format!("{own} {pct}% / {other} {}%", 100 - pct)
}

fn write_grid(out: &Path, tiles: &[Tile]) -> Result<()> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the folder {}", parent.display()))?;
    }
    grid::grid_png(out, tiles, COLS).with_context(|| format!("cannot write {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mix_core::PixelMix;

    #[test]
    fn captions_name_both_labels_with_weights_adding_to_100() {
        let vocab = Vocab::new(["beagle", "pug"]);
        let params = MixParams {
            lam: vec![0.714, 0.5049],
            perm: vec![1, 0],
            pixels: PixelMix::Blend(vec![0.714, 0.5049]),
        };
        let labels = [0, 1];
        assert_eq!(caption(&params, &labels, &vocab, 0), "beagle 71% / pug 29%");
        assert_eq!(caption(&params, &labels, &vocab, 1), "pug 50% / beagle 50%");
    }
}

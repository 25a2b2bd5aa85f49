//! `cargo xtask download`: fastai's `untar_data` on the command line; prints the extracted folder.

use anyhow::{bail, Result};
use mix_cli::dataset::{self, DatasetArg};

/// `download`'s options.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Download, verify and extract a dataset into the cache (once; a second run \
is instant) and print the extracted folder. The cache is $MIX_DATA_HOME, else ~/.cache/mix; an \
existing fastai download in ~/.fastai is reused."
)]
pub struct DownloadOpts {
    /// pets (default), another known name (mnist_tiny, imagenette2-160, ...) or a .tgz URL.
    #[arg(long, value_name = "pets|NAME|URL", default_value = "pets")]
    dataset: String,
}

/// Runs `cargo xtask download`.
pub fn download(opts: &DownloadOpts) -> Result<()> {
    let value = opts.dataset.as_str();
    let arg = DatasetArg::parse(value);
    let Some(source) = arg.source() else {
        bail!(
            "--dataset {value}: expected pets, another known name or a .tgz URL to download \
             (`sample` and folders are already on disk)"
        );
    };
    let folder = dataset::fetch(&source)?;
    println!("{}", folder.display());
    Ok(())
}

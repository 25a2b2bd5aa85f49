//! `cargo xtask download`: fastai's `untar_data` on the command line; prints the extracted folder.

use anyhow::{bail, Result};

use crate::args::{self, Opt};
use crate::dataset::{self, DatasetArg};

const ABOUT: &str = "Download, verify and extract a dataset into the cache (once; a second run is \
instant) and print the extracted folder. The cache is $MIX_DATA_HOME, else ~/.cache/mix; an existing \
fastai download in ~/.fastai is reused.";

const OPTS: &[Opt] = &[Opt {
    name: "dataset",
    value: Some("pets|NAME|URL"),
    help: "pets (default), another known name (mnist_tiny, imagenette2-160, ...) or a .tgz URL",
}];

/// Runs `cargo xtask download` with `rest` as its arguments.
pub fn download(rest: &[String]) -> Result<()> {
    let Some(opts) = args::parse("download", ABOUT, OPTS, rest)? else {
        return Ok(());
    };
    let value = opts.get("dataset").unwrap_or("pets");
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

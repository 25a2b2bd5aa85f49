//! Turns a folder of labelled image files into batches: fastai's `get_image_files`,
//! `ImageDataLoaders.from_name_re` and `Resize(size, method='crop')` for the CPU.
//!
//! The pipeline, in the order data flows through it:
//!
//! 1. [`get_image_files`] lists image files recursively, by fastai's extension list, sorted.
//! 2. [`RegexLabeller`] labels each file from its *name* (regex search, capture group 1), and
//!    [`Vocab`] maps labels to class indices (sorted, built from the training split like fastai).
//! 3. [`random_split`] shuffles indices with a seeded RNG; the first `valid_pct` are validation.
//! 4. [`decode_rgb`] decodes any supported file to 8-bit RGB, rejecting truncated files and
//!    refusing files and images beyond [`DecodeLimits`] before reading or allocating them.
//! 5. [`resize_crop`] applies fastai's `Resize(size, method='crop')`: the largest crop with the
//!    target's aspect ratio, placed at [`CropPos`] (random in training, centred in validation),
//!    bilinear-resized (SIMD, Pillow's antialiasing filter) to `size x size`.
//! 6. [`DataLoader`] decodes batches of NCHW `u8` in parallel with prefetch; [`DataLoaders`]
//!    holds the train and valid loaders and the vocab. [`imagenet_normalize`] makes `f32`.
//!    [`LoaderConfig::shard`] ([`Shard`]) gives each process of a data-parallel run its part
//!    of every epoch, by PyTorch's `DistributedSampler` rules.
//!
//! mix-data knows nothing about tch, the network or MixUp: it hands out plain `ndarray` batches.
//!
//! ```no_run
//! use mix_data::{get_image_files, DataLoaders, LoaderConfig};
//! # fn main() -> mix_data::Result<()> {
//! let files = get_image_files("oxford-iiit-pet/images".as_ref())?;
//! let dls = DataLoaders::from_name_re(&files, r"([^/]+)_\d+.*$", &LoaderConfig::default())?;
//! for batch in dls.train.epoch(0) {
//!     let batch = batch?;
//!     assert_eq!(batch.images.shape()[1..], [3, 256, 256]);
//! }
//! # Ok(())
//! # }
//! ```

mod decode;
mod error;
mod files;
mod label;
mod loader;
mod normalize;
mod resize;
mod shard;
mod split;

pub use decode::{
    decode_rgb, decode_rgb_bytes, decode_rgb_bytes_with, decode_rgb_with, DecodeLimits,
    DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS,
};
pub use error::{Error, Result};
pub use files::{get_image_files, is_image_file, IMAGE_EXTENSIONS};
pub use label::{RegexLabeller, Vocab};
pub use loader::{
    BadImagePolicy, Batch, BatchIter, DataLoader, DataLoaders, LoaderConfig, LoaderKind,
    SkippedImage, DEFAULT_MAX_IN_FLIGHT_BYTES, MAX_BATCH_BYTES, MAX_BATCH_SIZE, MAX_PREFETCH,
    MAX_THREADS,
};
pub use normalize::{imagenet_normalize, normalize, normalize_into, IMAGENET_MEAN, IMAGENET_STD};
pub use resize::{
    crop_box, load_item, resize_crop, resize_crop_into, resize_short_side, CropBox, CropPos,
    MAX_ITEM_SIDE,
};
pub use shard::Shard;
pub use split::{random_split, Split};

/// Re-exported so callers can name the decoded image type without depending on `image`.
pub use image::RgbImage;

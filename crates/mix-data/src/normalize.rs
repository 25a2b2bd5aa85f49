//! `u8` images to normalised `f32`, like fastai's `IntToFloatTensor` then `Normalize`.

use ndarray::{Array4, ArrayView4, ArrayViewMut4, Zip};

use crate::{Error, Result};

/// ImageNet channel means (RGB), fastai's `imagenet_stats[0]`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB), fastai's `imagenet_stats[1]`.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Writes `(x / 255 - mean[c]) / std[c]` for every pixel of the NCHW batch `images` into `out`.
///
/// The arithmetic is fastai's, in `f32` and in the same order (`IntToFloatTensor` divides by
/// 255, `Normalize` subtracts the mean and divides by the std), so results match torch's
/// bit for bit. `images` must have 3 channels and `out` the same shape.
pub fn normalize_into(
    images: ArrayView4<'_, u8>,
    mean: [f32; 3],
    std: [f32; 3],
    mut out: ArrayViewMut4<'_, f32>,
) -> Result<()> {
    if images.shape()[1] != 3 || images.shape() != out.shape() {
        return Err(Error::Config(format!(
            "expected images of shape [n, 3, h, w] and an output of the same shape, found {:?} \
             and {:?}",
            images.shape(),
            out.shape()
        )));
    }
    for c in 0..3 {
        // Each of the 256 inputs maps to one output; a table keeps the exact arithmetic.
        let lut: Vec<f32> = (0..=255u8)
            .map(|v| (f32::from(v) / 255.0 - mean[c]) / std[c])
            .collect();
        Zip::from(out.index_axis_mut(ndarray::Axis(1), c))
            .and(images.index_axis(ndarray::Axis(1), c))
            .for_each(|o, &v| *o = lut[usize::from(v)]);
    }
    Ok(())
}

/// Allocating form of [`normalize_into`].
pub fn normalize(images: ArrayView4<'_, u8>, mean: [f32; 3], std: [f32; 3]) -> Result<Array4<f32>> {
    let mut out = Array4::zeros(images.raw_dim());
    normalize_into(images, mean, std, out.view_mut())?;
    Ok(out)
}

/// [`normalize`] with [`IMAGENET_MEAN`] and [`IMAGENET_STD`]: fastai's
/// `Normalize.from_stats(*imagenet_stats)` after `IntToFloatTensor`.
pub fn imagenet_normalize(images: ArrayView4<'_, u8>) -> Result<Array4<f32>> {
    normalize(images, IMAGENET_MEAN, IMAGENET_STD)
}

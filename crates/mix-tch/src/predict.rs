//! fastai's `Learner.predict` for a batch of items: the validation transform, the model in
//! evaluation mode, the loss's activation (softmax), and the classes ranked by probability.

use crate::augment::{self, AugTransforms};
use crate::model::Model;
use crate::{Error, Result};
use ndarray::{Array2, ArrayView4};
use tch::{Device, Kind, Tensor};

/// Class probabilities `(N, n_classes)` for `images`, `u8` batches `(N, 3, H, W)` as the item
/// transform leaves them (`Resize(size, method='crop')` at the centre): scaled to [0, 1], resampled by
/// `aug`'s validation transform when given, normalised with `(mean, std)` when given, run through the
/// model in evaluation mode (BatchNorm running statistics, no dropout), then softmax, as fastai's
/// `predict` does with `CrossEntropyLossFlat.activation`.
pub fn predict_probs(
    model: &dyn Model,
    images: ArrayView4<'_, u8>,
    aug: Option<&AugTransforms>,
    normalize: Option<([f64; 3], [f64; 3])>,
) -> Result<Array2<f32>> {
    let images = images.as_standard_layout();
    let (n, c, h, w) = images.dim();
    if n == 0 || c != 3 {
        return Err(Error::Data(format!(
            "expected a non-empty RGB batch (N, 3, H, W), found {:?}",
            images.dim()
        )));
    }
    let slice = images
        .as_slice()
        .ok_or_else(|| Error::Data("batch images not contiguous".into()))?;
    let raw = Tensor::from_slice(slice).view([n as i64, c as i64, h as i64, w as i64]);
    let _guard = tch::no_grad_guard();
    let mut x = augment::to_float(&raw, model.device());
    if let Some(aug) = aug {
        x = aug.apply_valid(&x)?;
    }
    if let Some((mean, std)) = normalize {
        x = augment::normalize(&x, mean, std);
    }
    let probs = model
        .forward(&x, None)?
        .f_to_kind(Kind::Float)?
        .f_softmax(-1, Kind::Float)?
        .f_to_device(Device::Cpu)?
        .f_contiguous()?;
    let k = model.n_classes();
    let mut out = vec![0f32; n * k];
    probs.f_copy_data(&mut out, n * k)?;
    Array2::from_shape_vec((n, k), out).map_err(|e| Error::Data(e.to_string()))
}

/// The `k` most probable classes of one row of probabilities, most probable first, as
/// `(class index, probability)`; ties keep the lower index first.
pub fn top_k(probs: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = probs.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(k);
    ranked
}

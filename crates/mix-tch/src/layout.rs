//! The memory layout of images and convolution weights: fastai's NCHW, or channels_last (NHWC) where this
//! process has checked that its kernels give NCHW's gradients for the model at hand.
//!
//! channels_last is the faster layout for convolutions with oneDNN on the CPU and cuDNN on CUDA, but it
//! runs other kernels than NCHW does, and a kernel with a layout bug gives wrong gradients silently
//! (docs/fidelity.md). [`check_channels_last`] therefore runs two small forward and backward passes of
//! the model in both layouts and compares every parameter's gradient; [`MemoryFormat::Auto`] uses
//! channels_last only when they agree.

use crate::model::Model;
use crate::{Error, Result};
use rand::SeedableRng;
use std::time::Instant;
use tch::Tensor;

/// The largest relative gradient difference (the Euclidean length of the difference over the NCHW
/// gradient's, per parameter, the smaller of the [`CHECK_INPUTS`] batches') at which the two layouts
/// count as agreeing. Float32 summation order alone gives about 1e-6 on the CPU and TF32 convolutions
/// about 1e-3 on CUDA. But on one batch in several, a discrete event (most likely a max-pooling window
/// whose two largest values lie within rounding of each other) sends a gradient along one path or the
/// other depending on the kernel's rounding, which moves a few parameters' gradients by up to about 1e-2
/// (measured here at 224 px; NCHW itself is then off float64 too), and hardly ever on two batches for
/// the same parameter. A kernel that reads a buffer in the
/// wrong layout is off by the gradient's whole length, on every batch.
pub const LAYOUT_TOLERANCE: f64 = 5e-2;

/// Seeds of the check's batches of standard normal images.
pub const CHECK_INPUTS: [u64; 2] = [0x6c61_796f_7574, 0x6e68_7763];

/// Images in the check's batch.
pub const CHECK_BATCH: i64 = 2;

/// The image side the learner checks at when it has no augmentation to take the training size from.
pub const CHECK_SIZE: i64 = 64;

/// `LearnerConfig::memory_format`: the layout the passes run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryFormat {
    /// NCHW, as fastai computes.
    #[default]
    Contiguous,
    /// NHWC inputs and convolution weights; refused when [`check_channels_last`] finds the gradients
    /// disagree with NCHW's.
    ChannelsLast,
    /// channels_last when [`check_channels_last`] finds it agrees with NCHW, else NCHW.
    Auto,
}

impl std::str::FromStr for MemoryFormat {
    type Err = Error;

    /// Parses `contiguous`, `channels-last` or `auto`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "contiguous" => Ok(MemoryFormat::Contiguous),
            "channels-last" => Ok(MemoryFormat::ChannelsLast),
            "auto" => Ok(MemoryFormat::Auto),
            _ => Err(Error::Invalid(format!(
                "expected a memory format `contiguous`, `channels-last` or `auto`, found `{s}`"
            ))),
        }
    }
}

/// What [`check_channels_last`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct LayoutCheck {
    /// The parameter whose gradients differ most between the layouts.
    pub worst_param: String,
    /// Its relative difference: the length of the difference over the NCHW gradient's (the smaller of
    /// the batches').
    pub worst_diff: f64,
    /// Parameters compared.
    pub params: usize,
    /// The square image side the check ran at.
    pub size: i64,
    /// Seconds the check took.
    pub seconds: f64,
}

impl LayoutCheck {
    /// Whether the layouts agree within [`LAYOUT_TOLERANCE`].
    pub fn agrees(&self) -> bool {
        self.worst_diff <= LAYOUT_TOLERANCE
    }
}

impl std::fmt::Display for LayoutCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "channels_last gradients {} NCHW's (largest difference {:.1e} relative, in `{}`, over {} \
             parameters at {} px)",
            if self.agrees() {
                "agree with"
            } else {
                "disagree with"
            },
            self.worst_diff,
            self.worst_param,
            self.params,
            self.size
        )
    }
}

/// The layout a learner runs in, and the check behind it when there was one.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Whether inputs and convolution weights are channels_last.
    pub channels_last: bool,
    /// The check that decided (none for [`MemoryFormat::Contiguous`]).
    pub check: Option<LayoutCheck>,
}

/// `t` (N, C, H, W) with channels_last strides: the same values, laid out NHWC in memory.
pub fn channels_last(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_permute([0, 2, 3, 1])?
        .f_contiguous()?
        .f_permute([0, 3, 1, 2])?)
}

/// Lays every 4-dimensional variable of `model` (the convolution weights) out channels_last, or back to
/// contiguous; the variables keep their identity (same parameters, new data).
pub fn set_layout(model: &dyn Model, to_channels_last: bool) -> Result<()> {
    for (_, mut var) in model.variables() {
        if var.dim() == 4 {
            let data = tch::no_grad(|| {
                if to_channels_last {
                    channels_last(&var)
                } else {
                    Ok(var.f_contiguous()?)
                }
            })?;
            var.set_data(&data);
        }
    }
    Ok(())
}

/// Evaluation-mode forward and backward passes of `model` on [`CHECK_INPUTS`] fixed batches of
/// [`CHECK_BATCH`] standard normal `size` x `size` RGB images, each in NCHW and then in channels_last,
/// comparing every parameter's gradient (frozen ones included, since fine_tune unfreezes them later;
/// per parameter the closer of the batches counts, see [`LAYOUT_TOLERANCE`]). Evaluation mode
/// (BatchNorm with its running statistics) keeps every gradient well conditioned: with batch statistics
/// over two images, a BatchNorm layer's output hardly depends on its input, and the gradients below it
/// are rounding noise that no two kernels share. The model is left as it was: contiguous weights, the
/// same trainable set, no gradients accumulated.
pub fn check_channels_last(model: &dyn Model, size: i64) -> Result<LayoutCheck> {
    let started = Instant::now();
    let device = model.device();
    let params: Vec<(String, Tensor)> = model
        .params()
        .iter()
        .map(|p| (p.name.clone(), p.tensor.shallow_clone()))
        .collect();
    let trainable: Vec<bool> = params.iter().map(|(_, t)| t.requires_grad()).collect();
    for (_, t) in &params {
        let _ = t.set_requires_grad(true);
    }
    let outcome = compare_layouts(model, &params, size, device);
    let restored = restore(model, &params, &trainable);
    let (worst_param, worst_diff) = outcome?;
    restored?;
    Ok(LayoutCheck {
        worst_param,
        worst_diff,
        params: params.len(),
        size,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The passes of [`check_channels_last`]: per parameter the smallest difference over the
/// [`CHECK_INPUTS`] batches, then the worst parameter and its difference.
fn compare_layouts(
    model: &dyn Model,
    params: &[(String, Tensor)],
    size: i64,
    device: tch::Device,
) -> Result<(String, f64)> {
    let n_classes = model.n_classes() as i64;
    let targets = Tensor::from_slice(&[0i64, 1 % n_classes]).f_to_device(device)?;
    let pass = |x: &Tensor| -> Result<Vec<Tensor>> {
        let logits = model.forward(x, None)?;
        let loss = logits.f_cross_entropy_loss::<Tensor>(
            &targets,
            None,
            tch::Reduction::Mean,
            -100,
            0.0,
        )?;
        let tensors: Vec<&Tensor> = params.iter().map(|(_, t)| t).collect();
        Ok(Tensor::f_run_backward(&[&loss], &tensors, false, false)?)
    };
    let mut smallest = vec![f64::INFINITY; params.len()];
    for seed in CHECK_INPUTS {
        let x = normal_images(seed, CHECK_BATCH, size, device)?;
        let nchw = pass(&x)?;
        set_layout(model, true)?;
        let nhwc = pass(&channels_last(&x)?);
        set_layout(model, false)?;
        for ((least, a), b) in smallest.iter_mut().zip(&nchw).zip(&nhwc?) {
            *least = least.min(relative_difference(a, b)?);
        }
    }
    let mut worst = (String::new(), 0.0f64);
    for ((name, _), &diff) in params.iter().zip(&smallest) {
        if diff > worst.1 || worst.0.is_empty() {
            worst = (name.clone(), diff);
        }
    }
    Ok(worst)
}

/// `n` RGB images `size` x `size` of standard normal float32 values drawn from ChaCha8 seeded with
/// `seed`, on `device`: the check's batches.
pub fn normal_images(seed: u64, n: i64, size: i64, device: tch::Device) -> Result<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..n * 3 * size * size)
        .map(|_| rand::Rng::sample(&mut rng, rand_distr::StandardNormal))
        .collect();
    Ok(Tensor::from_slice(&values)
        .f_view([n, 3, size, size])?
        .f_to_device(device)?)
}

/// `|b - a| / |a|` in the Euclidean norm, the check's measure of how far gradient `b` is from `a`;
/// infinite when it is NaN (a NaN gradient is a disagreement).
pub fn relative_difference(a: &Tensor, b: &Tensor) -> Result<f64> {
    let length = a.f_norm()?.f_double_value(&[])?.max(f64::MIN_POSITIVE);
    let diff = (b - a).f_norm()?.f_double_value(&[])? / length;
    Ok(if diff.is_nan() { f64::INFINITY } else { diff })
}

/// Puts the model back as [`check_channels_last`] found it (whatever the passes did).
fn restore(model: &dyn Model, params: &[(String, Tensor)], trainable: &[bool]) -> Result<()> {
    for ((_, t), &on) in params.iter().zip(trainable) {
        let _ = t.set_requires_grad(on);
    }
    set_layout(model, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn parses_the_three_formats_and_refuses_others() {
        assert_eq!("auto".parse::<MemoryFormat>().unwrap(), MemoryFormat::Auto);
        assert_eq!(
            "channels-last".parse::<MemoryFormat>().unwrap(),
            MemoryFormat::ChannelsLast
        );
        assert_eq!(
            "contiguous".parse::<MemoryFormat>().unwrap(),
            MemoryFormat::Contiguous
        );
        let err = "nhwc".parse::<MemoryFormat>().unwrap_err().to_string();
        assert!(err.contains("found `nhwc`"), "{err}");
    }

    #[test]
    fn channels_last_keeps_values_and_lays_channels_innermost() {
        let x = Tensor::rand([2, 3, 4, 5], (Kind::Float, tch::Device::Cpu));
        let y = channels_last(&x).unwrap();
        assert_eq!(y.stride(), vec![60, 1, 15, 3]);
        assert!(x.equal(&y));
    }
}

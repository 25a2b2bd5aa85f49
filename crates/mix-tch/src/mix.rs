//! mix-core's drawn params applied to tch tensors on any device, the mixed loss, and the callback that runs a
//! `Box<dyn Mix>` inside the learner the way fastai's `MixHandler` does, or a timm `Mixer` the way timm's
//! training loop does (soft smoothed targets, `mixup_off_epoch`).

use crate::callback::{Callback, Event};
use crate::learner::Learn;
use crate::loss::{LossFunc, SoftTargetCrossEntropy};
use crate::{Error, Result};
use mix_core::{BatchShape, ImageSize, Mix, MixParams, Mixer, PixelMix, SampleMix};
use std::sync::{Arc, Mutex};
use tch::{Device, Kind, Tensor};

/// The per-sample numbers of one [`MixParams`] on the device: partner indices, target weights and (for
/// blends) pixel weights, moved in a single host-to-device copy.
#[derive(Debug)]
pub struct DeviceParams {
    /// `perm` as int64.
    pub perm: Tensor,
    /// `lam` as float32.
    pub lam: Tensor,
    /// The blend weights as float32 when the pixels are blended.
    pub blend: Option<Tensor>,
}

impl DeviceParams {
    /// Packs `perm` (exact in f32 below 2^24 samples), `lam` and the blend weights into one f32 buffer,
    /// copies it once (a synchronous copy on CUDA), and splits it on the device.
    pub fn new(params: &MixParams, device: Device) -> Result<Self> {
        let n = params.perm.len();
        if params.lam.len() != n || n >= 1 << 24 {
            return Err(Error::Invalid(format!(
                "expected one weight per partner for a batch below 2^24, found {} weights and {n} partners",
                params.lam.len()
            )));
        }
        let blend = match &params.pixels {
            PixelMix::Blend(w) => Some(w.as_slice()),
            _ => None,
        };
        let mut packed: Vec<f32> = params.perm.iter().map(|&p| p as f32).collect();
        packed.extend_from_slice(&params.lam);
        if let Some(w) = blend {
            packed.extend_from_slice(w);
        }
        let t = Tensor::from_slice(&packed).to_device(device);
        let n = n as i64;
        Ok(DeviceParams {
            perm: t.narrow(0, 0, n).to_kind(Kind::Int64),
            lam: t.narrow(0, n, n),
            blend: blend.map(|w| t.narrow(0, 2 * n, w.len() as i64)),
        })
    }

    /// [`apply`] with the numbers already on the device.
    pub fn apply(&self, params: &MixParams, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        let &[n, c, h, w] = size.as_slice() else {
            return Err(Error::Invalid(format!(
                "expected an image batch (N, C, H, W) to mix, found {size:?}"
            )));
        };
        params.validate(BatchShape::new(
            n as usize,
            c as usize,
            ImageSize::new(h as usize, w as usize),
        ))?;
        match &params.pixels {
            PixelMix::Identity => Ok(x.shallow_clone()),
            PixelMix::Blend(_) => {
                let wts = self
                    .blend
                    .as_ref()
                    .ok_or_else(|| Error::Invalid("blend weights not on the device".into()))?;
                let xp = x.f_index_select(0, &self.perm)?;
                Ok(xp.f_lerp_tensor(x, &per_sample(wts, x))?)
            }
            PixelMix::Boxes(boxes) if boxes.windows(2).all(|b| b[0] == b[1]) => {
                // One box for the whole batch, as fastai draws it: a slice copy, exact.
                let b = boxes[0];
                let out = x.copy();
                if !b.is_empty() {
                    let xp = x.f_index_select(0, &self.perm)?;
                    let (bh, bw) = ((b.y2 - b.y1) as i64, (b.x2 - b.x1) as i64);
                    let src = xp.narrow(2, b.y1 as i64, bh).narrow(3, b.x1 as i64, bw);
                    out.narrow(2, b.y1 as i64, bh)
                        .narrow(3, b.x1 as i64, bw)
                        .f_copy_(&src)?;
                }
                Ok(out)
            }
            pixels => {
                // Per-sample weight maps: 1 keeps x[i], 0 takes x[perm[i]]; torch.lerp is exact at 0 and 1.
                let (n, h, w) = (n as usize, h as usize, w as usize);
                let mut map = vec![1.0f32; n * h * w];
                for (i, plane) in map.chunks_mut(h * w).enumerate() {
                    match pixels.for_sample(i) {
                        Some(SampleMix::Keep) | None => {}
                        Some(SampleMix::Blend(wt)) => plane.fill(wt),
                        Some(SampleMix::Paste(b)) => {
                            for row in b.y1..b.y2 {
                                plane[row * w + b.x1..row * w + b.x2].fill(0.0);
                            }
                        }
                    }
                }
                let map = Tensor::from_slice(&map)
                    .view([n as i64, 1, h as i64, w as i64])
                    .to_device(x.device())
                    .to_kind(x.kind());
                let xp = x.f_index_select(0, &self.perm)?;
                Ok(xp.f_lerp_tensor(x, &map)?)
            }
        }
    }

    /// [`lerp_targets`] with the numbers already on the device.
    pub fn lerp_targets(&self, y: &Tensor) -> Result<Tensor> {
        self.check_batch(y)?;
        let yp = y.f_index_select(0, &self.perm)?;
        Ok(yp.f_lerp_tensor(y, &per_sample(&self.lam, y))?)
    }

    /// [`mixed_loss`] with the numbers already on the device.
    pub fn mixed_loss(
        &self,
        loss: &dyn LossFunc,
        pred: &Tensor,
        target: &Tensor,
    ) -> Result<Tensor> {
        self.check_batch(target)?;
        let target_perm = target.f_index_select(0, &self.perm)?;
        let own = loss.per_sample(pred, target)?;
        let partner = loss.per_sample(pred, &target_perm)?;
        Ok(partner
            .f_lerp_tensor(&own, &self.lam.to_kind(own.kind()))?
            .f_mean(Kind::Float)?)
    }

    fn check_batch(&self, y: &Tensor) -> Result<()> {
        let n = y.size().first().copied().unwrap_or(0);
        let m = self.perm.size()[0];
        if m != n {
            return Err(Error::Invalid(format!(
                "expected mix params for a batch of {n}, found params for {m}"
            )));
        }
        Ok(())
    }
}

/// `w` (N,) viewed as (N, 1, ...) to broadcast over `x`, in `x`'s kind.
fn per_sample(w: &Tensor, x: &Tensor) -> Tensor {
    let mut shape = vec![-1i64];
    shape.extend(std::iter::repeat(1).take(x.dim().saturating_sub(1)));
    w.to_kind(x.kind()).view(shape.as_slice())
}

/// Applies `params` to an image batch `(N, C, H, W)` on its own device: `out[i] = lerp(x[perm[i]], x[i], w[i])`
/// for blends, `x[perm[i]]` inside the box and `x[i]` outside for pastes, `x[i]` for samples kept.
pub fn apply(params: &MixParams, x: &Tensor) -> Result<Tensor> {
    DeviceParams::new(params, x.device())?.apply(params, x)
}

/// Mixes float targets `(N, ...)` (one-hot or multi-label): `lerp(y[perm], y, lam)`, as fastai's MixUp and
/// CutMix do when the loss has no `y_int`.
pub fn lerp_targets(params: &MixParams, y: &Tensor) -> Result<Tensor> {
    DeviceParams::new(params, y.device())?.lerp_targets(y)
}

/// The mixed loss for class-index targets: per sample `lerp(loss(pred, y[perm]), loss(pred, y), lam)`,
/// then the mean (fastai's `MixHandler.lf`).
pub fn mixed_loss(
    loss: &dyn LossFunc,
    params: &MixParams,
    pred: &Tensor,
    target: &Tensor,
) -> Result<Tensor> {
    DeviceParams::new(params, target.device())?.mixed_loss(loss, pred, target)
}

/// [`mixed_loss`] with cross entropy: the tensor counterpart of `MixParams::mixed_cross_entropy`.
pub fn mixed_cross_entropy(params: &MixParams, logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    mixed_loss(&crate::loss::CrossEntropyFlat, params, logits, target)
}

/// The partner targets and weights of the batch being trained on, shared by [`MixCallback`] and [`MixedLoss`].
#[derive(Debug, Default)]
struct MixTargets {
    y_perm: Option<Tensor>,
    lam: Option<Tensor>,
}

/// The loss fastai's `MixHandler` swaps in during training: the original loss on both targets, lerped per
/// sample by `lam`, then mean-reduced.
#[derive(Debug)]
pub struct MixedLoss {
    base: Arc<dyn LossFunc>,
    current: Arc<Mutex<MixTargets>>,
}

impl LossFunc for MixedLoss {
    fn name(&self) -> String {
        format!("mixed({})", self.base.name())
    }

    fn y_int(&self) -> bool {
        self.base.y_int()
    }

    fn encode_targets(&self, labels: &Tensor, n_classes: i64) -> Result<Tensor> {
        self.base.encode_targets(labels, n_classes)
    }

    fn per_sample(&self, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let current = self
            .current
            .lock()
            .map_err(|_| Error::Invalid("mix state poisoned by a panic".into()))?;
        match (&current.y_perm, &current.lam) {
            (Some(y_perm), Some(lam)) => {
                let own = self.base.per_sample(pred, target)?;
                let partner = self.base.per_sample(pred, y_perm)?;
                Ok(partner.f_lerp_tensor(&own, &lam.to_kind(own.kind()))?)
            }
            _ => Err(Error::Invalid(
                "the mixed loss ran before a batch was mixed: it only runs between before_batch and after_batch".into(),
            )),
        }
    }
}

/// How a [`MixCallback`] turns the learner's loss and targets into mixed ones.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum MixTargetsMode {
    /// fastai's `MixHandler`: a loss over class indices is lerped per sample ([`MixedLoss`]); float
    /// targets are lerped.
    #[default]
    Fastai,
    /// timm's training loop with `Mixup`: during training the loss is [`SoftTargetCrossEntropy`] with
    /// this label smoothing, on smoothed one-hot targets lerped by the mix (timm's `mixup_target`).
    /// Validation keeps the learner's loss, as timm validates with plain cross entropy.
    SoftTargets {
        /// Label smoothing in [0, 1).
        smoothing: f32,
    },
}

/// A [`MixCallback`]'s options beyond the mixing method.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MixOptions {
    /// How targets and loss are mixed.
    pub targets: MixTargetsMode,
    /// timm's `mixup_off_epoch`: from this epoch of the run on (0-based, counting `fine_tune`'s frozen
    /// epochs) batches are no longer mixed and no mix is drawn; soft targets stay smoothed, as in timm.
    /// `None` mixes every epoch.
    pub off_epoch: Option<usize>,
}

/// A mixing method as a learner callback (fastai's `MixHandler` with the variant's `before_batch`): swaps in
/// [`MixedLoss`] at `before_train` when the loss takes class indices (or [`SoftTargetCrossEntropy`] in
/// [`MixTargetsMode::SoftTargets`]), mixes every training batch with params drawn from the learner's rng,
/// and restores the original loss at `after_train` and whenever training or the fit ends early (cancelled
/// or failed). It does not run during validation.
#[derive(Debug)]
pub struct MixCallback {
    mix: Box<dyn Mix>,
    opts: MixOptions,
    current: Arc<Mutex<MixTargets>>,
    old_loss: Option<Arc<dyn LossFunc>>,
    stack_y: bool,
    active: bool,
    last: Option<MixParams>,
}

impl MixCallback {
    /// Wraps a mixing method the fastai way; the learner never learns which one.
    pub fn new(mix: Box<dyn Mix>) -> Self {
        Self::with_options(mix, MixOptions::default())
    }

    /// Wraps a mixing method with `opts`.
    pub fn with_options(mix: Box<dyn Mix>, opts: MixOptions) -> Self {
        MixCallback {
            mix,
            opts,
            current: Arc::default(),
            old_loss: None,
            stack_y: false,
            active: true,
            last: None,
        }
    }

    /// timm's training loop around `mixer`: soft targets with the mixer's label smoothing, and mixing
    /// switched off from epoch `off_epoch` on (timm's `mixup_off_epoch`; `None`: never).
    pub fn timm(mixer: Mixer, off_epoch: Option<usize>) -> Self {
        let smoothing = mixer.config().label_smoothing;
        Self::with_options(
            Box::new(mixer),
            MixOptions {
                targets: MixTargetsMode::SoftTargets { smoothing },
                off_epoch,
            },
        )
    }

    /// The options in use.
    pub fn options(&self) -> MixOptions {
        self.opts
    }

    /// The params of the last batch mixed.
    pub fn last_params(&self) -> Option<&MixParams> {
        self.last.as_ref()
    }

    fn restore(&mut self, learn: &mut Learn) {
        if let Some(old) = self.old_loss.take() {
            learn.loss_func = old;
        }
        if let Ok(mut c) = self.current.lock() {
            *c = MixTargets::default();
        }
    }
}

impl Callback for MixCallback {
    fn name(&self) -> &str {
        self.mix.name()
    }

    fn run_valid(&self) -> bool {
        false
    }

    fn on(&mut self, event: Event, learn: &mut Learn) -> Result<()> {
        match event {
            Event::BeforeTrain => {
                let epoch = learn.epoch_offset + learn.epoch;
                self.active = self.opts.off_epoch.map_or(true, |off| epoch < off);
                if let MixTargetsMode::SoftTargets { smoothing } = self.opts.targets {
                    // Every batch of this pass is prepared after this event, so its targets are
                    // encoded by this loss: smoothed one-hot floats, which the mix then lerps.
                    self.stack_y = false;
                    if self.old_loss.is_none() {
                        self.old_loss = Some(learn.loss_func.clone());
                        learn.loss_func = Arc::new(SoftTargetCrossEntropy {
                            smoothing: f64::from(smoothing),
                        });
                    }
                    return Ok(());
                }
                self.stack_y = learn.loss_func.y_int();
                if self.stack_y && self.active && self.old_loss.is_none() {
                    let old = learn.loss_func.clone();
                    learn.loss_func = Arc::new(MixedLoss {
                        base: old.clone(),
                        current: self.current.clone(),
                    });
                    self.old_loss = Some(old);
                }
            }
            // fastai restores at after_train, after_cancel_train and after_cancel_fit; a cancelled epoch or a
            // fit ending any other way must not leave the mixed loss behind either.
            Event::AfterTrain
            | Event::AfterCancelTrain
            | Event::AfterCancelEpoch
            | Event::AfterCancelFit
            | Event::AfterFit => self.restore(learn),
            Event::BeforeBatch if self.active => {
                let (n, c, h, w) = learn.xb.size4()?;
                let size = ImageSize::new(h as usize, w as usize);
                let shape = BatchShape::new(n as usize, c as usize, size);
                let params = self.mix.sample(shape, &mut learn.rng)?;
                let on_device = DeviceParams::new(&params, learn.xb.device())?;
                learn.xb = on_device.apply(&params, &learn.xb)?;
                if self.stack_y {
                    let y_perm = learn.yb.f_index_select(0, &on_device.perm)?;
                    let mut current = self
                        .current
                        .lock()
                        .map_err(|_| Error::Invalid("mix state poisoned by a panic".into()))?;
                    *current = MixTargets {
                        y_perm: Some(y_perm),
                        lam: Some(on_device.lam),
                    };
                } else {
                    learn.yb = on_device.lerp_targets(&learn.yb)?;
                }
                self.last = Some(params);
            }
            _ => {}
        }
        Ok(())
    }
}

//! fastai's Adam (fastai/optimizer.py): decoupled weight decay, dampened averages, debiased step, with
//! BatchNorm parameters exempt from weight decay; and a manual loss scaler for mixed precision.

use crate::ffi::{self, AdamBucket, AdamHypers};
use crate::model::{Model, ParamKind};
use crate::{Error, Result};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// Adam's fixed hyper-parameters (fastai's defaults); `lr`, `mom` and `wd` are set by the schedule.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    /// Beta2 (`sqr_mom`), fastai's default 0.99.
    pub sqr_mom: f64,
    /// Added to the root of the second moment, fastai's default 1e-5.
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            sqr_mom: 0.99,
            eps: 1e-5,
        }
    }
}

/// What the parameters of one fused step share: group, whether they are decayed, device.
type BucketKey = (usize, bool, Device);

#[derive(Debug)]
struct Slot {
    name: String,
    param: Tensor,
    group: usize,
    do_wd: bool,
    grad_avg: Option<Tensor>,
    sqr_avg: Option<Tensor>,
    /// Steps taken: the count that [`Adam::state`], snapshots and checkpoints keep.
    step: u64,
    /// The same count as a float32 scalar on the parameter's device, which libtorch's fused kernel reads
    /// (exact up to 2^24 steps). It is a cache of `step`: anything else that changes `step` drops it, and
    /// the fused step makes it again from `step`.
    step_t: Option<Tensor>,
}

/// Adam over a model's trainable parameters, with state per parameter and hyper-parameters per
/// parameter group, as in fastai (`Optimizer.param_lists` and `hypers`).
#[derive(Debug)]
pub struct Adam {
    slots: Vec<Slot>,
    /// Learning rate of each parameter group for the next step (fastai's `hypers[i]['lr']`).
    lrs: Vec<f64>,
    /// Beta1 (fastai's `mom`) for the next step.
    pub mom: f64,
    /// Decoupled weight decay for the next step.
    pub wd: f64,
    /// Fixed hyper-parameters.
    pub cfg: AdamConfig,
}

impl Adam {
    /// An optimizer over every parameter of `model` (frozen ones are skipped while they have no gradient).
    /// BatchNorm parameters get no weight decay (fastai's `wd_bn_bias=False`; the model has no biases
    /// outside BatchNorm).
    pub fn new(model: &dyn Model, cfg: AdamConfig) -> Self {
        let params = model
            .params()
            .iter()
            .map(|p| {
                let do_wd = p.kind != ParamKind::Norm;
                (p.name.clone(), p.tensor.shallow_clone(), do_wd, p.group)
            })
            .collect();
        Self::from_groups(params, model.n_groups(), cfg)
    }

    /// An optimizer over explicit `(name, parameter, decayed)` triples, all in one parameter group.
    pub fn from_params(params: Vec<(String, Tensor, bool)>, cfg: AdamConfig) -> Self {
        Self::from_groups(
            params
                .into_iter()
                .map(|(name, param, do_wd)| (name, param, do_wd, 0))
                .collect(),
            1,
            cfg,
        )
    }

    /// An optimizer over explicit `(name, parameter, decayed, group)` tuples in `n_groups` parameter
    /// groups (every group index below `n_groups`).
    pub fn from_groups(
        params: Vec<(String, Tensor, bool, usize)>,
        n_groups: usize,
        cfg: AdamConfig,
    ) -> Self {
        let n_groups = n_groups.max(1);
        let slots = params
            .into_iter()
            .map(|(name, param, do_wd, group)| Slot {
                name,
                param,
                group: group.min(n_groups - 1),
                do_wd,
                grad_avg: None,
                sqr_avg: None,
                step: 0,
                step_t: None,
            })
            .collect();
        Adam {
            slots,
            lrs: vec![1e-3; n_groups],
            mom: 0.9,
            wd: 0.01,
            cfg,
        }
    }

    /// Number of parameter groups.
    pub fn n_groups(&self) -> usize {
        self.lrs.len()
    }

    /// The learning rate of the last group (the head), the one fastai's recorder logs
    /// (`opt.hypers[-1]['lr']`).
    pub fn lr(&self) -> f64 {
        *self.lrs.last().expect("at least one group")
    }

    /// The learning rate of every group, first to last.
    pub fn lrs(&self) -> &[f64] {
        &self.lrs
    }

    /// Sets one learning rate for every group (fastai's `set_hyper('lr', float)`).
    pub fn set_lr(&mut self, lr: f64) {
        self.lrs.iter_mut().for_each(|l| *l = lr);
    }

    /// Sets a learning rate per group, first to last.
    pub fn set_lrs(&mut self, lrs: &[f64]) -> Result<()> {
        if lrs.len() != self.lrs.len() {
            return Err(Error::Invalid(format!(
                "expected {} learning rates, one per parameter group, found {}",
                self.lrs.len(),
                lrs.len()
            )));
        }
        self.lrs.copy_from_slice(lrs);
        Ok(())
    }

    /// The defined gradients of all parameters, in order (for loss scaling and checks).
    pub fn grads(&self) -> Vec<Tensor> {
        self.slots
            .iter()
            .map(|s| s.param.grad())
            .filter(Tensor::defined)
            .collect()
    }

    /// One step on every parameter that has a gradient, the formula of [`Adam::step_reference`], through
    /// libtorch's multi-tensor kernels: one fused AdamW call (or one run of `_foreach_` ops) per bucket of
    /// parameters that share a group, a device and whether they are decayed, instead of about eight small
    /// operations per parameter. Parameters without a gradient (frozen ones) are left alone.
    pub fn step(&mut self) -> Result<()> {
        let (mom, wd) = (self.mom, self.wd);
        let AdamConfig { sqr_mom, eps } = self.cfg;
        let _guard = tch::no_grad_guard();
        // Bucket keys in order of first appearance, so the launches follow the parameters' order.
        let mut buckets: Vec<(BucketKey, Vec<(usize, Tensor)>)> = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            let g = s.param.grad();
            if !g.defined() {
                continue;
            }
            if s.grad_avg.is_none() {
                s.grad_avg = Some(g.f_zeros_like()?);
            }
            if s.sqr_avg.is_none() {
                s.sqr_avg = Some(g.f_zeros_like()?);
            }
            if s.step_t.is_none() {
                let device = s.param.device();
                s.step_t = Some(Tensor::f_full(
                    [] as [i64; 0],
                    s.step as f64,
                    (Kind::Float, device),
                )?);
            }
            let key = (s.group, s.do_wd && wd != 0.0, s.param.device());
            match buckets.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push((i, g)),
                None => buckets.push((key, vec![(i, g)])),
            }
        }
        for ((group, decayed, _), members) in buckets {
            let slots: Vec<&Slot> = members.iter().map(|(i, _)| &self.slots[*i]).collect();
            // Every slot of a bucket got its moments and step tensor above; were one missing, the lists
            // would differ in length and the shim would refuse them.
            let exp_avgs: Vec<&Tensor> = slots.iter().filter_map(|s| s.grad_avg.as_ref()).collect();
            let exp_avg_sqs: Vec<&Tensor> =
                slots.iter().filter_map(|s| s.sqr_avg.as_ref()).collect();
            let state_steps: Vec<&Tensor> =
                slots.iter().filter_map(|s| s.step_t.as_ref()).collect();
            let params: Vec<&Tensor> = slots.iter().map(|s| &s.param).collect();
            let grads: Vec<&Tensor> = members.iter().map(|(_, g)| g).collect();
            let step_counts: Vec<i64> = slots
                .iter()
                .map(|s| i64::try_from(s.step + 1).unwrap_or(i64::MAX))
                .collect();
            let done = ffi::adam_step(
                &AdamBucket {
                    params: &params,
                    grads: &grads,
                    exp_avgs: &exp_avgs,
                    exp_avg_sqs: &exp_avg_sqs,
                    state_steps: &state_steps,
                    step_counts: &step_counts,
                },
                AdamHypers {
                    lr: self.lrs[group],
                    beta1: mom,
                    beta2: sqr_mom,
                    weight_decay: if decayed { wd } else { 0.0 },
                    eps,
                },
            );
            if done.is_err() {
                // The shim may have counted the step on the device before the kernel failed; the host
                // count is the truth, so the step tensors are made again from it next time.
                for (i, _) in &members {
                    self.slots[*i].step_t = None;
                }
            }
            done?;
            for (i, _) in &members {
                self.slots[*i].step += 1;
            }
        }
        Ok(())
    }

    /// The readable reference the fused [`Adam::step`] is tested against: the same step, parameter by
    /// parameter in about eight tensor operations each:
    /// `p *= 1 - lr*wd` (if decayed); `grad_avg = mom*grad_avg + (1-mom)*g`;
    /// `sqr_avg = sqr_mom*sqr_avg + (1-sqr_mom)*g²`; `p -= lr/(1-mom^t) * grad_avg / (sqrt(sqr_avg/(1-sqr_mom^t)) + eps)`.
    pub fn step_reference(&mut self) -> Result<()> {
        let (mom, wd) = (self.mom, self.wd);
        let AdamConfig { sqr_mom, eps } = self.cfg;
        let _guard = tch::no_grad_guard();
        for s in &mut self.slots {
            let lr = self.lrs[s.group];
            let g = s.param.grad();
            if !g.defined() {
                continue;
            }
            if s.do_wd && wd != 0.0 {
                let _ = s.param.f_mul_scalar_(1.0 - lr * wd)?;
            }
            let grad_avg = s.grad_avg.get_or_insert_with(|| g.zeros_like());
            let _ = grad_avg.f_lerp_(&g, 1.0 - mom)?;
            let sqr_avg = s.sqr_avg.get_or_insert_with(|| g.zeros_like());
            let _ = sqr_avg.f_lerp_(&g.square(), 1.0 - sqr_mom)?;
            s.step += 1;
            s.step_t = None;
            let debias1 = 1.0 - mom.powi(s.step as i32);
            let debias2 = 1.0 - sqr_mom.powi(s.step as i32);
            let denom = (&*sqr_avg / debias2).sqrt() + eps;
            let _ = s
                .param
                .f_addcdiv_(&(&*grad_avg * (-lr / debias1)), &denom)?;
        }
        Ok(())
    }

    /// A deep copy of the whole state (moments, step counts and hyper-parameters), for
    /// [`Adam::restore`]: what fastai's `learn.save(..., with_opt=True)` keeps.
    pub fn snapshot(&self) -> AdamSnapshot {
        let copy = |t: &Option<Tensor>| t.as_ref().map(|t| t.detach().copy());
        AdamSnapshot {
            slots: self
                .slots
                .iter()
                .map(|s| (copy(&s.grad_avg), copy(&s.sqr_avg), s.step))
                .collect(),
            lrs: self.lrs.clone(),
            mom: self.mom,
            wd: self.wd,
        }
    }

    /// Puts back a state taken by [`Adam::snapshot`] of this optimizer.
    pub fn restore(&mut self, snap: AdamSnapshot) {
        for (s, (a, q, step)) in self.slots.iter_mut().zip(snap.slots) {
            s.grad_avg = a;
            s.sqr_avg = q;
            s.step = step;
            s.step_t = None;
        }
        self.lrs = snap.lrs;
        self.mom = snap.mom;
        self.wd = snap.wd;
    }

    /// Zeroes every gradient (fastai keeps the gradient tensors and zeroes them).
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.param.zero_grad();
        }
    }

    /// The state as named CPU tensors (`<param>.grad_avg`, `<param>.sqr_avg`) and step counts per parameter.
    pub fn state(&self) -> (Vec<(String, Tensor)>, HashMap<String, u64>) {
        let mut tensors = Vec::new();
        let mut steps = HashMap::new();
        for s in &self.slots {
            if let (Some(a), Some(q)) = (&s.grad_avg, &s.sqr_avg) {
                tensors.push((
                    format!("{}.grad_avg", s.name),
                    a.to_device(tch::Device::Cpu).contiguous(),
                ));
                tensors.push((
                    format!("{}.sqr_avg", s.name),
                    q.to_device(tch::Device::Cpu).contiguous(),
                ));
                steps.insert(s.name.clone(), s.step);
            }
        }
        (tensors, steps)
    }

    /// Restores the state written by [`Adam::state`]; parameters absent from `steps` start fresh.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        steps: &HashMap<String, u64>,
    ) -> Result<()> {
        for s in &mut self.slots {
            let Some(&step) = steps.get(&s.name) else {
                s.grad_avg = None;
                s.sqr_avg = None;
                s.step = 0;
                s.step_t = None;
                continue;
            };
            let get = |suffix: &str| {
                let key = format!("{}.{suffix}", s.name);
                tensors.get(&key).ok_or_else(|| {
                    Error::Invalid(format!(
                        "optimizer state: expected tensor {key}, found none"
                    ))
                })
            };
            let (a, q) = (get("grad_avg")?, get("sqr_avg")?);
            if a.size() != s.param.size() || q.size() != s.param.size() {
                return Err(Error::Invalid(format!(
                    "optimizer state for {}: expected shape {:?}, found {:?}",
                    s.name,
                    s.param.size(),
                    a.size()
                )));
            }
            // Own copies in the parameter's dtype and memory layout (the fused kernel wants one dtype and
            // one layout: a channels_last weight's moments are channels_last too). Copies, because on the
            // CPU `to_device` returns the caller's tensors (those of `state()` alias the moments of the
            // optimizer they came from), and the step updates the moments in place.
            let own = |t: &Tensor| -> Result<Tensor> {
                let mut out = s.param.f_empty_like()?;
                out.f_copy_(t)?;
                Ok(out)
            };
            s.grad_avg = Some(own(a)?);
            s.sqr_avg = Some(own(q)?);
            s.step = step;
            s.step_t = None;
        }
        Ok(())
    }
}

/// An optimizer state taken by [`Adam::snapshot`].
#[derive(Debug)]
pub struct AdamSnapshot {
    slots: Vec<(Option<Tensor>, Option<Tensor>, u64)>,
    lrs: Vec<f64>,
    mom: f64,
    wd: f64,
}

/// Loss scaling for float16 autocast (PyTorch's `GradScaler` by hand: tch has autocast but no scaler).
/// The loss is multiplied by `scale` before backward; gradients are divided by it before the step; a step
/// whose gradients hold an inf or NaN is skipped and the scale halved; after `growth_interval` good steps
/// in a row the scale doubles.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScaler {
    /// Current scale (starts at 2^16 like PyTorch's).
    pub scale: f64,
    /// Good steps since the last change of scale.
    pub good_steps: u32,
    /// Good steps in a row before the scale doubles.
    pub growth_interval: u32,
    /// Steps skipped so far because of inf/NaN gradients.
    pub skipped: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler {
            scale: 65536.0,
            good_steps: 0,
            growth_interval: 2000,
            skipped: 0,
        }
    }
}

impl LossScaler {
    /// The loss to call backward on.
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * self.scale
    }

    /// Divides `grads` by the scale in place and reports whether all of them are finite; updates the scale
    /// and the skip count. The caller skips the optimizer step when this returns false.
    pub fn unscale_and_check(&mut self, grads: &[Tensor]) -> Result<bool> {
        let _guard = tch::no_grad_guard();
        let inv = 1.0 / self.scale;
        let mut finite_flags = Vec::with_capacity(grads.len());
        for g in grads {
            let mut g = g.shallow_clone();
            let _ = g.f_mul_scalar_(inv)?;
            finite_flags.push(g.f_isfinite()?.f_all()?);
        }
        let finite = finite_flags.is_empty()
            || Tensor::f_stack(&finite_flags, 0)?.f_all()?.int64_value(&[]) != 0;
        if finite {
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.scale *= 0.5;
            self.good_steps = 0;
            self.skipped += 1;
        }
        Ok(finite)
    }
}

//! The models the learner trains: the [`Model`] trait (forward, variables, parameter groups, freezing)
//! and fastai's `vision_learner(dls, resnet18)` model implementing it, a torchvision ResNet18 body (same
//! parameter names as torchvision's `state_dict`) and fastai's `create_head`, with fastai's
//! initialisation and freezing.

use crate::collective::{sync_batch_norm, Collective};
use crate::{Error, Result};
use rand::{Rng, RngCore};
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tch::nn::{Init, VarStore};
use tch::{Device, Kind, Tensor};

/// Channels of the ResNet18 body's output (fastai's `num_features_model`).
pub const BODY_FEATURES: i64 = 512;

/// Hidden width of fastai's head (`lin_ftrs = [nf, 512, n_out]`).
pub const HEAD_HIDDEN: i64 = 512;

/// Dropout of the head's first and second `LinBnDrop` (fastai: `ps=0.5` gives `[0.25, 0.5]`).
pub const HEAD_DROPOUT: (f64, f64) = (0.25, 0.5);

/// BatchNorm momentum and epsilon (PyTorch's defaults, used by torchvision and fastai).
const BN_MOMENTUM: f64 = 0.1;
const BN_EPS: f64 = 1e-5;

/// What a trainable parameter is, which decides weight decay and freezing (fastai's `norm_bias_params`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A convolution or linear weight: decayed, frozen with the body.
    Weight,
    /// A BatchNorm weight or bias: never decayed, trained even when the body is frozen (`train_bn`).
    Norm,
}

/// One trainable parameter, in construction order.
#[derive(Debug)]
pub struct Param {
    /// Its name: torchvision's for the body (`layer1.0.conv1.weight`), `head.<i>.…` for the head, where `i`
    /// is the layer's index in fastai's head `Sequential`.
    pub name: String,
    /// The tensor (shares storage and autograd state with the model's variable).
    pub tensor: Tensor,
    /// Weight or BatchNorm parameter.
    pub kind: ParamKind,
    /// Whether it belongs to the body (the pretrained part).
    pub in_body: bool,
    /// Its parameter group (fastai's `_resnet_split`): see [`param_group`].
    pub group: usize,
}

/// What the learner needs from a model (fastai's `Learner.model` plus its `splitter`): the forward pass,
/// the variables a checkpoint saves and loads, the trainable parameters with their groups (for
/// discriminative learning rates) and kinds (for weight decay and for freezing with `train_bn`).
pub trait Model: Send + std::fmt::Debug {
    /// Logits `(N, n_classes)`. `train = Some(rng)` is training mode (batch statistics in BatchNorm,
    /// dropout masks drawn from `rng`); `None` is evaluation mode.
    fn forward(&self, x: &Tensor, train: Option<&mut dyn RngCore>) -> Result<Tensor>;

    /// Number of classes of the output.
    fn n_classes(&self) -> usize;

    /// The device the weights live on.
    fn device(&self) -> Device;

    /// Trainable parameters in construction order, each with its group, kind and body flag.
    fn params(&self) -> &[Param];

    /// Number of parameter groups; every [`Param::group`] is below it.
    fn n_groups(&self) -> usize;

    /// Every variable by name, buffers (BatchNorm running statistics) included: what a checkpoint saves.
    fn variables(&self) -> HashMap<String, Tensor>;

    /// Whether the body is frozen.
    fn is_frozen(&self) -> bool;

    /// fastai's `freeze()` with `train_bn=True` (see [`set_trainable`]).
    fn freeze_body(&mut self);

    /// fastai's `unfreeze()`: every parameter trains.
    fn unfreeze(&mut self);

    /// PyTorch's `convert_sync_batchnorm`: with `Some(job)`, every BatchNorm layer normalises training
    /// batches with the whole job's statistics ([`crate::collective::sync_batch_norm`]); `None` goes back
    /// to each rank's own (DDP's default). A model without BatchNorm has nothing to change.
    fn sync_batch_norm(&mut self, ranks: Option<Arc<dyn Collective>>) {
        let _ = ranks;
    }

    /// Loads pretrained weights for the body and freezes it. Models without a pretrained format refuse.
    fn load_pretrained(&mut self, path: &Path) -> Result<()> {
        Err(Error::Pretrained {
            path: path.to_path_buf(),
            problem:
                "this model has no pretrained weight format; leave LearnerConfig::pretrained unset"
                    .into(),
        })
    }
}

/// Sets which of `params` train: with `frozen`, fastai's `freeze()` with `train_bn=True` (body weights
/// stop requiring gradients, body BatchNorm parameters and everything outside the body keep training);
/// without, every parameter trains. A helper for [`Model::freeze_body`] and [`Model::unfreeze`].
pub fn set_trainable(params: &[Param], frozen: bool) {
    for p in params {
        let trainable = !frozen || !p.in_body || p.kind == ParamKind::Norm;
        let _ = p.tensor.set_requires_grad(trainable);
    }
}

/// Parameter groups of the model, as fastai's resnet splitter makes them.
pub const N_GROUPS: usize = 3;

/// The parameter group of a variable, as fastai's `_resnet_split(m) = L(m[0][:6], m[0][6:], m[1:])`
/// splits a ResNet: 0 is the body up to `layer2` (conv1, bn1, layer1, layer2), 1 is `layer3` and
/// `layer4`, 2 is the head. Discriminative learning rates (`slice(lo, hi)`) and freezing work on
/// these groups.
pub fn param_group(name: &str) -> usize {
    if name.starts_with("head.") {
        2
    } else if name.starts_with("layer3.") || name.starts_with("layer4.") {
        1
    } else {
        0
    }
}

#[derive(Debug)]
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

/// How the BatchNorm layers of a forward pass normalise.
#[derive(Clone, Copy)]
enum Norm<'a> {
    /// Evaluation: the running statistics.
    Eval,
    /// Training: this batch's statistics.
    Batch,
    /// Training, SyncBatchNorm: the whole data-parallel job's batch statistics.
    Synced(&'a dyn Collective),
}

impl<'a> Norm<'a> {
    fn new(train: bool, sync: Option<&'a dyn Collective>) -> Self {
        match (train, sync) {
            (false, _) => Norm::Eval,
            (true, None) => Norm::Batch,
            (true, Some(ranks)) => Norm::Synced(ranks),
        }
    }
}

impl BatchNorm {
    fn forward(&self, x: &Tensor, norm: Norm<'_>) -> Result<Tensor> {
        if let Norm::Synced(ranks) = norm {
            return sync_batch_norm(
                x,
                &self.weight,
                &self.bias,
                &self.running_mean,
                &self.running_var,
                BN_MOMENTUM,
                BN_EPS,
                ranks,
            );
        }
        Ok(Tensor::f_batch_norm(
            x,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            matches!(norm, Norm::Batch),
            BN_MOMENTUM,
            BN_EPS,
            true,
        )?)
    }
}

#[derive(Debug)]
struct Conv {
    weight: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(
            &self.weight,
            None::<&Tensor>,
            [self.stride; 2],
            [self.padding; 2],
            [1, 1],
            1,
        )
    }
}

#[derive(Debug)]
struct BasicBlock {
    conv1: Conv,
    bn1: BatchNorm,
    conv2: Conv,
    bn2: BatchNorm,
    downsample: Option<(Conv, BatchNorm)>,
}

impl BasicBlock {
    fn forward(&self, x: &Tensor, norm: Norm<'_>) -> Result<Tensor> {
        // In place, as torchvision's block (`ReLU(inplace=True)`, `out += identity`): BatchNorm's and
        // the addition's backward passes do not read their outputs, so autograd allows it, and the
        // passes make fewer and smaller memory sweeps.
        let mut out = self.bn1.forward(&self.conv1.forward(x), norm)?;
        let _ = out.f_relu_()?;
        let mut out = self.bn2.forward(&self.conv2.forward(&out), norm)?;
        match &self.downsample {
            Some((conv, bn)) => {
                let _ = out.f_add_(&bn.forward(&conv.forward(x), norm)?)?;
            }
            None => {
                let _ = out.f_add_(x)?;
            }
        }
        let _ = out.f_relu_()?;
        Ok(out)
    }
}

/// Collects parameters in construction order while the model is built.
struct Builder<'a> {
    vs: &'a VarStore,
    params: Vec<(String, ParamKind, bool)>,
    in_body: bool,
}

impl Builder<'_> {
    fn path(&self, name: &str) -> tch::nn::Path<'_> {
        name.split('.').fold(self.vs.root(), |p, c| p.sub(c))
    }

    fn conv(
        &mut self,
        name: &str,
        c_in: i64,
        c_out: i64,
        k: i64,
        stride: i64,
        padding: i64,
    ) -> Conv {
        let weight = self
            .path(name)
            .var("weight", &[c_out, c_in, k, k], Init::Const(0.0));
        self.params
            .push((format!("{name}.weight"), ParamKind::Weight, self.in_body));
        Conv {
            weight,
            stride,
            padding,
        }
    }

    fn bn(&mut self, name: &str, n: i64, bias: f64) -> BatchNorm {
        let p = self.path(name);
        let weight = p.var("weight", &[n], Init::Const(1.0));
        let bias = p.var("bias", &[n], Init::Const(bias));
        let running_mean = p.zeros_no_train("running_mean", &[n]);
        let running_var = p.ones_no_train("running_var", &[n]);
        self.params
            .push((format!("{name}.weight"), ParamKind::Norm, self.in_body));
        self.params
            .push((format!("{name}.bias"), ParamKind::Norm, self.in_body));
        BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
        }
    }

    fn linear(&mut self, name: &str, n_in: i64, n_out: i64) -> Tensor {
        let w = self
            .path(name)
            .var("weight", &[n_out, n_in], Init::Const(0.0));
        self.params
            .push((format!("{name}.weight"), ParamKind::Weight, self.in_body));
        w
    }
}

/// fastai's `AdaptiveConcatPool2d`: `cat([max_pool(x), avg_pool(x)], 1)` to 1x1, then `Flatten`.
pub fn concat_pool(x: &Tensor) -> Tensor {
    let (mx, _) = x.adaptive_max_pool2d([1, 1]);
    let avg = x.adaptive_avg_pool2d([1, 1]);
    Tensor::cat(&[mx, avg], 1).flatten(1, -1)
}

/// A `nn.Dropout(p)` keep-mask of `shape` drawn from `rng` on the CPU: 0 with probability `p`, else
/// `1 / (1 - p)`.
pub fn dropout_mask<R: RngCore + ?Sized>(
    shape: &[i64],
    p: f64,
    device: Device,
    rng: &mut R,
) -> Tensor {
    let n: i64 = shape.iter().product();
    let keep = (1.0 / (1.0 - p)) as f32;
    let mask: Vec<f32> = (0..n)
        .map(|_| if rng.gen::<f64>() < p { 0.0 } else { keep })
        .collect();
    Tensor::from_slice(&mask).view(shape).to_device(device)
}

/// `nn.Dropout(p)` in training mode with the keep-mask drawn from `rng` on the CPU (so seeded runs are
/// reproducible on every device whatever else uses libtorch's generator); the identity without an rng.
pub fn dropout<R: RngCore + ?Sized>(x: &Tensor, p: f64, rng: Option<&mut R>) -> Result<Tensor> {
    match rng {
        Some(rng) if p > 0.0 => Ok(x.f_mul(&dropout_mask(&x.size(), p, x.device(), rng))?),
        _ => Ok(x.shallow_clone()),
    }
}

/// ResNet18 body plus fastai head, its variables and its training switches.
#[derive(Debug)]
pub struct VisionModel {
    vs: VarStore,
    conv1: Conv,
    bn1: BatchNorm,
    layers: Vec<Vec<BasicBlock>>,
    head_bn1: BatchNorm,
    head_lin1: Tensor,
    head_bn2: BatchNorm,
    head_lin2: Tensor,
    params: Vec<Param>,
    n_classes: i64,
    frozen: bool,
    /// The job whose batch statistics every BatchNorm layer uses in training (SyncBatchNorm), if any.
    sync_bn: Option<Arc<dyn Collective>>,
}

impl VisionModel {
    /// Builds the model on `device` with fresh weights drawn from `rng`: torchvision's init for the body
    /// (conv kaiming normal, fan_out, relu gain; BatchNorm 1 and 0) and fastai's for the head (linear
    /// kaiming normal, fan_in, gain sqrt(2); BatchNorm weight 1 and bias 1e-3).
    pub fn new(n_classes: usize, device: Device, rng: &mut impl Rng) -> Result<Self> {
        if n_classes == 0 {
            return Err(Error::Invalid(
                "expected at least one class for the model's head, found 0".into(),
            ));
        }
        let n_classes = n_classes as i64;
        let vs = VarStore::new(device);
        let mut b = Builder {
            vs: &vs,
            params: Vec::new(),
            in_body: true,
        };
        let conv1 = b.conv("conv1", 3, 64, 7, 2, 3);
        let bn1 = b.bn("bn1", 64, 0.0);
        let mut layers = Vec::new();
        let mut c_in = 64;
        for (li, c_out) in [64i64, 128, 256, 512].into_iter().enumerate() {
            let stride = if li == 0 { 1 } else { 2 };
            let mut blocks = Vec::new();
            for bi in 0..2 {
                let p = format!("layer{}.{bi}", li + 1);
                let (s, cin) = if bi == 0 { (stride, c_in) } else { (1, c_out) };
                let conv1 = b.conv(&format!("{p}.conv1"), cin, c_out, 3, s, 1);
                let bn1 = b.bn(&format!("{p}.bn1"), c_out, 0.0);
                let conv2 = b.conv(&format!("{p}.conv2"), c_out, c_out, 3, 1, 1);
                let bn2 = b.bn(&format!("{p}.bn2"), c_out, 0.0);
                let downsample = (s != 1 || cin != c_out).then(|| {
                    let conv = b.conv(&format!("{p}.downsample.0"), cin, c_out, 1, s, 0);
                    let bn = b.bn(&format!("{p}.downsample.1"), c_out, 0.0);
                    (conv, bn)
                });
                blocks.push(BasicBlock {
                    conv1,
                    bn1,
                    conv2,
                    bn2,
                    downsample,
                });
            }
            layers.push(blocks);
            c_in = c_out;
        }
        // fastai's head Sequential: 0 pool, 1 flatten, 2 BatchNorm1d, 3 Dropout, 4 Linear, 5 ReLU,
        // 6 BatchNorm1d, 7 Dropout, 8 Linear; the names keep those indices.
        b.in_body = false;
        let head_bn1 = b.bn("head.2", 2 * BODY_FEATURES, 1e-3);
        let head_lin1 = b.linear("head.4", 2 * BODY_FEATURES, HEAD_HIDDEN);
        let head_bn2 = b.bn("head.6", HEAD_HIDDEN, 1e-3);
        let head_lin2 = b.linear("head.8", HEAD_HIDDEN, n_classes);
        let order = b.params;
        let vars = vs.variables();
        let params = order
            .into_iter()
            .map(|(name, kind, in_body)| {
                let tensor = vars[&name].shallow_clone();
                Param {
                    group: param_group(&name),
                    name,
                    tensor,
                    kind,
                    in_body,
                }
            })
            .collect();
        let mut model = VisionModel {
            vs,
            conv1,
            bn1,
            layers,
            head_bn1,
            head_lin1,
            head_bn2,
            head_lin2,
            params,
            n_classes,
            frozen: false,
            sync_bn: None,
        };
        model.init_weights(rng)?;
        Ok(model)
    }

    /// Draws every conv and linear weight again (BatchNorms keep their constant init).
    fn init_weights(&mut self, rng: &mut impl Rng) -> Result<()> {
        for p in self
            .params
            .iter_mut()
            .filter(|p| p.kind == ParamKind::Weight)
        {
            let size = p.tensor.size();
            let fan = if p.in_body {
                // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu") on convs.
                size[0] * size[2..].iter().product::<i64>()
            } else {
                // fastai: nn.init.kaiming_normal_ defaults (fan_in, leaky_relu with a=0, i.e. gain sqrt(2)).
                size[1..].iter().product::<i64>()
            };
            let std = (2.0 / fan as f64).sqrt();
            let n: i64 = size.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    (std * {
                        let z: f64 = StandardNormal.sample(rng);
                        z
                    }) as f32
                })
                .collect();
            let src = Tensor::from_slice(&values)
                .view(size.as_slice())
                .to_device(self.vs.device());
            tch::no_grad(|| p.tensor.f_copy_(&src))?;
        }
        Ok(())
    }

    /// The body's feature map `(N, 512, H/32, W/32)` for images `(N, 3, H, W)`.
    pub fn body_forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let size = x.size();
        if size.len() != 4 || size[1] != 3 {
            return Err(Error::Invalid(format!(
                "expected images shaped (batch, 3, height, width), found {size:?}"
            )));
        }
        let x = x.f_conv2d(
            &self.conv1.weight,
            None::<&Tensor>,
            [2, 2],
            [3, 3],
            [1, 1],
            1,
        )?;
        let norm = Norm::new(train, self.sync_bn.as_deref());
        let mut x = self.bn1.forward(&x, norm)?;
        let _ = x.f_relu_()?;
        let mut x = x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for block in self.layers.iter().flatten() {
            x = block.forward(&x, norm)?;
        }
        Ok(x)
    }

    /// fastai's head on a body feature map: concat pool, flatten, then two `LinBnDrop`s. `train` carries the
    /// rng the dropout masks are drawn from; `None` is evaluation mode.
    pub fn head_forward(
        &self,
        features: &Tensor,
        train: Option<&mut dyn RngCore>,
    ) -> Result<Tensor> {
        let n = features.size().first().copied().unwrap_or(0);
        let masks = train.map(|rng| self.dropout_masks(n, features.device(), rng));
        self.head_with_masks(features, masks.as_ref())
    }

    /// Both head dropout masks for a batch of `n`, in the order the head applies them.
    fn dropout_masks(&self, n: i64, device: Device, rng: &mut dyn RngCore) -> (Tensor, Tensor) {
        let first = dropout_mask(&[n, 2 * BODY_FEATURES], HEAD_DROPOUT.0, device, rng);
        let second = dropout_mask(&[n, HEAD_HIDDEN], HEAD_DROPOUT.1, device, rng);
        (first, second)
    }

    fn head_with_masks(
        &self,
        features: &Tensor,
        masks: Option<&(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        let norm = Norm::new(masks.is_some(), self.sync_bn.as_deref());
        let drop = |x: Tensor, m: Option<&Tensor>| match m {
            Some(m) => x.f_mul(m),
            None => Ok(x),
        };
        let x = concat_pool(features);
        let x = drop(self.head_bn1.forward(&x, norm)?, masks.map(|m| &m.0))?;
        let mut x = x.linear(&self.head_lin1, None::<&Tensor>);
        let _ = x.f_relu_()?;
        let x = drop(self.head_bn2.forward(&x, norm)?, masks.map(|m| &m.1))?;
        Ok(x.linear(&self.head_lin2, None::<&Tensor>))
    }

    /// Logits `(N, n_classes)`. `train = Some(rng)` is training mode (batch statistics in BatchNorm, dropout
    /// masks drawn from `rng`); `None` is evaluation mode.
    pub fn forward(&self, x: &Tensor, train: Option<&mut dyn RngCore>) -> Result<Tensor> {
        // The masks are drawn and copied before the body is queued, so on CUDA their host-to-device
        // copies do not wait for the body's kernels.
        let n = x.size().first().copied().unwrap_or(0);
        let masks = train.map(|rng| self.dropout_masks(n, x.device(), rng));
        let features = self.body_forward(x, masks.is_some())?;
        self.head_with_masks(&features, masks.as_ref())
    }

    /// Number of classes of the head.
    pub fn n_classes(&self) -> usize {
        self.n_classes as usize
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Trainable parameters in construction order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Every variable by name, buffers (`running_mean`, `running_var`) included.
    pub fn variables(&self) -> HashMap<String, Tensor> {
        self.vs.variables()
    }

    /// Casts every variable to `kind` (for example `Kind::Double` for exact comparisons).
    pub fn set_kind(&mut self, kind: Kind) {
        self.vs.set_kind(kind);
    }

    /// Whether the body is frozen (all but its BatchNorm parameters excluded from training).
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// fastai's `freeze()` with `train_bn=True`: body weights stop requiring gradients, body BatchNorm
    /// parameters and the whole head keep training.
    pub fn freeze_body(&mut self) {
        set_trainable(&self.params, true);
        self.frozen = true;
    }

    /// fastai's `unfreeze()`: every parameter trains.
    pub fn unfreeze(&mut self) {
        set_trainable(&self.params, false);
        self.frozen = false;
    }

    /// Loads torchvision-format ResNet18 weights (a `state_dict` saved as `.safetensors`, for example
    /// timm's `resnet18.tv_in1k`) into the body and freezes the body except its BatchNorms, as fastai does
    /// for a pretrained `vision_learner`. `fc.*` and `*.num_batches_tracked` are ignored; every body
    /// variable must be present with torchvision's shape.
    pub fn load_pretrained(&mut self, path: &Path) -> Result<()> {
        self.load_body(path)?;
        self.freeze_body();
        Ok(())
    }

    /// Loads every variable (body, head and BatchNorm buffers) from a `.safetensors` file written from
    /// such a model's variables, such as a run's `model.safetensors`. Every name and shape must match,
    /// so a file for another number of classes is refused with both shapes named.
    pub fn load_all(&mut self, path: &Path) -> Result<()> {
        let fail = |problem: String| Error::Weights {
            path: path.to_path_buf(),
            problem,
        };
        let file: HashMap<String, Tensor> = Tensor::read_safetensors(path)
            .map_err(|e| fail(format!("cannot read it as safetensors ({e})")))?
            .into_iter()
            .collect();
        let vars = self.vs.variables();
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        for name in names {
            let src = file.get(name).ok_or_else(|| {
                fail(format!(
                    "variable {name} missing; expected a model saved by mix-train"
                ))
            })?;
            let var = &vars[name];
            if src.size() != var.size() {
                return Err(fail(format!(
                    "{name}: expected shape {:?}, found {:?}",
                    var.size(),
                    src.size()
                )));
            }
            let src = src.to_kind(var.kind()).to_device(var.device());
            let mut dst = var.shallow_clone();
            tch::no_grad(|| dst.f_copy_(&src))?;
        }
        Ok(())
    }

    /// Copies torchvision-named body weights from a `.safetensors` file without changing what trains.
    pub fn load_body(&mut self, path: &Path) -> Result<()> {
        let fail = |problem: String| Error::Pretrained {
            path: path.to_path_buf(),
            problem,
        };
        let named = Tensor::read_safetensors(path).map_err(|e| {
            fail(format!(
                "cannot read it as safetensors ({e}); download it again"
            ))
        })?;
        let mut file: HashMap<String, Tensor> = named.into_iter().collect();
        let vars = self.vs.variables();
        let mut body: Vec<(&String, &Tensor)> = vars
            .iter()
            .filter(|(n, _)| !n.starts_with("head."))
            .collect();
        body.sort_by(|a, b| a.0.cmp(b.0));
        let missing: Vec<&str> = body
            .iter()
            .filter(|(n, _)| !file.contains_key(n.as_str()))
            .map(|(n, _)| n.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(fail(format!(
                "expected torchvision ResNet18 names, {} missing (first: {}); use a torchvision-format resnet18 file",
                missing.len(),
                missing[0]
            )));
        }
        let mut unknown: Vec<&String> = file
            .keys()
            .filter(|n| {
                !vars.contains_key(*n)
                    && !n.starts_with("fc.")
                    && !n.ends_with("num_batches_tracked")
            })
            .collect();
        unknown.sort();
        if let Some(first) = unknown.first() {
            return Err(fail(format!(
                "found {} names that are not in torchvision's ResNet18 (first: {first}); is this another architecture?",
                unknown.len()
            )));
        }
        for (name, var) in body {
            let src = file.remove(name.as_str()).expect("checked above");
            if src.size() != var.size() {
                return Err(fail(format!(
                    "{name}: expected shape {:?}, found {:?}",
                    var.size(),
                    src.size()
                )));
            }
            let src = src.to_kind(Kind::Float).to_device(var.device());
            let mut dst = var.shallow_clone();
            tch::no_grad(|| dst.f_copy_(&src))?;
        }
        Ok(())
    }
}

impl Model for VisionModel {
    fn forward(&self, x: &Tensor, train: Option<&mut dyn RngCore>) -> Result<Tensor> {
        VisionModel::forward(self, x, train)
    }

    fn n_classes(&self) -> usize {
        VisionModel::n_classes(self)
    }

    fn device(&self) -> Device {
        VisionModel::device(self)
    }

    fn params(&self) -> &[Param] {
        VisionModel::params(self)
    }

    fn n_groups(&self) -> usize {
        N_GROUPS
    }

    fn variables(&self) -> HashMap<String, Tensor> {
        VisionModel::variables(self)
    }

    fn is_frozen(&self) -> bool {
        VisionModel::is_frozen(self)
    }

    fn freeze_body(&mut self) {
        VisionModel::freeze_body(self)
    }

    fn unfreeze(&mut self) {
        VisionModel::unfreeze(self)
    }

    fn load_pretrained(&mut self, path: &Path) -> Result<()> {
        VisionModel::load_pretrained(self, path)
    }

    fn sync_batch_norm(&mut self, ranks: Option<Arc<dyn Collective>>) {
        self.sync_bn = ranks;
    }
}

/// A boxed model is a model, so that `&learn.model` goes wherever a `&dyn Model` does.
impl<M: Model + ?Sized> Model for Box<M> {
    fn forward(&self, x: &Tensor, train: Option<&mut dyn RngCore>) -> Result<Tensor> {
        (**self).forward(x, train)
    }

    fn n_classes(&self) -> usize {
        (**self).n_classes()
    }

    fn device(&self) -> Device {
        (**self).device()
    }

    fn params(&self) -> &[Param] {
        (**self).params()
    }

    fn n_groups(&self) -> usize {
        (**self).n_groups()
    }

    fn variables(&self) -> HashMap<String, Tensor> {
        (**self).variables()
    }

    fn is_frozen(&self) -> bool {
        (**self).is_frozen()
    }

    fn freeze_body(&mut self) {
        (**self).freeze_body()
    }

    fn unfreeze(&mut self) {
        (**self).unfreeze()
    }

    fn load_pretrained(&mut self, path: &Path) -> Result<()> {
        (**self).load_pretrained(path)
    }

    fn sync_batch_norm(&mut self, ranks: Option<Arc<dyn Collective>>) {
        (**self).sync_batch_norm(ranks)
    }
}

/// A small conv net: a 3x3 convolution with 8 channels and stride 2 (the "body"), ReLU, global average
/// pooling and a linear layer with bias (the "head"); two parameter groups, no BatchNorm, no dropout.
/// Trains in seconds on a CPU: for tests and examples of the learner around a caller's model, and for
/// checks that need a model without batch statistics (a data-parallel run equals a single-process one).
#[derive(Debug)]
pub struct TinyNet {
    params: Vec<Param>,
    n_classes: usize,
    frozen: bool,
}

impl TinyNet {
    /// Its weights drawn uniformly from `rng` (the convolution and the linear weight in ±0.3, the bias 0).
    pub fn new(n_classes: usize, device: Device, rng: &mut impl Rng) -> Self {
        let mut var = |name: &str, shape: &[i64], std: f32, in_body: bool, group: usize| {
            let n: i64 = shape.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    if std > 0.0 {
                        rng.gen_range(-std..std)
                    } else {
                        0.0
                    }
                })
                .collect();
            let tensor = Tensor::from_slice(&values)
                .view(shape)
                .to_device(device)
                .set_requires_grad(true);
            Param {
                name: name.into(),
                tensor,
                kind: ParamKind::Weight,
                in_body,
                group,
            }
        };
        let c = n_classes as i64;
        let params = vec![
            var("conv.weight", &[8, 3, 3, 3], 0.3, true, 0),
            var("head.weight", &[c, 8], 0.3, false, 1),
            var("head.bias", &[c], 0.0, false, 1),
        ];
        TinyNet {
            params,
            n_classes,
            frozen: false,
        }
    }
}

impl Model for TinyNet {
    fn forward(&self, x: &Tensor, _train: Option<&mut dyn RngCore>) -> Result<Tensor> {
        let p = &self.params;
        let h = x
            .f_conv2d(&p[0].tensor, None::<&Tensor>, [2, 2], [1, 1], [1, 1], 1)?
            .f_relu()?
            .f_mean_dim([2, 3].as_slice(), false, Kind::Float)?;
        Ok(h.f_linear(&p[1].tensor, Some(&p[2].tensor))?)
    }

    fn n_classes(&self) -> usize {
        self.n_classes
    }

    fn device(&self) -> Device {
        self.params[0].tensor.device()
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn n_groups(&self) -> usize {
        2
    }

    fn variables(&self) -> HashMap<String, Tensor> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.tensor.shallow_clone()))
            .collect()
    }

    fn is_frozen(&self) -> bool {
        self.frozen
    }

    fn freeze_body(&mut self) {
        set_trainable(&self.params, true);
        self.frozen = true;
    }

    fn unfreeze(&mut self) {
        set_trainable(&self.params, false);
        self.frozen = false;
    }
}

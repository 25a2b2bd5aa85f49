//! What the learner needs from a data-parallel job (mix-dist implements it): this process's rank, the
//! number of ranks, sums across ranks (so that every rank logs the same losses and metrics), and a
//! differentiable gather, with the synchronised BatchNorm built on it.

use crate::Result;
use tch::{Kind, Tensor};

/// One rank of a data-parallel job, as the learner sees it. The gradient all-reduce is not here: it is
/// a callback of mix-dist (`Ddp`), like fastai's `DistributedTrainer`.
pub trait Collective: Send + Sync + std::fmt::Debug {
    /// This process's rank, `0..world()`.
    fn rank(&self) -> usize;

    /// How many ranks train together.
    fn world(&self) -> usize;

    /// Replaces each tensor, on every rank, by its sum over the ranks. Every rank calls it with tensors
    /// of the same shapes, dtypes and order; the learner does so at the same points on every rank.
    fn sum(&self, tensors: &[&Tensor]) -> Result<()>;

    /// Every rank's `tensor` (same shape on all), concatenated along dimension 0 in rank order, as a
    /// differentiable operation: the gradient of each rank's slice comes back to that rank summed over
    /// the ranks. What [`sync_batch_norm`] gathers its statistics with.
    fn all_gather(&self, tensor: &Tensor) -> Result<Tensor>;
}

/// PyTorch's `SyncBatchNorm` in training mode: BatchNorm over the whole job's batch. Each rank's
/// per-channel sums and squared sums are gathered from every rank (differentiably, so the backward pass
/// sums every rank's share of the statistics' gradient), the batch is normalised with the job's mean
/// and biased variance, and the running statistics move towards the job's mean and unbiased variance
/// with `momentum`, as `torch.nn.BatchNorm2d` does for one process. `x` is `(N, C, ...)`; the
/// statistics are computed in float32 (the result has `x`'s kind). Every rank must call it for the
/// same layers in the same order.
#[allow(clippy::too_many_arguments)]
pub fn sync_batch_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    momentum: f64,
    eps: f64,
    ranks: &dyn Collective,
) -> Result<Tensor> {
    let size = x.size();
    let c = *size.get(1).ok_or_else(|| {
        crate::Error::Invalid(format!(
            "sync batch norm: expected (N, C, ...), found {size:?}"
        ))
    })?;
    let dims: Vec<i64> = (0..size.len() as i64).filter(|&d| d != 1).collect();
    let xf = x.f_to_kind(Kind::Float)?;
    let count = size.iter().product::<i64>() / c.max(1);
    let sum = xf.f_sum_dim_intlist(dims.as_slice(), false, Kind::Float)?;
    let sumsq = (&xf * &xf).f_sum_dim_intlist(dims.as_slice(), false, Kind::Float)?;
    let n = Tensor::from_slice(&[count as f32]).f_to_device(x.device())?;
    let local = Tensor::f_cat(&[&sum, &sumsq, &n], 0)?;
    let all = ranks
        .all_gather(&local)?
        .f_view([ranks.world() as i64, 2 * c + 1])?
        .f_sum_dim_intlist([0].as_slice(), false, Kind::Float)?;
    let total = all.f_narrow(0, 2 * c, 1)?;
    let mean = all.f_narrow(0, 0, c)? / &total;
    let var = all.f_narrow(0, c, c)? / &total - &mean * &mean;
    let mut shape = vec![1i64; size.len()];
    shape[1] = c;
    let inv_std = (&var + eps).f_rsqrt()?;
    let y = (&xf - mean.f_view(shape.as_slice())?)
        * inv_std.f_view(shape.as_slice())?
        * weight.f_view(shape.as_slice())?
        + bias.f_view(shape.as_slice())?;
    tch::no_grad(|| -> Result<()> {
        let n = total.f_double_value(&[0])?;
        let unbiased = &var * (n / (n - 1.0).max(1.0));
        let mut rm = running_mean.shallow_clone();
        let mut rv = running_var.shallow_clone();
        let _ = rm
            .f_mul_scalar_(1.0 - momentum)?
            .f_add_(&(mean.detach() * momentum))?;
        let _ = rv
            .f_mul_scalar_(1.0 - momentum)?
            .f_add_(&(unbiased.detach() * momentum))?;
        Ok(())
    })?;
    Ok(y.f_to_kind(x.kind())?)
}

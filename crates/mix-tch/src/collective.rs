//! What the learner needs from a data-parallel job (mix-dist implements it): this process's rank, the
//! number of ranks, and sums across ranks, so that every rank logs the same losses and metrics.

use crate::Result;
use tch::Tensor;

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
}

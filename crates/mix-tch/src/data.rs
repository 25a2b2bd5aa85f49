//! Where the learner's batches come from: any [`BatchSource`] of mix-data's `u8` NCHW batches.

use crate::{Error, Result};
use mix_core::stream::{stream_rng, Purpose};
use mix_data::Batch;
use ndarray::{Array4, Axis};
use rand::seq::SliceRandom;
use tch::{Device, Tensor};

/// A finite, re-iterable sequence of batches, one pass per epoch (fastai's `DataLoader`).
pub trait BatchSource: Send {
    /// Batches in one pass.
    fn num_batches(&self) -> usize;

    /// The batches of pass `epoch`; the order may depend on `epoch` (shuffling) but not on anything else.
    fn batches(&self, epoch: u64) -> Box<dyn Iterator<Item = Result<Batch>> + Send + '_>;

    /// A batch already on the device, `(u8 images (N, 3, H, W), i64 labels)`, that every step of a pass
    /// uses instead of [`BatchSource::batches`] ([`Resident`]); `None` (the default) for host batches.
    fn resident(&self) -> Option<(&Tensor, &Tensor)> {
        None
    }
}

/// One batch kept on the device and served `n_batches` times a pass: the learner's steps without the
/// loader and the host-to-device copy, to measure the device-only ceiling of an epoch.
#[derive(Debug)]
pub struct Resident {
    images: Tensor,
    labels: Tensor,
    n_batches: usize,
}

impl Resident {
    /// `batch` moved to `device` once, served `n_batches` times a pass.
    pub fn new(batch: &Batch, device: Device, n_batches: usize) -> Result<Self> {
        let images = batch.images.as_standard_layout();
        let (n, c, h, w) = images.dim();
        let slice = images
            .as_slice()
            .ok_or_else(|| Error::Data("batch images not contiguous".into()))?;
        let labels: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
        if n == 0 || labels.len() != n {
            return Err(Error::Data(format!(
                "expected a non-empty batch with one label per image, found {n} images and {} labels",
                labels.len()
            )));
        }
        Ok(Resident {
            images: Tensor::from_slice(slice)
                .f_view([n as i64, c as i64, h as i64, w as i64])?
                .f_to_device(device)?,
            labels: Tensor::from_slice(&labels).f_to_device(device)?,
            n_batches,
        })
    }
}

impl BatchSource for Resident {
    fn num_batches(&self) -> usize {
        self.n_batches
    }

    fn batches(&self, _epoch: u64) -> Box<dyn Iterator<Item = Result<Batch>> + Send + '_> {
        Box::new(std::iter::empty())
    }

    fn resident(&self) -> Option<(&Tensor, &Tensor)> {
        Some((&self.images, &self.labels))
    }
}

impl BatchSource for mix_data::DataLoader {
    fn num_batches(&self) -> usize {
        mix_data::DataLoader::num_batches(self)
    }

    fn batches(&self, epoch: u64) -> Box<dyn Iterator<Item = Result<Batch>> + Send + '_> {
        Box::new(self.epoch(epoch).map(|b| b.map_err(Error::from)))
    }
}

/// Images held in memory, cut into batches; shuffled per epoch from a seed when asked (for tests and
/// benchmarks).
#[derive(Debug, Clone)]
pub struct InMemory {
    images: Array4<u8>,
    labels: Vec<usize>,
    batch_size: usize,
    shuffle: Option<u64>,
    drop_last: bool,
}

impl InMemory {
    /// A source over `images` `(N, 3, H, W)` and their `labels`. `shuffle = Some(seed)` shuffles every epoch
    /// from `(seed, epoch)` (`mix_core::stream::Purpose::InMemoryEpoch`, a stream no other consumer of
    /// the seed uses); `drop_last` drops a last partial batch (fastai does for training).
    pub fn new(
        images: Array4<u8>,
        labels: Vec<usize>,
        batch_size: usize,
        shuffle: Option<u64>,
        drop_last: bool,
    ) -> Result<Self> {
        if images.len_of(Axis(0)) != labels.len() || batch_size == 0 || labels.is_empty() {
            return Err(Error::Invalid(format!(
                "expected as many labels as images and a batch size of at least 1, found {} images, {} labels, \
                 batch size {batch_size}",
                images.len_of(Axis(0)),
                labels.len()
            )));
        }
        Ok(InMemory {
            images,
            labels,
            batch_size,
            shuffle,
            drop_last,
        })
    }

    fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.labels.len()).collect();
        if let Some(seed) = self.shuffle {
            order.shuffle(&mut stream_rng(seed, Purpose::InMemoryEpoch, epoch));
        }
        order
    }
}

impl BatchSource for InMemory {
    fn num_batches(&self) -> usize {
        let n = self.labels.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    fn batches(&self, epoch: u64) -> Box<dyn Iterator<Item = Result<Batch>> + Send + '_> {
        let order = self.order(epoch);
        let n_batches = self.num_batches();
        let bs = self.batch_size;
        Box::new((0..n_batches).map(move |b| {
            let idx: Vec<usize> = order[b * bs..((b + 1) * bs).min(order.len())].to_vec();
            Ok(Batch {
                images: self.images.select(Axis(0), &idx),
                labels: idx.iter().map(|&i| self.labels[i]).collect(),
            })
        }))
    }
}

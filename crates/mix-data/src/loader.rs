//! Batches of decoded, cropped images: fastai's `DataLoader`/`DataLoaders` for this pipeline.
//!
//! Each call to [`DataLoader::epoch`] plans the whole epoch up front on the calling thread (item
//! order and crop positions from `(seed, epoch)`), then a producer thread decodes it window by
//! window on a rayon pool and sends finished batches through a bounded channel. Planning before
//! decoding is what makes results identical for any thread count.
//!
//! Every size in [`LoaderConfig`] is bounded ([`LoaderConfig::validate`]), buffer sizes are
//! computed with checked arithmetic, and the decoding threads share a budget of bytes of decoded
//! pixels ([`LoaderConfig::max_in_flight_bytes`]), so no setting or file can make the loader
//! abort on an allocation or panic on an overflow.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use image::RgbImage;
use mix_core::stream::{stream_rng, Purpose};
use ndarray::{Array3, Array4, ArrayViewMut3};
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::decode::{decode_file, MemoryBudget, Permit};
use crate::resize::{check_size, crop_window_into};
use crate::{
    imagenet_normalize, random_split, resize_crop_into, resize_short_side, CropPos, DecodeLimits,
    Error, RegexLabeller, Result, Shard, Vocab, MAX_ITEM_SIDE,
};

/// Largest [`LoaderConfig::batch_size`]: 65536 items.
pub const MAX_BATCH_SIZE: usize = 1 << 16;

/// Largest batch in bytes (`batch_size * 3 * item_size^2`): 4 GiB, for example 85 items of
/// [`MAX_ITEM_SIDE`] or 21845 of 256.
pub const MAX_BATCH_BYTES: usize = 4 << 30;

/// Largest [`LoaderConfig::threads`]: 1024 decoding threads.
pub const MAX_THREADS: usize = 1024;

/// Largest [`LoaderConfig::prefetch`]: 64 batches waiting.
pub const MAX_PREFETCH: usize = 64;

/// Default of [`LoaderConfig::max_in_flight_bytes`]: 1 GiB of decoded pixels at once, whatever
/// the number of threads.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 1 << 30;

/// What to do with a file that cannot be read or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadImagePolicy {
    /// Leave the file out: it is reported once on stderr and listed by
    /// [`DataLoader::skipped`], and later batches are filled with the next good items.
    #[default]
    Skip,
    /// End the epoch with the decode error (fastai's behaviour: it raises).
    Error,
}

/// Settings of [`DataLoaders::from_name_re`] and [`DataLoader::new`].
///
/// `Default` follows the seed notebook: `bs=64`, `valid_pct=0.2`, `Resize(256, method='crop')`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    /// Items per batch (fastai's `bs`); the validation loader uses the same size.
    pub batch_size: usize,
    /// Fraction of items held out for validation.
    pub valid_pct: f64,
    /// Seed of the split, the per-epoch shuffles and the training crop positions.
    pub seed: u64,
    /// Side of the square images in a batch (fastai's `Resize(item_size, method='crop')`).
    pub item_size: usize,
    /// Decoding threads; 0 means one per available core.
    pub threads: usize,
    /// Finished batches that may wait in the channel while the consumer is busy.
    pub prefetch: usize,
    /// Keep decoded, resized images in memory after their first use (Oxford-IIIT Pet at 256:
    /// about 1.9 GB). Validation items are cached as their final centred crop (identical
    /// output); training items are cached with their shorter side resized to `item_size` and the
    /// random window is cut from that each epoch, which differs from the uncached path by at most
    /// a sub-pixel shift of the crop (see docs/fidelity.md). Training images four or more times as
    /// long as wide (or the reverse) are not cached, so memory stays under `3 * 4 * size^2` bytes
    /// an item.
    pub cache_decoded: bool,
    /// What to do with unreadable or undecodable files.
    pub bad_image: BadImagePolicy,
    /// Largest file and image decoded; larger ones are bad images (see [`DecodeLimits`]).
    pub decode: DecodeLimits,
    /// Bytes of decoded pixels (the decoder's buffer plus the RGB copy) the decoding threads may
    /// hold at once, shared by the pool: a thread waits before decoding an image that would go
    /// over it. An image larger than the whole budget is decoded alone. Default
    /// [`DEFAULT_MAX_IN_FLIGHT_BYTES`]; at least 1.
    pub max_in_flight_bytes: u64,
    /// Which part of every epoch this process loads in a data-parallel run (rank of world);
    /// default [`Shard::whole`], everything. Each rank builds its loaders with its own shard and
    /// the same everything else; see [`DataLoader::shard_plan`] for the rules.
    pub shard: Shard,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            valid_pct: 0.2,
            seed: 0,
            item_size: 256,
            threads: 0,
            prefetch: 2,
            cache_decoded: false,
            bad_image: BadImagePolicy::Skip,
            decode: DecodeLimits::default(),
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            shard: Shard::whole(),
        }
    }
}

impl LoaderConfig {
    /// Checks every setting against its bounds; the error names the setting, its value and the
    /// limit. `batch_size` in `1..=`[`MAX_BATCH_SIZE`], `item_size` in `1..=`[`MAX_ITEM_SIDE`],
    /// a batch at most [`MAX_BATCH_BYTES`], `threads` at most [`MAX_THREADS`], `prefetch` at most
    /// [`MAX_PREFETCH`], `max_in_flight_bytes` at least 1, and `decode` as
    /// [`DecodeLimits::validate`] says. `valid_pct` is checked by the split.
    pub fn validate(&self) -> Result<()> {
        let range = |name: &str, value: usize, min: usize, max: usize| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(Error::Config(format!(
                    "{name} is {value}, expected {min}..={max}"
                )))
            }
        };
        range("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)?;
        check_size("item_size", self.item_size)?;
        self.batch_bytes()?;
        range("threads", self.threads, 0, MAX_THREADS)?;
        range("prefetch", self.prefetch, 0, MAX_PREFETCH)?;
        if self.max_in_flight_bytes == 0 {
            return Err(Error::Config(
                "max_in_flight_bytes is 0, expected at least 1".to_owned(),
            ));
        }
        self.decode.validate()
    }

    /// Bytes of one item (`3 * item_size^2`), checked.
    fn item_bytes(&self) -> Result<usize> {
        self.item_size
            .checked_mul(self.item_size)
            .and_then(|n| n.checked_mul(3))
            .ok_or_else(|| {
                Error::Config(format!(
                    "item_size is {}, expected 1..={MAX_ITEM_SIDE} pixels (MAX_ITEM_SIDE)",
                    self.item_size
                ))
            })
    }

    /// Bytes of one batch (`batch_size * 3 * item_size^2`), checked against [`MAX_BATCH_BYTES`].
    fn batch_bytes(&self) -> Result<usize> {
        self.item_bytes()?
            .checked_mul(self.batch_size)
            .filter(|&n| n <= MAX_BATCH_BYTES)
            .ok_or_else(|| {
                Error::Config(format!(
                    "a batch of batch_size {} items of item_size {} takes more than \
                     {MAX_BATCH_BYTES} bytes (MAX_BATCH_BYTES); use a smaller batch or size",
                    self.batch_size, self.item_size
                ))
            })
    }
}

/// One batch: images NCHW RGB `u8` and their class indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[n, 3, item_size, item_size]`.
    pub images: Array4<u8>,
    /// Class index (into the [`Vocab`]) of each image.
    pub labels: Vec<usize>,
}

impl Batch {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch has no items.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images as `f32`, divided by 255 and normalised with ImageNet statistics
    /// ([`imagenet_normalize`]).
    pub fn imagenet_normalized(&self) -> Result<Array4<f32>> {
        imagenet_normalize(self.images.view())
    }
}

/// A file left out under [`BadImagePolicy::Skip`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedImage {
    /// The file.
    pub path: PathBuf,
    /// Why it was left out (the error message).
    pub reason: String,
}

/// Which role a loader plays; it decides shuffling, the crop position and `drop_last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoaderKind {
    /// Shuffled every epoch, random crop, last partial batch dropped.
    Train,
    /// Fixed order, centred crop, last partial batch kept.
    Valid,
}

/// A cached item; see [`LoaderConfig::cache_decoded`].
enum Cached {
    /// Final CHW pixels (validation: the centred crop never changes).
    Final(Box<[u8]>),
    /// The image with its shorter side at `item_size` (training).
    ShortSide(RgbImage),
    /// A training image at least [`MAX_CACHED_ASPECT`] times as long as wide (or the reverse): not
    /// kept but decoded and cropped exactly every time, so a thin strip cannot take gigabytes.
    TooLong,
}

/// Training images at least this elongated are not cached (see [`Cached::TooLong`]).
const MAX_CACHED_ASPECT: u32 = 4;

struct Inner {
    items: Vec<PathBuf>,
    labels: Vec<usize>,
    kind: LoaderKind,
    batch_size: usize,
    item_size: usize,
    /// `3 * item_size^2`, computed once with checked arithmetic.
    item_len: usize,
    seed: u64,
    shard: Shard,
    prefetch: usize,
    policy: BadImagePolicy,
    decode: DecodeLimits,
    pool: Arc<rayon::ThreadPool>,
    /// Shared by every loader on `pool`, like the threads.
    budget: Arc<MemoryBudget>,
    cache: Option<Vec<OnceLock<Cached>>>,
    bad: Vec<AtomicBool>,
    skipped: Mutex<Vec<SkippedImage>>,
}

impl Inner {
    /// Decodes `path` within the limits; the permit holds the image's share of the in-flight
    /// budget until the caller drops it, after resizing.
    fn decode(&self, path: &Path) -> Result<(RgbImage, Option<Permit<'_>>)> {
        decode_file(path, &self.decode, Some(&self.budget))
    }

    /// Decodes item `i` at `pos` into `out` (`[3, s, s]`), through the cache when enabled.
    fn load_into(&self, i: usize, pos: CropPos, out: ArrayViewMut3<'_, u8>) -> Result<()> {
        let path = &self.items[i];
        let s = self.item_size;
        let Some(cache) = &self.cache else {
            let (img, _permit) = self.decode(path)?;
            return resize_crop_into(&img, s, pos, out);
        };
        let slot = &cache[i];
        if slot.get().is_none() {
            let (img, _permit) = self.decode(path)?;
            let (w, h) = img.dimensions();
            let entry = match self.kind {
                LoaderKind::Valid => {
                    let mut px = Array3::zeros((3, s, s));
                    resize_crop_into(&img, s, CropPos::CENTER, px.view_mut())?;
                    Cached::Final(px.into_raw_vec_and_offset().0.into_boxed_slice())
                }
                LoaderKind::Train if w.max(h) / w.min(h) >= MAX_CACHED_ASPECT => {
                    let _ = slot.set(Cached::TooLong);
                    return resize_crop_into(&img, s, pos, out);
                }
                LoaderKind::Train => Cached::ShortSide(resize_short_side(&img, s)?),
            };
            // Another thread may have filled the slot meanwhile; both values are identical.
            let _ = slot.set(entry);
        }
        match slot.get().expect("filled above") {
            Cached::TooLong => {
                let (img, _permit) = self.decode(path)?;
                resize_crop_into(&img, s, pos, out)
            }
            Cached::Final(px) => {
                let mut out = out;
                out.as_slice_mut()
                    .expect("batch rows are contiguous")
                    .copy_from_slice(px);
                Ok(())
            }
            Cached::ShortSide(img) => crop_window_into(img, s, pos, out),
        }
    }

    fn mark_bad(&self, i: usize, err: &Error) {
        if !self.bad[i].swap(true, Ordering::Relaxed) {
            let reason = err.to_string();
            eprintln!("mix-data: skipping {}: {reason}", self.items[i].display());
            self.skipped
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(SkippedImage {
                    path: self.items[i].clone(),
                    reason,
                });
        }
    }

    fn good_len(&self) -> usize {
        self.bad
            .iter()
            .filter(|b| !b.load(Ordering::Relaxed))
            .count()
    }

    /// The epoch's plan: item indices in order, each with its crop position.
    fn plan(&self, epoch: u64) -> Vec<(usize, CropPos)> {
        match self.kind {
            LoaderKind::Valid => (0..self.items.len())
                .map(|i| (i, CropPos::CENTER))
                .collect(),
            LoaderKind::Train => {
                let mut rng = stream_rng(self.seed, Purpose::LoaderEpoch, epoch);
                let mut order: Vec<usize> = (0..self.items.len()).collect();
                order.shuffle(&mut rng);
                order
                    .into_iter()
                    .map(|i| (i, CropPos::random(&mut rng)))
                    .collect()
            }
        }
    }

    /// This rank's part of the epoch's plan (see [`DataLoader::shard_plan`]).
    fn shard_plan(&self, epoch: u64) -> Vec<(usize, CropPos)> {
        let plan = self.plan(epoch);
        match self.kind {
            _ if self.shard.is_whole() => plan,
            LoaderKind::Train => self.shard.select_padded(&plan),
            LoaderKind::Valid => self.shard.select(&plan),
        }
    }

    /// The fixed number of batches of a sharded training epoch, `None` where the epoch simply
    /// ends with its plan (one process, or validation).
    fn fixed_batches(&self) -> Option<usize> {
        (self.kind == LoaderKind::Train && !self.shard.is_whole())
            .then(|| self.shard.padded_len(self.items.len()) / self.batch_size)
    }

    /// Producer loop: decodes the plan a batch at a time and sends full batches.
    fn produce(
        &self,
        plan: Vec<(usize, CropPos)>,
        fixed: Option<usize>,
        tx: SyncSender<Result<Batch>>,
    ) {
        let (bs, len) = (self.batch_size, self.item_len);
        let s = self.item_size;
        let mut feed = match fixed {
            None => Feed::Once(plan.into_iter().peekable()),
            Some(batches) => Feed::Cycle {
                plan,
                next: 0,
                batches,
            },
        };
        // Good items decoded but not yet sent: CHW pixels back to back, and their labels.
        let mut pixels: Vec<u8> = Vec::new();
        let mut labels: Vec<usize> = Vec::new();
        loop {
            let window = match feed.window(bs - labels.len(), &self.bad) {
                Ok(Some(w)) => w,
                Ok(None) => break,
                Err(()) => {
                    let _ = tx.send(Err(Error::NoGoodItems {
                        rank: self.shard.rank(),
                        world: self.shard.world(),
                        items: feed.plan_len(),
                    }));
                    return;
                }
            };
            // Decoded straight into a fresh batch buffer: no copy when every item is good. The
            // size is at most MAX_BATCH_BYTES (checked by the config); checked again here so a
            // broken invariant is an error, not an abort.
            let Some(buf_len) = window.len().checked_mul(len) else {
                let _ = tx.send(Err(Error::Config(format!(
                    "a batch of {} items of {len} bytes overflows",
                    window.len()
                ))));
                return;
            };
            let mut buf = vec![0u8; buf_len];
            let results: Vec<Result<()>> = self.pool.install(|| {
                buf.par_chunks_mut(len)
                    .zip(window.par_iter())
                    .map(|(chunk, &(i, pos))| {
                        let view = ArrayViewMut3::from_shape((3, s, s), chunk)
                            .expect("chunk has 3*s*s bytes");
                        self.load_into(i, pos, view)
                    })
                    .collect()
            });
            if labels.is_empty() && results.iter().all(Result::is_ok) {
                pixels = buf;
                labels = window.iter().map(|&(i, _)| self.labels[i]).collect();
            } else {
                for ((res, &(i, _)), chunk) in results.into_iter().zip(&window).zip(buf.chunks(len))
                {
                    match res {
                        Ok(()) => {
                            pixels.extend_from_slice(chunk);
                            labels.push(self.labels[i]);
                        }
                        Err(e) => match self.policy {
                            BadImagePolicy::Skip => self.mark_bad(i, &e),
                            BadImagePolicy::Error => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        },
                    }
                }
            }
            if labels.len() == bs {
                let batch = make_batch(std::mem::take(&mut pixels), std::mem::take(&mut labels), s);
                if tx.send(Ok(batch)).is_err() {
                    return; // The iterator was dropped.
                }
                feed.batch_sent();
            }
        }
        if self.kind == LoaderKind::Valid && !labels.is_empty() {
            let _ = tx.send(Ok(make_batch(pixels, labels, s)));
        }
    }
}

/// Where the producer takes the items of its next window from.
enum Feed {
    /// The plan once, in order: the epoch ends with the plan (one process, or validation).
    Once(std::iter::Peekable<std::vec::IntoIter<(usize, CropPos)>>),
    /// A sharded training epoch: exactly `batches` more batches, taking the plan's good items
    /// in order and starting over from its beginning when they run out, so a skipped bad image
    /// never changes the number of steps a rank runs.
    Cycle {
        plan: Vec<(usize, CropPos)>,
        /// Position in `plan` of the next entry to look at.
        next: usize,
        /// Batches still to send.
        batches: usize,
    },
}

impl Feed {
    /// Up to `want` entries not known to be bad, in feed order; `Ok(None)` when the epoch is
    /// over, `Err(())` when a cycling feed finds every entry of its plan bad.
    ///
    /// Known-bad items are dropped before decoding; skipping them later gives the same sequence
    /// of good items, so batches do not depend on what earlier epochs found.
    fn window(
        &mut self,
        want: usize,
        bad: &[AtomicBool],
    ) -> std::result::Result<Option<Vec<(usize, CropPos)>>, ()> {
        let is_bad = |i: usize| bad[i].load(Ordering::Relaxed);
        match self {
            Feed::Once(plan) => Ok(plan.peek().is_some().then(|| {
                plan.by_ref()
                    .filter(|&(i, _)| !is_bad(i))
                    .take(want)
                    .collect()
            })),
            Feed::Cycle {
                plan,
                next,
                batches,
            } => {
                if *batches == 0 {
                    return Ok(None);
                }
                let mut window = Vec::with_capacity(want);
                // Entries looked at in a row that were all known bad: a whole lap of them means
                // no good item is left, and looking further would never end.
                let mut bad_in_a_row = 0;
                while window.len() < want {
                    let Some(&(i, pos)) = plan.get(*next) else {
                        return Err(());
                    };
                    *next = (*next + 1) % plan.len();
                    if is_bad(i) {
                        bad_in_a_row += 1;
                        if bad_in_a_row >= plan.len() {
                            return Err(());
                        }
                    } else {
                        bad_in_a_row = 0;
                        window.push((i, pos));
                    }
                }
                Ok(Some(window))
            }
        }
    }

    /// Counts a full batch as sent.
    fn batch_sent(&mut self) {
        if let Feed::Cycle { batches, .. } = self {
            *batches = batches.saturating_sub(1);
        }
    }

    /// Entries in the plan of a cycling feed (for the error message).
    fn plan_len(&self) -> usize {
        match self {
            Feed::Once(plan) => plan.len(),
            Feed::Cycle { plan, .. } => plan.len(),
        }
    }
}

fn make_batch(pixels: Vec<u8>, labels: Vec<usize>, s: usize) -> Batch {
    let images = Array4::from_shape_vec((labels.len(), 3, s, s), pixels)
        .expect("pending holds exactly one image per label");
    Batch { images, labels }
}

/// Batches of one split, decoded in parallel with prefetch; cheap to clone (shared state).
///
/// Training (`LoaderKind::Train`) follows fastai's training `DataLoader`: shuffled every epoch
/// (here from `(seed, epoch)`), random crop positions, last partial batch dropped. Validation
/// keeps the item order, crops centred and keeps the last partial batch.
#[derive(Clone)]
pub struct DataLoader {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DataLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataLoader")
            .field("kind", &self.inner.kind)
            .field("items", &self.inner.items.len())
            .field("batch_size", &self.inner.batch_size)
            .field("item_size", &self.inner.item_size)
            .finish_non_exhaustive()
    }
}

/// The budget of decoded bytes shared by the threads of one pool.
fn build_budget(cfg: &LoaderConfig) -> Arc<MemoryBudget> {
    Arc::new(MemoryBudget::new(cfg.max_in_flight_bytes))
}

fn build_pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("mix-data-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| Error::Config(format!("cannot start {threads} decoding threads: {e}")))
}

impl DataLoader {
    /// A loader over `items` with class indices `labels` (same length), in the given order.
    ///
    /// Errors: [`Error::Config`] when a setting is out of bounds ([`LoaderConfig::validate`]) or
    /// the lengths differ.
    pub fn new(
        items: Vec<PathBuf>,
        labels: Vec<usize>,
        kind: LoaderKind,
        cfg: &LoaderConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        let pool = build_pool(cfg.threads)?;
        Self::with_pool(items, labels, kind, cfg, pool, build_budget(cfg))
    }

    fn with_pool(
        items: Vec<PathBuf>,
        labels: Vec<usize>,
        kind: LoaderKind,
        cfg: &LoaderConfig,
        pool: Arc<rayon::ThreadPool>,
        budget: Arc<MemoryBudget>,
    ) -> Result<Self> {
        if items.len() != labels.len() {
            return Err(Error::Config(format!(
                "expected one label per item, found {} items and {} labels",
                items.len(),
                labels.len()
            )));
        }
        cfg.validate()?;
        let cache = cfg
            .cache_decoded
            .then(|| (0..items.len()).map(|_| OnceLock::new()).collect());
        let bad = (0..items.len()).map(|_| AtomicBool::new(false)).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                items,
                labels,
                kind,
                batch_size: cfg.batch_size,
                item_size: cfg.item_size,
                item_len: cfg.item_bytes()?,
                seed: cfg.seed,
                shard: cfg.shard,
                prefetch: cfg.prefetch,
                policy: cfg.bad_image,
                decode: cfg.decode,
                pool,
                budget,
                cache,
                bad,
                skipped: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Batches per epoch of this loader's [`shard`](Self::shard).
    ///
    /// One process ([`Shard::whole`]): `n / bs` for training (drop last), `ceil(n / bs)` for
    /// validation, where `n` is [`len_items`](Self::len_items); files found bad during an epoch
    /// lower the count from then on.
    ///
    /// Sharded training (`world > 1`): `ceil(N / world) / bs`, where `N` counts every item, bad
    /// ones included, so the count is the same on every rank and never changes (bad items are
    /// replaced, see [`shard_plan`](Self::shard_plan)). Sharded validation: `ceil(m / bs)`, where
    /// `m` is the number of this rank's items not (yet) found bad; it may differ between ranks.
    pub fn num_batches(&self) -> usize {
        let inner = &self.inner;
        let bs = inner.batch_size;
        if let Some(batches) = inner.fixed_batches() {
            return batches;
        }
        match inner.kind {
            LoaderKind::Train => self.len_items() / bs,
            LoaderKind::Valid => {
                let shard = inner.shard;
                let good = (shard.rank()..inner.items.len())
                    .step_by(shard.world())
                    .filter(|&i| !inner.bad[i].load(Ordering::Relaxed))
                    .count();
                good.div_ceil(bs)
            }
        }
    }

    /// Which part of each epoch this loader loads ([`LoaderConfig::shard`]).
    pub fn shard(&self) -> Shard {
        self.inner.shard
    }

    /// Items per batch.
    pub fn batch_size(&self) -> usize {
        self.inner.batch_size
    }

    /// Items not (yet) found bad, of the whole loader (every shard).
    pub fn len_items(&self) -> usize {
        self.inner.good_len()
    }

    /// Side of the square images.
    pub fn item_size(&self) -> usize {
        self.inner.item_size
    }

    /// Training or validation.
    pub fn kind(&self) -> LoaderKind {
        self.inner.kind
    }

    /// All items, bad ones included, in the loader's base order.
    pub fn items(&self) -> &[PathBuf] {
        &self.inner.items
    }

    /// Class index of each of [`items`](Self::items).
    pub fn labels(&self) -> &[usize] {
        &self.inner.labels
    }

    /// Files left out so far under [`BadImagePolicy::Skip`], in the order they were found.
    pub fn skipped(&self) -> Vec<SkippedImage> {
        self.inner
            .skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Item indices (into [`items`](Self::items)) and crop positions of `epoch`, in batch order,
    /// before bad files are left out and before sharding: the whole epoch, the same on every
    /// rank. The same `(seed, epoch)` always gives the same plan.
    pub fn plan(&self, epoch: u64) -> Vec<(usize, CropPos)> {
        self.inner.plan(epoch)
    }

    /// This loader's [`shard`](Self::shard) of [`plan`](Self::plan)`(epoch)`, in batch order,
    /// before bad files are left out: what [`epoch`](Self::epoch) decodes.
    ///
    /// [`Shard::whole`]: the plan itself. Training: PyTorch's
    /// `DistributedSampler(drop_last=False)` applied to the plan ([`Shard::select_padded`]): the
    /// plan padded to `ceil(n / world) * world` entries by repeating it from its start, then
    /// entries `rank, rank + world, ...`; batch `k` of all ranks together holds entries
    /// `k * world * bs .. (k + 1) * world * bs` of the padded plan. Validation: entries
    /// `rank, rank + world, ...` without padding ([`Shard::select`]), so every item is counted
    /// once across ranks.
    ///
    /// Bad images: one process and validation leave them out (the epoch gets shorter, as
    /// [`BadImagePolicy::Skip`] says). Sharded training keeps [`num_batches`](Self::num_batches)
    /// fixed so ranks stay in step: the epoch takes the good items of the shard plan in order
    /// and, when they run out, starts over from the shard plan's beginning; if every item of
    /// the shard plan is bad the epoch ends with [`Error::NoGoodItems`].
    pub fn shard_plan(&self, epoch: u64) -> Vec<(usize, CropPos)> {
        self.inner.shard_plan(epoch)
    }

    /// Starts decoding this loader's [`shard_plan`](Self::shard_plan)`(epoch)` in the
    /// background and returns its batches in order.
    ///
    /// The iterator owns what it needs (`'static`); dropping it stops the work after the batch
    /// being decoded. Batches are identical for any thread count and prefetch depth.
    pub fn epoch(&self, epoch: u64) -> BatchIter {
        let plan = self.inner.shard_plan(epoch);
        let fixed = self.inner.fixed_batches();
        let (tx, rx) = sync_channel(self.inner.prefetch);
        let inner = Arc::clone(&self.inner);
        let handle = std::thread::Builder::new()
            .name("mix-data-producer".to_owned())
            .spawn(move || inner.produce(plan, fixed, tx));
        match handle {
            Ok(h) => BatchIter {
                rx: Some(rx),
                handle: Some(h),
                spawn_error: None,
            },
            Err(e) => BatchIter {
                rx: None,
                handle: None,
                spawn_error: Some(Error::Config(format!(
                    "cannot start the loader thread: {e}"
                ))),
            },
        }
    }
}

/// The batches of one epoch, produced in the background; see [`DataLoader::epoch`].
pub struct BatchIter {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
    spawn_error: Option<Error>,
}

impl Iterator for BatchIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if let Some(e) = self.spawn_error.take() {
            return Some(Err(e));
        }
        if let Ok(b) = self.rx.as_ref()?.recv() {
            return Some(b);
        }
        // The producer is gone: either it finished, or it panicked, which must not pass for a
        // short epoch.
        self.rx = None;
        match self.handle.take().map(JoinHandle::join) {
            Some(Err(_)) => Some(Err(Error::WorkerPanicked)),
            _ => None,
        }
    }
}

impl Drop for BatchIter {
    fn drop(&mut self) {
        // Closing the channel makes the producer stop at its next send; wait for it so no
        // decoding outlives the iterator.
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The training and validation loaders and the vocab: fastai's `ImageDataLoaders`.
#[derive(Debug, Clone)]
pub struct DataLoaders {
    /// Training batches.
    pub train: DataLoader,
    /// Validation batches.
    pub valid: DataLoader,
    /// Class names; batch labels index into it.
    pub vocab: Vocab,
}

impl DataLoaders {
    /// fastai's `ImageDataLoaders.from_name_re(path, files, pattern, valid_pct, seed, bs,
    /// item_tfms=Resize(item_size, method='crop'))`.
    ///
    /// Labels every file with [`RegexLabeller`] (an error names the first file that does not
    /// match), splits with [`random_split`] seeded by `cfg.seed`, and builds the vocab from the
    /// training labels.
    pub fn from_name_re(files: &[PathBuf], pattern: &str, cfg: &LoaderConfig) -> Result<Self> {
        // Settings first: a bad one should not wait for every file to be labelled.
        cfg.validate()?;
        let labeller = RegexLabeller::new(pattern)?;
        let labels = files
            .iter()
            .map(|f| labeller.label(f))
            .collect::<Result<Vec<_>>>()?;
        Self::from_labels(files, &labels, cfg)
    }

    /// Like [`from_name_re`](Self::from_name_re) with labels given (`labels[i]` is the label of
    /// `files[i]`), fastai's `from_lists` without the folder argument.
    pub fn from_labels(files: &[PathBuf], labels: &[String], cfg: &LoaderConfig) -> Result<Self> {
        cfg.validate()?;
        if files.len() != labels.len() {
            return Err(Error::Config(format!(
                "expected one label per file, found {} files and {} labels",
                files.len(),
                labels.len()
            )));
        }
        let split = random_split(
            files.len(),
            cfg.valid_pct,
            &mut stream_rng(cfg.seed, Purpose::Split, 0),
        )?;
        let vocab = Vocab::new(split.train.iter().map(|&i| &labels[i]));
        let subset = |idx: &[usize]| -> Result<(Vec<PathBuf>, Vec<usize>)> {
            idx.iter()
                .map(|&i| {
                    let class = vocab
                        .index_of(&labels[i])
                        .ok_or_else(|| Error::UnknownLabel {
                            label: labels[i].clone(),
                            path: files[i].clone(),
                        })?;
                    Ok((files[i].clone(), class))
                })
                .collect::<Result<Vec<_>>>()
                .map(|v| v.into_iter().unzip())
        };
        let (train_items, train_labels) = subset(&split.train)?;
        let (valid_items, valid_labels) = subset(&split.valid)?;
        let pool = build_pool(cfg.threads)?;
        let budget = build_budget(cfg);
        Ok(Self {
            train: DataLoader::with_pool(
                train_items,
                train_labels,
                LoaderKind::Train,
                cfg,
                Arc::clone(&pool),
                Arc::clone(&budget),
            )?,
            valid: DataLoader::with_pool(
                valid_items,
                valid_labels,
                LoaderKind::Valid,
                cfg,
                pool,
                budget,
            )?,
            vocab,
        })
    }
}

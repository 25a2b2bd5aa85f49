//! Batches of decoded, cropped images: fastai's `DataLoader`/`DataLoaders` for this pipeline.
//!
//! Each call to [`DataLoader::epoch`] plans the whole epoch up front on the calling thread (item
//! order and crop positions from `(seed, epoch)`), then a producer thread decodes it window by
//! window on a rayon pool and sends finished batches through a bounded channel. Planning before
//! decoding is what makes results identical for any thread count.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use image::RgbImage;
use mix_core::stream::{stream_rng, Purpose};
use ndarray::{Array3, Array4, ArrayViewMut3};
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::resize::crop_window_into;
use crate::{
    decode_rgb, imagenet_normalize, random_split, resize_crop_into, resize_short_side, CropPos,
    Error, RegexLabeller, Result, Vocab,
};

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
        }
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
    seed: u64,
    prefetch: usize,
    policy: BadImagePolicy,
    pool: Arc<rayon::ThreadPool>,
    cache: Option<Vec<OnceLock<Cached>>>,
    bad: Vec<AtomicBool>,
    skipped: Mutex<Vec<SkippedImage>>,
}

impl Inner {
    fn item_len(&self) -> usize {
        3 * self.item_size * self.item_size
    }

    /// Decodes item `i` at `pos` into `out` (`[3, s, s]`), through the cache when enabled.
    fn load_into(&self, i: usize, pos: CropPos, out: ArrayViewMut3<'_, u8>) -> Result<()> {
        let path = &self.items[i];
        let s = self.item_size;
        let Some(cache) = &self.cache else {
            return resize_crop_into(&decode_rgb(path)?, s, pos, out);
        };
        let slot = &cache[i];
        if slot.get().is_none() {
            let img = decode_rgb(path)?;
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
            Cached::TooLong => resize_crop_into(&decode_rgb(path)?, s, pos, out),
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

    /// Producer loop: decodes the plan a batch at a time and sends full batches.
    fn produce(&self, plan: Vec<(usize, CropPos)>, tx: SyncSender<Result<Batch>>) {
        let (bs, len) = (self.batch_size, self.item_len());
        let s = self.item_size;
        let mut plan = plan.into_iter().peekable();
        // Good items decoded but not yet sent: CHW pixels back to back, and their labels.
        let mut pixels: Vec<u8> = Vec::new();
        let mut labels: Vec<usize> = Vec::new();
        while plan.peek().is_some() {
            // Known-bad items are dropped before decoding; skipping them later gives the same
            // sequence of good items, so batches do not depend on what earlier epochs found.
            let window: Vec<(usize, CropPos)> = plan
                .by_ref()
                .filter(|&(i, _)| !self.bad[i].load(Ordering::Relaxed))
                .take(bs - labels.len())
                .collect();
            // Decoded straight into a fresh batch buffer: no copy when every item is good.
            let mut buf = vec![0u8; window.len() * len];
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
            }
        }
        if self.kind == LoaderKind::Valid && !labels.is_empty() {
            let _ = tx.send(Ok(make_batch(pixels, labels, s)));
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
    pub fn new(
        items: Vec<PathBuf>,
        labels: Vec<usize>,
        kind: LoaderKind,
        cfg: &LoaderConfig,
    ) -> Result<Self> {
        Self::with_pool(items, labels, kind, cfg, build_pool(cfg.threads)?)
    }

    fn with_pool(
        items: Vec<PathBuf>,
        labels: Vec<usize>,
        kind: LoaderKind,
        cfg: &LoaderConfig,
        pool: Arc<rayon::ThreadPool>,
    ) -> Result<Self> {
        if items.len() != labels.len() {
            return Err(Error::Config(format!(
                "expected one label per item, found {} items and {} labels",
                items.len(),
                labels.len()
            )));
        }
        if cfg.batch_size == 0 {
            return Err(Error::Config(
                "batch_size must be at least 1, found 0".to_owned(),
            ));
        }
        if cfg.item_size == 0 || u32::try_from(cfg.item_size).is_err() {
            return Err(Error::Config(format!(
                "item_size must be in 1..=u32::MAX, found {}",
                cfg.item_size
            )));
        }
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
                seed: cfg.seed,
                prefetch: cfg.prefetch,
                policy: cfg.bad_image,
                pool,
                cache,
                bad,
                skipped: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Batches per epoch: `n / bs` for training (drop last), `ceil(n / bs)` for validation,
    /// where `n` is [`len_items`](Self::len_items). Files found bad during an epoch lower the
    /// count from then on.
    pub fn num_batches(&self) -> usize {
        let (n, bs) = (self.len_items(), self.inner.batch_size);
        match self.inner.kind {
            LoaderKind::Train => n / bs,
            LoaderKind::Valid => n.div_ceil(bs),
        }
    }

    /// Items per batch.
    pub fn batch_size(&self) -> usize {
        self.inner.batch_size
    }

    /// Items not (yet) found bad.
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
    /// before bad files are left out. The same `(seed, epoch)` always gives the same plan.
    pub fn plan(&self, epoch: u64) -> Vec<(usize, CropPos)> {
        self.inner.plan(epoch)
    }

    /// Starts decoding `epoch` in the background and returns its batches in order.
    ///
    /// The iterator owns what it needs (`'static`); dropping it stops the work after the batch
    /// being decoded. Batches are identical for any thread count and prefetch depth.
    pub fn epoch(&self, epoch: u64) -> BatchIter {
        let plan = self.inner.plan(epoch);
        let (tx, rx) = sync_channel(self.inner.prefetch);
        let inner = Arc::clone(&self.inner);
        let handle = std::thread::Builder::new()
            .name("mix-data-producer".to_owned())
            .spawn(move || inner.produce(plan, tx));
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
        Ok(Self {
            train: DataLoader::with_pool(
                train_items,
                train_labels,
                LoaderKind::Train,
                cfg,
                Arc::clone(&pool),
            )?,
            valid: DataLoader::with_pool(valid_items, valid_labels, LoaderKind::Valid, cfg, pool)?,
            vocab,
        })
    }
}

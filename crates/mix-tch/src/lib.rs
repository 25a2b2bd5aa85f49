//! fastai's MixUp/CutMix training recipe on tch 0.24 (libtorch 2.11), on CPU and CUDA: mix-core's params
//! applied to tensors on the device, `aug_transforms`, the ResNet18 `vision_learner` with fastai's head,
//! `fit_one_cycle` with fastai's Adam, the recorder, checkpoints and resuming.
//!
//! The seed notebook, in Rust:
//!
//! ```no_run
//! # fn main() -> mix_tch::Result<()> {
//! use mix_tch::{InMemory, Learner, LearnerConfig, MixCallback, OneCycle};
//! # let (images, labels) = (ndarray::Array4::<u8>::zeros((8, 3, 256, 256)), vec![0usize; 8]);
//! let train = InMemory::new(images.clone(), labels.clone(), 4, Some(0), true)?;
//! let valid = InMemory::new(images, labels, 4, None, false)?;
//! let mut learn = Learner::new(Box::new(train), Box::new(valid), LearnerConfig::new(37))?;
//! let mixup = mix_core::MixUp::new(1.0).map_err(mix_tch::Error::from)?;
//! learn.fit_one_cycle(1, OneCycle::default(), vec![Box::new(MixCallback::new(Box::new(mixup)))])?;
//! # Ok(()) }
//! ```

pub mod augment;
pub mod callback;
pub mod checkpoint;
pub mod collective;
pub mod data;
pub mod device;
mod error;
pub mod events;
pub mod ffi;
pub mod layout;
pub mod learner;
pub mod loss;
pub mod mix;
pub mod model;
pub mod optim;
pub mod predict;
pub mod recorder;
pub mod schedule;

pub use augment::{aug_transforms, AugDraw, AugTransforms};
pub use callback::{Callback, Cancel, Event};
pub use checkpoint::{Checkpointer, Monitor, SaveBest};
pub use collective::{sync_batch_norm, Collective};
pub use data::{BatchSource, InMemory, Resident};
pub use device::{DeviceChoice, Precision};
pub use error::{Error, Result};
pub use events::EventLog;
pub use layout::{Layout, LayoutCheck, MemoryFormat};
pub use learner::{FitSummary, Learn, Learner, LearnerConfig, LrFind, LrFindResult};
pub use loss::{BceWithLogitsFlat, CrossEntropyFlat, LossFunc, SoftTargetCrossEntropy};
pub use mix::{MixCallback, MixOptions, MixTargetsMode, MixedLoss};
pub use model::{Model, TinyNet, VisionModel};
pub use optim::{Adam, AdamConfig, AdamSnapshot, LossScaler};
pub use predict::{predict_probs, top_k};
pub use recorder::{CsvLogger, History, ProgressTable, TimingsFile};
pub use schedule::{CombinedCos, FineTune, LrSpread, OneCycle};
pub use tch;

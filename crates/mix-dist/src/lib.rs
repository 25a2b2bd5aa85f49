//! Data-parallel training on libtorch's distributed engine (c10d), the way `torchrun` and PyTorch's
//! `DistributedDataParallel` do it: a TCPStore rendezvous from torchrun's environment, a Gloo (CPU) or
//! NCCL (CUDA) process group, and DDP's Reducer, which all-reduces the gradients in buckets while the
//! backward pass still runs.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use mix_dist::{Backend, Ddp, DdpOptions, JoinOptions, ProcessGroup};
//! let group = Arc::new(ProcessGroup::join(&JoinOptions {
//!     rank: 0,
//!     world: 2,
//!     master_addr: "127.0.0.1".into(),
//!     master_port: 29500,
//!     timeout: std::time::Duration::from_secs(60),
//!     backend: Backend::Gloo,
//!     generation: 0,
//! })?);
//! let mut cfg = mix_tch::LearnerConfig::new(37);
//! cfg.collective = Some(group.clone() as Arc<dyn mix_tch::Collective>);
//! // ... build the learner with `cfg` on this rank's shard, then fit with
//! let ddp = Ddp::new(group.clone(), DdpOptions::default());
//! # let _ = (cfg, ddp);
//! # Ok(()) }
//! ```

mod ddp;
mod error;
mod ffi;
mod group;

pub use ddp::{Ddp, DdpOptions};
pub use error::{Error, Result};
pub use group::{Backend, JoinOptions, ProcessGroup, HEARTBEAT_INTERVAL};

/// Whether this build of mix-dist has the NCCL backend (the CUDA build of libtorch and the NCCL headers
/// were found when it was compiled).
pub const HAS_NCCL: bool = cfg!(mix_dist_nccl);

//! PyTorch's `DistributedDataParallel` as a learner callback: the model's parameters and buffers are
//! broadcast from rank 0 when a fit starts, the buffers again before every training forward pass
//! (`broadcast_buffers=True`), and the gradients are averaged over the ranks by c10d's Reducer, which
//! all-reduces them in buckets as the backward pass produces them.

use crate::ffi::Reducer;
use crate::{ProcessGroup, Result};
use mix_tch::{Callback, Event, Learn};
use std::collections::HashSet;
use std::sync::Arc;
use tch::Tensor;

/// DDP's settings, with PyTorch's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdpOptions {
    /// Largest gradient bucket in MiB (`bucket_cap_mb`, 25); the first bucket is 1 MiB, as in PyTorch.
    pub bucket_cap_mb: f64,
    /// Copy rank 0's buffers (BatchNorm running statistics) to every rank before each training forward
    /// pass (`broadcast_buffers`, true). Batch statistics stay local to each rank either way, as DDP's
    /// default BatchNorm.
    pub broadcast_buffers: bool,
}

impl Default for DdpOptions {
    fn default() -> Self {
        DdpOptions {
            bucket_cap_mb: 25.0,
            broadcast_buffers: true,
        }
    }
}

/// PyTorch's first bucket: small, so that the last layers' gradients go out early.
const FIRST_BUCKET_BYTES: i64 = 1024 * 1024;

/// The DDP callback. Add it to every rank's fit; the learner's `collective` should be the same group,
/// so that losses and metrics are averaged too.
pub struct Ddp {
    group: Arc<ProcessGroup>,
    opts: DdpOptions,
    reducer: Option<Reducer>,
    /// The model's buffers (sorted by name, sharing storage with the model's), listed once per fit
    /// rather than before every batch.
    buffers: Vec<Tensor>,
}

impl std::fmt::Debug for Ddp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ddp")
            .field("group", &self.group)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Ddp {
    /// DDP over `group`.
    pub fn new(group: Arc<ProcessGroup>, opts: DdpOptions) -> Self {
        Ddp {
            group,
            opts,
            reducer: None,
            buffers: Vec::new(),
        }
    }

    /// Every variable (parameters, then buffers), sorted by name so that all ranks list them alike.
    fn variables(learn: &Learn) -> (Vec<Tensor>, Vec<Tensor>) {
        let params: HashSet<String> = learn
            .model
            .params()
            .iter()
            .map(|p| p.name.clone())
            .collect();
        let mut vars: Vec<(String, Tensor)> = learn.model.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let (mut ps, mut bs) = (Vec::new(), Vec::new());
        for (name, t) in vars {
            if params.contains(&name) {
                ps.push(t);
            } else {
                bs.push(t);
            }
        }
        (ps, bs)
    }

    fn broadcast(&self, tensors: &[Tensor]) -> Result<()> {
        if tensors.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Tensor> = tensors.iter().collect();
        // The collective writes into the leaves' storage; no autograd history may record it.
        tch::no_grad(|| self.group.broadcast(&refs, 0))
    }

    fn start(&mut self, learn: &Learn) -> Result<()> {
        let (params, buffers) = Self::variables(learn);
        self.broadcast(&params)?;
        self.broadcast(&buffers)?;
        self.buffers = buffers;
        // The parameters that train in this fit (fine_tune's frozen phase leaves the body out), in the
        // model's order as DDP takes `module.parameters()`.
        let trained: Vec<&Tensor> = learn
            .model
            .params()
            .iter()
            .map(|p| &p.tensor)
            .filter(|t| t.requires_grad())
            .collect();
        self.reducer = None;
        if !trained.is_empty() {
            let cap = (self.opts.bucket_cap_mb * 1024.0 * 1024.0) as i64;
            self.reducer = Some(
                Reducer::new(self.group.group(), &trained, cap, FIRST_BUCKET_BYTES)
                    .map_err(|e| self.group.failed("setting up DDP's reducer", &e))?,
            );
        }
        Ok(())
    }

    fn sync_buffers(&self) -> Result<()> {
        self.broadcast(&self.buffers)
    }
}

impl Callback for Ddp {
    fn name(&self) -> &str {
        "Ddp"
    }

    // Before the mixing callbacks and the recorders: the model must be in sync before anything uses it.
    fn order(&self) -> i32 {
        -50
    }

    fn run_valid(&self) -> bool {
        false
    }

    fn on(&mut self, event: Event, learn: &mut Learn) -> mix_tch::Result<()> {
        match event {
            Event::BeforeFit => self.start(learn)?,
            Event::BeforeBatch => {
                if self.opts.broadcast_buffers {
                    self.sync_buffers()?;
                }
                if let Some(r) = &mut self.reducer {
                    r.before_forward()
                        .map_err(|e| self.group.failed("DDP's forward", &e))?;
                }
            }
            Event::AfterLoss => {
                if let Some(r) = &mut self.reducer {
                    r.before_backward()
                        .map_err(|e| self.group.failed("DDP's backward", &e))?;
                }
            }
            // Every rank validates rank 0's model (the one it saves), so the reduced metrics are that
            // model's.
            Event::BeforeValidate => self.sync_buffers()?,
            Event::AfterFit | Event::AfterCancelFit => {
                self.reducer = None;
                self.buffers.clear();
            }
            _ => {}
        }
        Ok(())
    }
}

//! One rank's membership of a data-parallel job: the rendezvous (c10d's TCPStore, served by rank 0,
//! with a timeout that names the ranks that never came), the process group and its collectives, and the
//! heartbeats that let a surviving rank say which rank died or hangs when a collective fails.

use crate::ffi::{Group, Store};
use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tch::Tensor;

/// How often each rank bumps its heartbeat counter in the store. A rank whose counter has not moved for
/// several intervals when a collective fails is named as the one that stopped.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);

/// How long a failed rank watches the others' heartbeats before naming the ones that stopped.
const WATCH: Duration = Duration::from_millis(1500);

/// The collective engine of the process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo: CPU tensors (PyTorch's default for CPU training).
    Gloo,
    /// NCCL: CUDA tensors, one GPU per rank.
    Nccl,
}

impl Backend {
    /// Its name in torch.distributed.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }
}

/// Where and how to meet the other ranks (torchrun's `RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOptions {
    /// This process's rank, `0..world`.
    pub rank: usize,
    /// Number of ranks.
    pub world: usize,
    /// Host of rank 0, which serves the store.
    pub master_addr: String,
    /// Port of the store.
    pub master_port: u16,
    /// How long to wait for the others at the rendezvous, and for any collective.
    pub timeout: Duration,
    /// Gloo or NCCL.
    pub backend: Backend,
    /// Which attempt of the job this is: torchrun's `TORCHELASTIC_RESTART_COUNT` (0 without torchrun, or
    /// on its first attempt). Each attempt's keys live apart in the store, which torchrun's agent keeps
    /// across restarts, so a restarted job never meets the ranks of the one before.
    pub generation: u64,
}

/// This process's rank in a running job. Collectives are issued from one thread, in the same order on
/// every rank.
pub struct ProcessGroup {
    rank: usize,
    world: usize,
    addr: String,
    port: u16,
    timeout: Duration,
    backend: Backend,
    // Declared before the store: c10d's group is dropped first.
    group: Group,
    store: Store,
    beating: Arc<AtomicBool>,
    heart: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("master", &format!("{}:{}", self.addr, self.port))
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

fn beat_key(rank: usize) -> String {
    format!("mix/beat/{rank}")
}

fn error_key(rank: usize) -> String {
    format!("mix/error/{rank}")
}

fn is_loopback(addr: &str) -> bool {
    addr == "localhost"
        || addr
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// "rank 2" or "ranks 1, 3".
fn name_ranks(ranks: &[usize]) -> String {
    let list: Vec<String> = ranks.iter().map(usize::to_string).collect();
    match ranks.len() {
        1 => format!("rank {}", list[0]),
        _ => format!("ranks {}", list.join(", ")),
    }
}

impl ProcessGroup {
    /// Joins the job: connects to the store (rank 0 serves it), registers this rank, waits until all
    /// `world` ranks have, then builds the process group. Within `opts.timeout`, or an error that names
    /// the ranks that never joined.
    pub fn join(opts: &JoinOptions) -> Result<Self> {
        let JoinOptions {
            rank,
            world,
            ref master_addr,
            master_port,
            timeout,
            backend,
            generation,
        } = *opts;
        let prefix = format!("mix/{generation}/");
        if world == 0 || rank >= world {
            return Err(Error::Invalid(format!(
                "expected a rank below the world size, found rank {rank} of {world}"
            )));
        }
        if backend == Backend::Nccl && !crate::HAS_NCCL {
            return Err(Error::Invalid(
                "NCCL asked for (a CUDA device) but this build of mix-dist has no NCCL backend: build it \
                 against the CUDA build of libtorch 2.11.0 with the CUDA and NCCL headers (`cargo xtask \
                 setup` installs them), or train on the CPU with Gloo"
                    .into(),
            ));
        }
        let at = format!("{master_addr}:{master_port}");
        let store = Store::new(master_addr, master_port, rank == 0, world, timeout, &prefix).map_err(|e| {
            Error::Rendezvous(if rank == 0 {
                format!(
                    "rank 0 could not serve the rendezvous store on {at}: {e}; is the port taken? pick \
                     another MASTER_PORT"
                )
            } else {
                format!(
                    "rank {rank} could not reach the rendezvous store at {at} (served by rank 0) within \
                     {} s: {e}; check that rank 0 runs and that every rank has the same MASTER_ADDR and \
                     MASTER_PORT",
                    timeout.as_secs()
                )
            })
        })?;
        let me = format!("pid {} on {}", std::process::id(), hostname());
        if !store.claim(&format!("mix/rank/{rank}"), me.as_bytes())? {
            let other = store
                .try_get(&format!("mix/rank/{rank}"))?
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            return Err(Error::Rendezvous(format!(
                "rank {rank} joined twice: {other} already has RANK={rank}; give every process its own RANK"
            )));
        }
        let world_text = world.to_string();
        if !store.claim("mix/world", world_text.as_bytes())? {
            let first = store
                .try_get("mix/world")?
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            if first != world_text {
                return Err(Error::Rendezvous(format!(
                    "rank {rank} has WORLD_SIZE={world} but another rank has WORLD_SIZE={first}; start \
                     every rank with the same WORLD_SIZE"
                )));
            }
        }
        store.add("mix/joined", 1)?;
        // Rank 0 serves the store, so it gives up last: the others can still read who is missing.
        let deadline = if rank == 0 {
            timeout + Duration::from_secs(1)
        } else {
            timeout
        };
        let started = Instant::now();
        let gone = |e: Error| {
            Error::Rendezvous(format!(
                "rank 0, which serves the rendezvous store at {at}, left before all {world} ranks came: {e}"
            ))
        };
        loop {
            let joined = store.add("mix/joined", 0).map_err(gone)?;
            if joined >= world as i64 {
                break;
            }
            if started.elapsed() >= deadline {
                let mut missing = Vec::new();
                for r in 0..world {
                    if store
                        .try_get(&format!("mix/rank/{r}"))
                        .map_err(gone)?
                        .is_none()
                    {
                        missing.push(r);
                    }
                }
                return Err(Error::Rendezvous(format!(
                    "{} never joined the rendezvous at {at} within {} s ({joined} of {world} ranks came); \
                     start every rank with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE, or raise \
                     MIX_DIST_TIMEOUT",
                    name_ranks(&missing),
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let group = Group::new(
            &store,
            rank,
            world,
            backend == Backend::Nccl,
            is_loopback(master_addr),
            timeout,
        )
        .map_err(|e| {
            Error::Rendezvous(format!(
                "rank {rank} could not connect the {} process group of {world} ranks: {e}",
                backend.name()
            ))
        })?;
        let beating = Arc::new(AtomicBool::new(true));
        let heart = start_heart(
            (master_addr, master_port, &prefix),
            rank,
            world,
            timeout,
            &beating,
        )?;
        Ok(ProcessGroup {
            rank,
            world,
            addr: master_addr.clone(),
            port: master_port,
            timeout,
            backend,
            group,
            store,
            beating,
            heart: Some(heart),
        })
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn world(&self) -> usize {
        self.world
    }

    /// The engine.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Sums each tensor over the ranks, in place (one flat all-reduce; same dtype and device).
    pub fn all_reduce_sum(&self, tensors: &[&Tensor]) -> Result<()> {
        self.group
            .all_reduce_sum(tensors)
            .map_err(|e| self.failed("all-reduce", &e))
    }

    /// Replaces each tensor by rank `root`'s, in place.
    pub fn broadcast(&self, tensors: &[&Tensor], root: usize) -> Result<()> {
        self.group
            .broadcast(tensors, root)
            .map_err(|e| self.failed("broadcast", &e))
    }

    /// Every rank's `tensor` (same shape on all), concatenated along dimension 0 in rank order, as a
    /// differentiable operation (c10d's functional all-gather: its backward pass reduce-scatters).
    pub fn all_gather(&self, tensor: &Tensor) -> Result<Tensor> {
        self.group
            .all_gather(tensor)
            .map_err(|e| self.failed("all-gather", &e))
    }

    /// Waits until every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        self.group.barrier().map_err(|e| self.failed("barrier", &e))
    }

    pub(crate) fn group(&self) -> &Group {
        &self.group
    }

    /// A collective's failure, as one message that names the rank that stopped when the heartbeats
    /// tell (see [`ProcessGroup::explain`]).
    pub(crate) fn failed(&self, what: &str, e: &Error) -> Error {
        let cause = format!("{what} across {} ranks failed: {e}", self.world);
        Error::Collective(format!("rank {}: {}", self.rank, self.explain(&cause)))
    }

    /// Leaves a rank's own error where the others look when their next collective fails, so that they
    /// can say why this rank stopped. Best effort: a store that is gone is ignored.
    pub fn report_failure(&self, message: &str) {
        let _ = self.store.set(&error_key(self.rank), message.as_bytes());
    }

    /// What happened to the job after `cause` (an error this rank saw): the ranks that reported an
    /// error, and the ranks whose heartbeat stopped (killed, crashed or hung), watched for a moment.
    /// Without either it returns `cause` alone.
    pub fn explain(&self, cause: &str) -> String {
        let others: Vec<usize> = (0..self.world).filter(|&r| r != self.rank).collect();
        let read = |r: usize| self.store.add(&beat_key(r), 0);
        let store_gone = || {
            format!(
                "rank 0, which serves the job's store at {}:{}, is gone (it died or was killed); {cause}",
                self.addr, self.port
            )
        };
        let before: Result<Vec<i64>> = others.iter().map(|&r| read(r)).collect();
        let Ok(before) = before else {
            return store_gone();
        };
        std::thread::sleep(WATCH);
        let mut stopped = Vec::new();
        let mut reasons = Vec::new();
        for (&r, b) in others.iter().zip(before) {
            match read(r) {
                Ok(after) if after != b => {}
                Ok(_) => stopped.push(r),
                Err(_) => return store_gone(),
            }
            if let Ok(Some(text)) = self.store.try_get(&error_key(r)) {
                let text = String::from_utf8_lossy(&text);
                // Every rank often hits the same error (a bad dataset path): say it once.
                if text != cause {
                    reasons.push(format!("rank {r} failed: {text}"));
                }
            }
        }
        // What the others tell comes first: the cause seen here is usually just a closed connection.
        let mut parts = Vec::new();
        if !stopped.is_empty() {
            parts.push(format!(
                "{} stopped: no heartbeat for {:.1} s (killed, crashed or hung)",
                name_ranks(&stopped),
                WATCH.as_secs_f64()
            ));
        }
        parts.extend(reasons);
        parts.push(cause.to_owned());
        parts.join("; ")
    }

    /// Ends this rank's part cleanly: waits for every rank (so that rank 0's store outlives the others'
    /// last use of it), then stops the heartbeat.
    pub fn finish(mut self) -> Result<()> {
        let waited = self.barrier();
        self.stop_heart();
        waited
    }

    fn stop_heart(&mut self) {
        self.beating.store(false, Ordering::Relaxed);
        if let Some(h) = self.heart.take() {
            let _ = h.join();
        }
    }

    /// How long collectives wait before failing.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // Not joined: a heartbeat blocked on a store that went away must not hold up the exit.
        let was_running = self.heart.is_some();
        self.beating.store(false, Ordering::Relaxed);
        if was_running && self.rank == 0 {
            // Rank 0 leaves without `finish`: the job failed. Its store stays up a little longer, so
            // that the other ranks can still read the heartbeats and name the rank that stopped,
            // rather than only seeing rank 0 go.
            std::thread::sleep(WATCH + HEARTBEAT_INTERVAL * 2);
        }
    }
}

impl mix_tch::Collective for ProcessGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn sum(&self, tensors: &[&Tensor]) -> mix_tch::Result<()> {
        Ok(self.all_reduce_sum(tensors)?)
    }

    fn all_gather(&self, tensor: &Tensor) -> mix_tch::Result<Tensor> {
        Ok(ProcessGroup::all_gather(self, tensor)?)
    }
}

/// The heartbeat: a thread with its own store connection that bumps this rank's counter every
/// [`HEARTBEAT_INTERVAL`] until stopped or until the store is gone.
fn start_heart(
    (addr, port, prefix): (&str, u16, &str),
    rank: usize,
    world: usize,
    timeout: Duration,
    beating: &Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    let store = Store::new(addr, port, false, world, timeout, prefix)?;
    store.add(&beat_key(rank), 1)?;
    let beating = Arc::clone(beating);
    std::thread::Builder::new()
        .name(format!("mix-dist-heartbeat-{rank}"))
        .spawn(move || {
            while beating.load(Ordering::Relaxed) {
                std::thread::sleep(HEARTBEAT_INTERVAL);
                if store.add(&beat_key(rank), 1).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| Error::Invalid(format!("cannot start the heartbeat thread: {e}")))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "this host".into())
}

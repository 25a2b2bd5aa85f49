//! Data-parallel runs: `--nproc N` launches N local ranks of this binary (torchrun `--standalone`),
//! and a process started with torchrun's variables joins its job as one rank (its shard, its GPU, DDP,
//! and only rank 0 writing or printing).

use std::ffi::OsString;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use mix_cli::{DistEnv, LaunchOptions};
use mix_data::Shard;
use mix_dist::{Backend, Ddp, DdpOptions, JoinOptions, ProcessGroup};
use mix_tch::tch::Device;
use mix_tch::{Collective, DeviceChoice};

/// This process's rank in a running job.
#[derive(Debug, Clone)]
pub struct Rank {
    /// torchrun's variables.
    pub env: DistEnv,
    /// The joined process group.
    pub group: Arc<ProcessGroup>,
}

impl Rank {
    /// Whether this rank writes the run folder and prints (rank 0).
    pub fn is_main(&self) -> bool {
        self.env.is_main()
    }

    /// Which part of every epoch this rank loads.
    pub fn shard(&self) -> Result<Shard> {
        Ok(Shard::new(self.env.rank, self.env.world)?)
    }

    /// The group as the learner's `collective` (and SyncBatchNorm's).
    pub fn collective(&self) -> Arc<dyn Collective> {
        self.group.clone()
    }

    /// DDP over the group, with PyTorch's defaults.
    pub fn ddp(&self) -> Ddp {
        Ddp::new(self.group.clone(), DdpOptions::default())
    }

    /// Ends this rank's part after a successful run: waits for every rank, so that rank 0's store
    /// outlives the others' last use of it.
    pub fn finish(self) -> Result<()> {
        let Rank { env, group } = self;
        let group = Arc::try_unwrap(group)
            .map_err(|_| anyhow::anyhow!("rank {}: the process group is still in use", env.rank))?;
        group.finish().context("the ranks' final barrier")?;
        Ok(())
    }

    /// `err` as this rank reports it: left in the store for the other ranks, and completed with what
    /// the heartbeats say about them (which rank died or hangs), unless a collective already said it.
    pub fn explain(&self, err: &anyhow::Error) -> anyhow::Error {
        let text = format!("{err:#}");
        self.group.report_failure(&text);
        let said = err.chain().any(|e| {
            matches!(
                e.downcast_ref::<mix_tch::Error>(),
                Some(mix_tch::Error::Collective(_))
            )
        }) || err
            .chain()
            .any(|e| e.downcast_ref::<mix_dist::Error>().is_some());
        if said {
            return anyhow::anyhow!("{text}");
        }
        anyhow::anyhow!("rank {}: {}", self.env.rank, self.group.explain(&text))
    }
}

/// Whether this process shows and writes the run: a single process, or rank 0 of a job.
pub fn is_main(rank: Option<&Rank>) -> bool {
    !matches!(rank, Some(r) if !r.is_main())
}

/// Launches `nproc` local ranks of this program with the same arguments and exits with the job's
/// status when `nproc > 1` and this process is not a rank already (no torchrun variables); returns
/// otherwise.
pub fn launch_if_asked(nproc: usize, args: &[OsString]) -> Result<()> {
    if nproc <= 1 || DistEnv::from_env()?.is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe().context("cannot find this program to launch its ranks")?;
    println!("launching {nproc} ranks of data-parallel training on this machine (127.0.0.1)");
    let outcome = mix_cli::launch(&exe, args, nproc, &LaunchOptions::default())?;
    std::process::exit(outcome.code);
}

/// Joins the job when torchrun's variables are set: this rank's device (on CUDA, GPU `LOCAL_RANK`)
/// and its process group. `None` (and `device` unchanged) for a single process.
pub fn join(nproc: usize, device: DeviceChoice) -> Result<(Option<Rank>, DeviceChoice)> {
    let Some(env) = DistEnv::from_env()? else {
        return Ok((None, device));
    };
    if nproc > 1 && nproc != env.local_world {
        bail!(
            "--nproc {nproc}, but this process was started as rank {} of {} by a launcher \
             (LOCAL_WORLD_SIZE={}): leave --nproc out when torchrun or another launcher starts the ranks",
            env.rank,
            env.world,
            env.local_world
        );
    }
    let (device, backend) = rank_device(device, &env)?;
    let group = ProcessGroup::join(&JoinOptions {
        rank: env.rank,
        world: env.world,
        master_addr: env.master_addr.clone(),
        master_port: env.master_port,
        timeout: env.timeout,
        backend,
        generation: restart_count()?,
    })?;
    if env.is_main() {
        println!(
            "data-parallel: {} ranks, {} backend, rendezvous at {}:{}; --bs is per rank, rank 0 writes \
             the run folder",
            env.world,
            backend.name(),
            env.master_addr,
            env.master_port
        );
    }
    let group = Arc::new(group);
    Ok((Some(Rank { env, group }), device))
}

/// The device and backend of a rank: on CUDA, GPU `LOCAL_RANK` with NCCL (one GPU per rank, as
/// torchrun's users set with `torch.cuda.set_device(local_rank)`); on the CPU, Gloo.
fn rank_device(choice: DeviceChoice, env: &DistEnv) -> Result<(DeviceChoice, Backend)> {
    let device = choice.resolve()?;
    match device {
        Device::Cuda(_) => {
            let count = mix_tch::tch::Cuda::device_count() as usize;
            if env.local_rank >= count {
                bail!(
                    "rank {} has LOCAL_RANK {} but this machine has {count} CUDA device(s): launch at \
                     most {count} ranks per machine (one per GPU), or train on the CPU with --device cpu",
                    env.rank,
                    env.local_rank
                );
            }
            Ok((DeviceChoice::Cuda(env.local_rank), Backend::Nccl))
        }
        _ => Ok((DeviceChoice::Cpu, Backend::Gloo)),
    }
}

/// torchrun's `TORCHELASTIC_RESTART_COUNT`: which attempt of the job this is (0 when unset).
fn restart_count() -> Result<u64> {
    match std::env::var("TORCHELASTIC_RESTART_COUNT") {
        Err(_) => Ok(0),
        Ok(v) => v.trim().parse().with_context(|| {
            format!("TORCHELASTIC_RESTART_COUNT={v:?}: expected a whole number (torchrun sets it)")
        }),
    }
}

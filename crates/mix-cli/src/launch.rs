//! Data-parallel processes on one machine: reading torchrun's environment in a training process
//! ([`DistEnv`]) and starting one process per rank with it ([`launch`], `torchrun --standalone`).
//!
//! The variables are torchrun's (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`,
//! `MASTER_ADDR`, `MASTER_PORT`) plus `MIX_DIST_TIMEOUT`, the seconds a collective or the rendezvous
//! may wait for a peer. They are read as torch's `env://` rendezvous reads them: `RANK`,
//! `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT` are required once either of the first two is set,
//! so that a process started by hand fails at once with the variable's name rather than waiting
//! for peers that will never come. `LOCAL_RANK` and `LOCAL_WORLD_SIZE` default to `RANK` and
//! `WORLD_SIZE`: a single machine, which is all [`launch`] makes.

use std::ffi::OsString;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// `RANK`: this process's rank among all of them, `0..WORLD_SIZE`.
pub const RANK: &str = "RANK";
/// `WORLD_SIZE`: how many processes train together.
pub const WORLD_SIZE: &str = "WORLD_SIZE";
/// `LOCAL_RANK`: this process's rank on its machine (its GPU index on CUDA).
pub const LOCAL_RANK: &str = "LOCAL_RANK";
/// `LOCAL_WORLD_SIZE`: how many processes run on this machine.
pub const LOCAL_WORLD_SIZE: &str = "LOCAL_WORLD_SIZE";
/// `MASTER_ADDR`: the host of rank 0's store.
pub const MASTER_ADDR: &str = "MASTER_ADDR";
/// `MASTER_PORT`: the port of rank 0's store.
pub const MASTER_PORT: &str = "MASTER_PORT";
/// `MIX_DIST_TIMEOUT`: whole seconds the rendezvous and each collective may wait for a peer.
pub const MIX_DIST_TIMEOUT: &str = "MIX_DIST_TIMEOUT";

/// The peer timeout when `MIX_DIST_TIMEOUT` is not set: long enough for a slow first batch
/// (decoding, cuDNN autotuning) on one rank, short enough that a hung run ends within minutes.
pub const DEFAULT_DIST_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest `MIX_DIST_TIMEOUT`, a day: far beyond any step, and small enough that the engine
/// can hand it to c10d as milliseconds without overflow.
pub const MAX_DIST_TIMEOUT_SECS: u64 = 86_400;
/// How long [`launch`] lets the other ranks end on their own after one fails, by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// How often [`launch`] looks at its children: often enough that a failure is reported at once,
/// rarely enough to cost nothing.
const POLL: Duration = Duration::from_millis(50);

/// A training process's place in a data-parallel run, read from torchrun's variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    /// `RANK`, below `world`.
    pub rank: usize,
    /// `WORLD_SIZE`, at least 1.
    pub world: usize,
    /// `LOCAL_RANK`, below `local_world` (default `rank`).
    pub local_rank: usize,
    /// `LOCAL_WORLD_SIZE`, at most `world` (default `world`).
    pub local_world: usize,
    /// `MASTER_ADDR`, not empty.
    pub master_addr: String,
    /// `MASTER_PORT`, 1 to 65535.
    pub master_port: u16,
    /// `MIX_DIST_TIMEOUT` (default [`DEFAULT_DIST_TIMEOUT`]).
    pub timeout: Duration,
}

/// An [`Error::Env`] for `name`.
fn env_error(name: &'static str, message: impl Into<String>) -> Error {
    Error::Env {
        name,
        message: message.into(),
    }
}

/// A variable's value as UTF-8 (`None`: not set).
fn text(name: &'static str, value: Option<OsString>) -> Result<Option<String>> {
    value
        .map(|v| {
            v.into_string().map_err(|v| {
                env_error(
                    name,
                    format!("expected UTF-8 text, found {}", v.to_string_lossy()),
                )
            })
        })
        .transpose()
}

/// A whole number; `expected` says which, for the message.
fn number(name: &'static str, value: &str, expected: &str) -> Result<usize> {
    value
        .trim()
        .parse()
        .map_err(|_| env_error(name, format!("{name}={value:?}: expected {expected}")))
}

/// Reads `MIX_DIST_TIMEOUT`: whole seconds, 1 to [`MAX_DIST_TIMEOUT_SECS`].
pub fn parse_timeout(value: Option<OsString>) -> Result<Duration> {
    let Some(value) = text(MIX_DIST_TIMEOUT, value)? else {
        return Ok(DEFAULT_DIST_TIMEOUT);
    };
    match value.trim().parse::<u64>() {
        Ok(secs) if (1..=MAX_DIST_TIMEOUT_SECS).contains(&secs) => Ok(Duration::from_secs(secs)),
        _ => Err(env_error(
            MIX_DIST_TIMEOUT,
            format!(
                "{MIX_DIST_TIMEOUT}={value:?}: expected whole seconds from 1 to {MAX_DIST_TIMEOUT_SECS} \
                 (unset means {})",
                DEFAULT_DIST_TIMEOUT.as_secs()
            ),
        )),
    }
}

impl DistEnv {
    /// Reads the process's environment; see [`DistEnv::from_vars`].
    pub fn from_env() -> Result<Option<DistEnv>> {
        DistEnv::from_vars(|name| std::env::var_os(name))
    }

    /// Reads the variables through `var` (`None`: not set). `Ok(None)` when neither `RANK` nor
    /// `WORLD_SIZE` is set: a single process, not part of a data-parallel run. A variable set to
    /// an empty value counts as set, and is refused.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Option<DistEnv>> {
        let get = |name: &'static str| text(name, var(name));
        let (rank, world) = match (get(RANK)?, get(WORLD_SIZE)?) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(env_error(
                    WORLD_SIZE,
                    format!("not set, but {RANK} is: expected both (as torchrun sets them) or neither"),
                ))
            }
            (None, Some(_)) => {
                return Err(env_error(
                    RANK,
                    format!("not set, but {WORLD_SIZE} is: expected both (as torchrun sets them) or neither"),
                ))
            }
            (Some(r), Some(w)) => (r, w),
        };
        let world = number(WORLD_SIZE, &world, "the number of processes, at least 1")?;
        if world == 0 {
            return Err(env_error(
                WORLD_SIZE,
                format!("{WORLD_SIZE}=0: expected the number of processes, at least 1"),
            ));
        }
        let rank_expected = format!("this process's rank, 0 to {}", world - 1);
        let rank = number(RANK, &rank, &rank_expected)?;
        if rank >= world {
            return Err(env_error(
                RANK,
                format!("{RANK}={rank} with {WORLD_SIZE}={world}: expected {rank_expected}"),
            ));
        }
        let local_world = match get(LOCAL_WORLD_SIZE)? {
            None => world,
            Some(v) => {
                let expected = format!("the processes on this machine, 1 to {WORLD_SIZE}={world}");
                let n = number(LOCAL_WORLD_SIZE, &v, &expected)?;
                if n == 0 || n > world {
                    return Err(env_error(
                        LOCAL_WORLD_SIZE,
                        format!("{LOCAL_WORLD_SIZE}={n}: expected {expected}"),
                    ));
                }
                n
            }
        };
        let local_rank = match get(LOCAL_RANK)? {
            None => rank,
            Some(v) => {
                let expected = format!(
                    "this process's rank on this machine, 0 to {} ({LOCAL_WORLD_SIZE} - 1)",
                    local_world - 1
                );
                let n = number(LOCAL_RANK, &v, &expected)?;
                if n >= local_world {
                    return Err(env_error(
                        LOCAL_RANK,
                        format!("{LOCAL_RANK}={n}: expected {expected}"),
                    ));
                }
                n
            }
        };
        if local_rank >= local_world {
            // Only reachable through the defaults: LOCAL_WORLD_SIZE given, LOCAL_RANK not.
            return Err(env_error(
                LOCAL_RANK,
                format!(
                    "not set, and its default {RANK}={rank} is not below {LOCAL_WORLD_SIZE}={local_world}: \
                     expected {LOCAL_RANK} set (as torchrun sets it)"
                ),
            ));
        }
        let master_addr = match get(MASTER_ADDR)? {
            None => {
                return Err(env_error(
                    MASTER_ADDR,
                    format!("not set: expected the host of rank 0 (127.0.0.1 on one machine), as torch's env:// rendezvous requires with {RANK} and {WORLD_SIZE}"),
                ))
            }
            Some(a) if a.trim().is_empty() => {
                return Err(env_error(
                    MASTER_ADDR,
                    format!("{MASTER_ADDR} is empty: expected the host of rank 0 (127.0.0.1 on one machine)"),
                ))
            }
            Some(a) => a.trim().to_string(),
        };
        let master_port = match get(MASTER_PORT)? {
            None => {
                return Err(env_error(
                    MASTER_PORT,
                    format!("not set: expected the port of rank 0's store, as torch's env:// rendezvous requires with {RANK} and {WORLD_SIZE}"),
                ))
            }
            Some(p) => match p.trim().parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => {
                    return Err(env_error(
                        MASTER_PORT,
                        format!("{MASTER_PORT}={p:?}: expected a port number from 1 to 65535"),
                    ))
                }
            },
        };
        let timeout = parse_timeout(var(MIX_DIST_TIMEOUT))?;
        Ok(Some(DistEnv {
            rank,
            world,
            local_rank,
            local_world,
            master_addr,
            master_port,
            timeout,
        }))
    }

    /// The variables that [`DistEnv::from_vars`] reads back as `self`.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            (RANK, self.rank.to_string()),
            (WORLD_SIZE, self.world.to_string()),
            (LOCAL_RANK, self.local_rank.to_string()),
            (LOCAL_WORLD_SIZE, self.local_world.to_string()),
            (MASTER_ADDR, self.master_addr.clone()),
            (MASTER_PORT, self.master_port.to_string()),
            (MIX_DIST_TIMEOUT, self.timeout.as_secs().to_string()),
        ]
    }

    /// Rank 0, the process that writes the run folder and prints the progress.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
}

/// How [`launch`] runs its processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchOptions {
    /// How long the other ranks may keep running after one fails before they are killed.
    pub grace: Duration,
    /// `MIX_DIST_TIMEOUT` for the children; `None` takes this process's (checked), else
    /// [`DEFAULT_DIST_TIMEOUT`].
    pub timeout: Option<Duration>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        LaunchOptions {
            grace: DEFAULT_GRACE,
            timeout: None,
        }
    }
}

/// How a rank's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankExit {
    /// The rank.
    pub rank: usize,
    /// Its exit status.
    pub status: ExitStatus,
}

impl std::fmt::Display for RankExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rank {} exited with status {}", self.rank, self.status)
    }
}

/// How a launched run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchOutcome {
    /// The exit code to leave with: 0 when every rank succeeded, else the first failed rank's
    /// code (128 + the signal when a signal ended it, as shells report it).
    pub code: i32,
    /// The first rank seen to fail, `None` when every rank succeeded.
    pub first_failure: Option<RankExit>,
}

impl LaunchOutcome {
    /// Whether every rank exited with 0.
    pub fn success(&self) -> bool {
        self.first_failure.is_none()
    }
}

/// The exit code a shell would report for `status`: its code, or 128 + the signal that ended it.
pub fn exit_code(status: ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return 128 + signal;
        }
    }
    1
}

/// Runs `program args` as `nproc` processes on this machine, ranks `0..nproc`, each with its
/// [`DistEnv`] in its environment (`MASTER_ADDR` 127.0.0.1, `MASTER_PORT` a port free a moment
/// ago), as `torchrun --standalone --nproc_per_node NPROC` does, and waits for them. Lines about
/// failed ranks go to standard error; see [`launch_with_log`].
pub fn launch(
    program: &Path,
    args: &[OsString],
    nproc: usize,
    opts: &LaunchOptions,
) -> Result<LaunchOutcome> {
    launch_with_log(program, args, nproc, opts, &mut std::io::stderr())
}

/// [`launch`], writing its lines (`launch: rank R exited with status S`, and which ranks it
/// killed) to `log`.
///
/// The children inherit standard input, output and error, and this process's environment with
/// the rank's variables set; `OMP_NUM_THREADS` becomes 1 when it is unset and `nproc` > 1, as
/// torchrun does, so that N processes do not each start a thread per core. When a rank fails the
/// others get `opts.grace` to end on their own (the engine sees the dead peer), then are killed
/// (SIGKILL) and reaped. Ctrl-C reaches the children directly, as they share the terminal's
/// process group; it ends this process too (std cannot catch it), and the system reaps the
/// children then.
pub fn launch_with_log(
    program: &Path,
    args: &[OsString],
    nproc: usize,
    opts: &LaunchOptions,
    log: &mut dyn Write,
) -> Result<LaunchOutcome> {
    if nproc == 0 {
        return Err(Error::usage(
            "--nproc 0: expected at least 1 process to launch",
        ));
    }
    let timeout = match opts.timeout {
        Some(t)
            if t.subsec_nanos() != 0 || t.as_secs() == 0 || t.as_secs() > MAX_DIST_TIMEOUT_SECS =>
        {
            return Err(Error::usage(format!(
                "a launch timeout of {t:?}: expected whole seconds from 1 to {MAX_DIST_TIMEOUT_SECS}"
            )))
        }
        Some(t) => t,
        None => parse_timeout(std::env::var_os(MIX_DIST_TIMEOUT))?,
    };
    let master_port = free_port()?;
    let single_threaded = nproc > 1 && std::env::var_os("OMP_NUM_THREADS").is_none();
    let mut children: Vec<Option<Child>> = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let env = DistEnv {
            rank,
            world: nproc,
            local_rank: rank,
            local_world: nproc,
            master_addr: Ipv4Addr::LOCALHOST.to_string(),
            master_port,
            timeout,
        };
        let mut cmd = Command::new(program);
        cmd.args(args).envs(env.vars());
        if single_threaded {
            cmd.env("OMP_NUM_THREADS", "1");
        }
        match cmd.spawn() {
            Ok(child) => children.push(Some(child)),
            Err(source) => {
                kill_all(&mut children);
                let killed = if rank > 0 {
                    " (the ranks already started were killed)"
                } else {
                    ""
                };
                return Err(Error::Launch {
                    context: format!(
                        "cannot start rank {rank} of {nproc}: {}{killed}",
                        program.display()
                    ),
                    source,
                });
            }
        }
    }
    supervise(&mut children, opts.grace, log).inspect_err(|_| kill_all(&mut children))
}

/// A port on 127.0.0.1 that nothing listens on: the system's pick for port 0. Rank 0's store
/// binds it a moment later; another program taking it in between makes the run fail at its
/// rendezvous, as with torchrun.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| Error::Launch {
        context: "cannot find a free port on 127.0.0.1 for the ranks' rendezvous".into(),
        source,
    })?;
    let port = listener.local_addr().map_err(|source| Error::Launch {
        context: "cannot read the port picked on 127.0.0.1".into(),
        source,
    })?;
    Ok(port.port())
}

/// Kills and reaps every child still running.
fn kill_all(children: &mut [Option<Child>]) {
    for child in children.iter_mut().filter_map(Option::take) {
        reap_killed(child);
    }
}

fn reap_killed(mut child: Child) {
    // A child that ended since it was last looked at makes kill fail; wait reaps it either way.
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for every child (`None`: reaped), killing the rest `grace` after the first failure.
fn supervise(
    children: &mut [Option<Child>],
    grace: Duration,
    log: &mut dyn Write,
) -> Result<LaunchOutcome> {
    let mut first_failure: Option<RankExit> = None;
    let mut deadline: Option<Instant> = None;
    loop {
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            let status = child.try_wait().map_err(|source| Error::Launch {
                context: format!("cannot wait for rank {rank}"),
                source,
            })?;
            let Some(status) = status else { continue };
            *slot = None;
            if status.success() {
                continue;
            }
            let exit = RankExit { rank, status };
            // The log is best effort: a closed standard error must not leave children running.
            let _ = writeln!(log, "launch: {exit}");
            if first_failure.is_none() {
                first_failure = Some(exit);
                deadline = Some(Instant::now() + grace);
            }
        }
        if children.iter().all(Option::is_none) {
            break;
        }
        let now = Instant::now();
        if let Some(deadline) = deadline {
            if now >= deadline {
                for (rank, slot) in children.iter_mut().enumerate() {
                    if let Some(child) = slot.take() {
                        let _ = writeln!(
                            log,
                            "launch: rank {rank} still running {grace:?} after rank {} failed; killing it",
                            first_failure.map_or(0, |f| f.rank)
                        );
                        reap_killed(child);
                    }
                }
                break;
            }
            std::thread::sleep(POLL.min(deadline - now));
        } else {
            std::thread::sleep(POLL);
        }
    }
    Ok(LaunchOutcome {
        code: first_failure.map_or(0, |f| exit_code(f.status)),
        first_failure,
    })
}

//! DDP through the learner with real processes on 127.0.0.1: a 2-rank run on a tiny image folder (each
//! rank a DistributedSampler shard, half the batch) records the same loss curve, validation metrics and
//! final weights as a 1-process run with the same global batch, and two 2-rank runs with one seed are
//! identical. The model has no BatchNorm and nothing is drawn at random per rank (no augmentation, no
//! mixing), so the two must agree to float rounding.
//!
//! Its own `main` (harness = false), as tests/collectives.rs: the parent starts itself again per rank.

mod common;

use mix_data::{DataLoaders, LoaderConfig, Shard};
use mix_dist::{Backend, Ddp, DdpOptions, JoinOptions, ProcessGroup};
use mix_tch::tch::{Device, Kind, Tensor};
use mix_tch::{Learner, LearnerConfig, Model, OneCycle, TinyNet};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Global batch (the 1-process batch; each of 2 ranks takes half).
const GLOBAL_BS: usize = 8;
const EPOCHS: usize = 2;

fn main() {
    if let Ok(role) = std::env::var("MIX_DIST_TEST_ROLE") {
        let run = if role == "syncbn" {
            sync_bn_child
        } else {
            child
        };
        std::process::exit(match run() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("{e}");
                1
            }
        });
    }
    common::run(&[
        common::Case {
            name: "two_ranks_match_one_and_repeat",
            body: two_ranks_match_one_and_repeat,
            ignored: None,
        },
        common::Case {
            name: "sync_batch_norm_over_two_ranks_is_batch_norm_over_the_whole_batch",
            body: sync_batch_norm_matches_one_process,
            ignored: None,
        },
    ]);
}

/// Two classes told apart by colour, with noise: 24 images of 16x16 pixels (about 19 train, 5 valid).
fn make_images(dir: &Path) -> Vec<PathBuf> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..24)
        .map(|i| {
            let class = if i % 2 == 0 { "red" } else { "blue" };
            let path = dir.join(format!("{class}_{i}.png"));
            let img = image::RgbImage::from_fn(16, 16, |_, _| {
                let noise: u8 = rng.gen_range(0..80);
                if class == "red" {
                    image::Rgb([175 + noise, noise, noise])
                } else {
                    image::Rgb([noise, noise, 175 + noise])
                }
            });
            img.save(&path).expect("write a test image");
            path
        })
        .collect()
}

/// Runs `world` ranks (or one plain process for `world == 0`) and returns rank 0's report.
fn run(dir: &Path, world: usize, tag: &str) -> String {
    run_role("fit", dir, world, tag)
}

/// Runs `world` ranks of `role` (or one plain process for `world == 0`) and returns rank 0's report.
fn run_role(role: &str, dir: &Path, world: usize, tag: &str) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let ranks = world.max(1);
    let children: Vec<_> = (0..ranks)
        .map(|rank| {
            let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
            cmd.env("MIX_DIST_TEST_ROLE", role)
                .env("MIX_DIST_TEST_DIR", dir)
                .env("MIX_DIST_TEST_OUT", dir.join(format!("{tag}-{rank}.txt")))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if world > 0 {
                cmd.env("RANK", rank.to_string())
                    .env("WORLD_SIZE", world.to_string())
                    .env("MASTER_ADDR", "127.0.0.1")
                    .env("MASTER_PORT", port.to_string());
            }
            cmd.spawn().expect("start a rank")
        })
        .collect();
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("wait for a rank");
        assert!(
            out.status.success(),
            "{tag} rank {rank} failed:\n{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    std::fs::read_to_string(dir.join(format!("{tag}-0.txt"))).expect("rank 0's report")
}

fn numbers(report: &str, key: &str) -> Vec<f64> {
    let line = report
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in the report:\n{report}"));
    line[key.len()..]
        .split_whitespace()
        .map(|v| v.parse().expect("a number"))
        .collect()
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())),
            "{what}[{i}]: {x} against {y}"
        );
    }
}

fn two_ranks_match_one_and_repeat() {
    let dir = tempfile::tempdir().expect("a temp folder");
    make_images(dir.path());
    let one = run(dir.path(), 0, "one");
    let two = run(dir.path(), 2, "two");
    let again = run(dir.path(), 2, "again");
    assert_eq!(two, again, "two 2-rank runs with one seed differ");
    let steps = numbers(&one, "losses:");
    assert!(steps.len() >= 2 * EPOCHS, "{one}");
    close(&steps, &numbers(&two, "losses:"), 1e-5, "step losses");
    close(
        &numbers(&one, "valid:"),
        &numbers(&two, "valid:"),
        1e-5,
        "validation",
    );
    close(
        &numbers(&one, "weights:"),
        &numbers(&two, "weights:"),
        1e-5,
        "final weights",
    );
    // The weights moved: the comparison is not between two untrained models.
    let start = numbers(&one, "start:");
    let end = numbers(&one, "weights:");
    assert!(start.iter().zip(&end).any(|(a, b)| (a - b).abs() > 1e-3));
}

/// A fixed `(8, 3, 4, 4)` batch (and the loss weights of its output): no random numbers, so every
/// process makes the same one.
fn fixed(offset: f64) -> Tensor {
    let n = 8 * 3 * 4 * 4;
    (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.37 + offset)
        .sin()
        .view([8, 3, 4, 4])
        * 2.0
        + 0.5
}

/// A BatchNorm layer of 3 channels: weight, bias, running mean and running variance.
fn bn_state() -> [Tensor; 4] {
    [
        Tensor::from_slice(&[1.5f32, 0.5, -1.0]),
        Tensor::from_slice(&[0.1f32, -0.2, 0.3]),
        Tensor::zeros([3], (Kind::Float, Device::Cpu)),
        Tensor::ones([3], (Kind::Float, Device::Cpu)),
    ]
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).contiguous().view([-1])).expect("values")
}

fn sync_batch_norm_matches_one_process() {
    let dir = tempfile::tempdir().expect("a temp folder");
    run_role("syncbn", dir.path(), 2, "syncbn");
    let rank1 = std::fs::read_to_string(dir.path().join("syncbn-1.txt")).expect("rank 1's report");
    let rank0 = std::fs::read_to_string(dir.path().join("syncbn-0.txt")).expect("rank 0's report");
    // The reference: torch's own BatchNorm over the whole batch, in one process.
    let x = fixed(0.0).set_requires_grad(true);
    let [w, b, rm, rv] = bn_state();
    let y = Tensor::batch_norm(
        &x,
        Some(&w),
        Some(&b),
        Some(&rm),
        Some(&rv),
        true,
        0.1,
        1e-5,
        false,
    );
    (&y * fixed(1.0)).sum(Kind::Float).backward();
    let grad = x.grad();
    for (rank, report) in [(0, &rank0), (1, &rank1)] {
        let half = |t: &Tensor| values(&t.narrow(0, rank * 4, 4));
        close(&numbers(report, "y:"), &half(&y), 1e-4, "outputs");
        close(
            &numbers(report, "grad:"),
            &half(&grad),
            1e-4,
            "input gradients",
        );
        close(
            &numbers(report, "running_mean:"),
            &values(&rm),
            1e-5,
            "running mean",
        );
        close(
            &numbers(report, "running_var:"),
            &values(&rv),
            1e-5,
            "running var",
        );
    }
}

/// One rank's half of the fixed batch through `sync_batch_norm`, forward and backward.
fn sync_bn_child() -> Result<(), Box<dyn std::error::Error>> {
    let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let group = Arc::new(ProcessGroup::join(&JoinOptions {
        rank: var("RANK")?.parse()?,
        world: var("WORLD_SIZE")?.parse()?,
        master_addr: var("MASTER_ADDR")?,
        master_port: var("MASTER_PORT")?.parse()?,
        timeout: Duration::from_secs(30),
        backend: Backend::Gloo,
        generation: 0,
    })?);
    let rank = group.rank() as i64;
    let x = fixed(0.0)
        .narrow(0, rank * 4, 4)
        .detach()
        .set_requires_grad(true);
    let [w, b, rm, rv] = bn_state();
    let y = mix_tch::sync_batch_norm(&x, &w, &b, &rm, &rv, 0.1, 1e-5, &*group)?;
    (&y * fixed(1.0).narrow(0, rank * 4, 4))
        .sum(Kind::Float)
        .backward();
    let report = line("y:", &values(&y))
        + &line("grad:", &values(&x.grad()))
        + &line("running_mean:", &values(&rm))
        + &line("running_var:", &values(&rv));
    Arc::try_unwrap(group)
        .map_err(|_| "the group is still shared")?
        .finish()?;
    std::fs::write(var("MIX_DIST_TEST_OUT")?, report)?;
    Ok(())
}

fn flat(model: &dyn Model) -> Vec<f64> {
    let mut vars: Vec<(String, Tensor)> = model.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.iter()
        .flat_map(|(_, t)| {
            Vec::<f64>::try_from(t.to_kind(Kind::Double).view([-1])).expect("values")
        })
        .collect()
}

fn line(key: &str, values: &[f64]) -> String {
    let text: Vec<String> = values.iter().map(|v| format!("{v:e}")).collect();
    format!("{key} {}\n", text.join(" "))
}

fn child() -> Result<(), Box<dyn std::error::Error>> {
    mix_tch::tch::set_num_threads(1);
    let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let dir = PathBuf::from(var("MIX_DIST_TEST_DIR")?);
    let group = match std::env::var("WORLD_SIZE") {
        Ok(world) => Some(Arc::new(ProcessGroup::join(&JoinOptions {
            rank: var("RANK")?.parse()?,
            world: world.parse()?,
            master_addr: var("MASTER_ADDR")?,
            master_port: var("MASTER_PORT")?.parse()?,
            timeout: Duration::from_secs(30),
            backend: Backend::Gloo,
            generation: 0,
        })?)),
        Err(_) => None,
    };
    let (rank, world) = group.as_ref().map_or((0, 1), |g| (g.rank(), g.world()));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "png"));
    files.sort();
    let lcfg = LoaderConfig {
        batch_size: GLOBAL_BS / world,
        valid_pct: 0.2,
        seed: 3,
        item_size: 16,
        threads: 1,
        shard: Shard::new(rank, world)?,
        ..LoaderConfig::default()
    };
    let dls = DataLoaders::from_name_re(&files, r"([a-z]+)_\d+\.png$", &lcfg)?;
    let mut cfg = LearnerConfig::new(2);
    cfg.device = mix_tch::DeviceChoice::Cpu;
    cfg.aug = None;
    cfg.progress = false;
    cfg.sync_every = 3;
    cfg.collective = group.clone().map(|g| g as Arc<dyn mix_tch::Collective>);
    let model = TinyNet::new(
        2,
        Device::Cpu,
        &mut ChaCha8Rng::seed_from_u64(rank as u64 + 11),
    );
    let mut learner = Learner::with_model(
        Box::new(dls.train),
        Box::new(dls.valid),
        Box::new(model),
        cfg,
    )?;
    // Rank 0's start: the other ranks began from different weights and DDP's broadcast replaced them.
    let mut report = String::new();
    let cbs: Vec<Box<dyn mix_tch::Callback>> = match &group {
        Some(g) => vec![Box::new(Ddp::new(g.clone(), DdpOptions::default()))],
        None => Vec::new(),
    };
    report += &line("start:", &flat(&*learner.learn().model));
    let sched = OneCycle {
        lr_max: 0.05,
        ..OneCycle::default()
    };
    learner.fit_one_cycle(EPOCHS, sched, cbs)?;
    let losses: Vec<f64> = learner.steps().iter().map(|s| s.loss).collect();
    report += &line("losses:", &losses);
    let valid: Vec<f64> = learner
        .epochs()
        .iter()
        .flat_map(|e| [e.valid_loss, e.error_rate])
        .collect();
    report += &line("valid:", &valid);
    report += &line("weights:", &flat(&*learner.learn().model));
    // The learner holds the group too (its `collective`); the last reference finishes it.
    drop(learner);
    if let Some(g) = group {
        Arc::try_unwrap(g)
            .map_err(|_| "the group is still shared")?
            .finish()?;
    }
    std::fs::write(var("MIX_DIST_TEST_OUT")?, report)?;
    Ok(())
}

//! Data-parallel runs of the binary on 127.0.0.1: `--nproc 2` (with SyncBatchNorm) trains with two
//! ranks of which only rank 0 writes and prints, and a distributed run resumes; killing one rank
//! mid-run ends the other within seconds with a message naming the killed rank, and leaves the last
//! checkpoint intact; torchrun itself starts a run's ranks.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn metric_rows(run: &Path) -> usize {
    csv(&run.join("metrics.csv")).1.len()
}

#[test]
fn nproc_2_trains_with_rank_0_alone_writing_and_resumes() {
    let sb = Sandbox::new();
    let images = tiny_dataset(sb.path());
    let mut first = run_args(&images, 2);
    // With SyncBatchNorm: the statistics' gather runs in the forward and backward passes next to DDP's
    // gradient all-reduce.
    first.extend(["--nproc", "2", "--stop-after", "1", "--sync-bn"].map(String::from));
    let out = sb.run(&strs(&first));
    out.assert_ok();
    assert!(out.stdout.contains("launching 2 ranks"), "{}", out.stdout);
    assert!(
        out.stdout.contains("data-parallel: 2 ranks, gloo backend"),
        "{}",
        out.stdout
    );
    // One run folder, one announcement, one stop message: rank 1 wrote and printed nothing.
    let dirs = sb.run_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert_eq!(
        out.stdout.matches("stopping after epoch 1").count(),
        1,
        "{}",
        out.stdout
    );
    let run = &dirs[0];
    assert_eq!(metric_rows(run), 1);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["sync_bn"], true);
    // Each rank trained on its half: 10 of the 20 training images, 2 steps of 4 an epoch.
    let (_, steps) = csv(&run.join("steps.csv"));
    assert_eq!(steps.len(), 2, "{steps:?}");
    let resumed = sb.run(&["--resume", run.to_str().unwrap(), "--nproc", "2"]);
    resumed.assert_ok();
    assert!(resumed.stdout.contains("resuming"), "{}", resumed.stdout);
    assert_eq!(metric_rows(run), 2);
    assert_eq!(sb.run_dirs().len(), 1);
    assert!(run.join("model.safetensors").is_file());
}

fn spawn_rank(sb: &Sandbox, args: &[String], rank: usize, port: u16) -> Child {
    sb.command()
        .args(args)
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", "2")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("MIX_DIST_TIMEOUT", "60")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mix-train starts")
}

#[test]
fn killing_a_rank_ends_the_other_naming_it_and_keeps_the_checkpoint() {
    let sb = Sandbox::new();
    let images = tiny_dataset(sb.path());
    let mut args = run_args(&images, 40);
    args.extend(["--out".to_string(), sb.runs().to_str().unwrap().to_string()]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut rank0 = spawn_rank(&sb, &args, 0, port);
    let mut rank1 = spawn_rank(&sb, &args, 1, port);
    // Once the first checkpoint is written, rank 1 is somewhere in the next epochs: kill it there.
    let started = Instant::now();
    let checkpoint = loop {
        let found = sb
            .run_dirs()
            .first()
            .map(|r| r.join("checkpoints/epoch-0001"));
        if let Some(c) = found.filter(|c| c.join("manifest.json").is_file()) {
            break c;
        }
        assert!(rank0.try_wait().unwrap().is_none(), "rank 0 ended early");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint after 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300));
    rank1.kill().unwrap();
    rank1.wait().unwrap();
    let killed = Instant::now();
    let out = rank0.wait_with_output().unwrap();
    // Far within the 60 s collective timeout: the dead peer's closed connections end rank 0 at once.
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "{:?}",
        killed.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("rank 1 stopped"), "{stderr}");
    assert!(
        stderr.contains("is intact: continue with `--resume"),
        "{stderr}"
    );
    let run = sb.run_dirs()[0].clone();
    let newest = mix_tch::checkpoint::newest_valid(&run.join("checkpoints"))
        .unwrap()
        .expect("a checkpoint");
    assert!(newest.skipped.is_empty(), "{:?}", newest.skipped);
    assert!(newest.dir >= checkpoint, "{:?}", newest.dir);
}

#[test]
fn torchrun_starts_the_ranks() {
    // PyTorch's own launcher: the binary joins its job from the variables torchrun sets (and through
    // the store torchrun's agent already serves on MASTER_PORT).
    let python = mix_test_support::torch_python("torchrun (torch.distributed.run)");
    let sb = Sandbox::new();
    let images = tiny_dataset(sb.path());
    // The sandbox's environment (private cache, no proxy) for torchrun and the ranks it starts.
    let sandbox = sb.command();
    let mut cmd = std::process::Command::new(python);
    cmd.current_dir(sb.path());
    for (key, value) in sandbox.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.args(["-m", "torch.distributed.run", "--standalone"])
        .args(["--nproc_per_node", "2", "--no-python"])
        .arg(env!("CARGO_BIN_EXE_mix-train"))
        .args(run_args(&images, 1))
        .args(["--out", sb.runs().to_str().unwrap()]);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("data-parallel: 2 ranks, gloo backend"),
        "{stdout}"
    );
    let dirs = sb.run_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert_eq!(metric_rows(&dirs[0]), 1);
}

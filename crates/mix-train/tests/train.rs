//! End to end on the bundled sample dataset: a tiny run writes every file of its run folder with the
//! expected columns, a stopped run resumes on the same schedule, and every error path fails with
//! its message, non-zero, and no run folder.

mod common;

use std::path::Path;

use common::*;

/// A run small enough for a test: 32 px images, 12 steps of 8.
const TINY: &[&str] = &[
    "--dataset",
    "sample",
    "--device",
    "cpu",
    "--bs",
    "8",
    "--resize",
    "40",
    "--size",
    "32",
];

fn tiny(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = TINY.to_vec();
    args.extend_from_slice(extra);
    args
}

fn check_steps(run: &Path, n_steps: usize, lr_max: f64) {
    let (header, rows) = csv(&run.join("steps.csv"));
    assert_eq!(
        header,
        ["step", "epoch", "lr", "mom", "loss", "smooth_loss"]
    );
    assert_eq!(rows.len(), n_steps);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], i.to_string(), "steps are numbered in order");
        let lr: f64 = row[2].parse().unwrap();
        let want = one_cycle_lr(lr_max, i as f64 / n_steps as f64);
        // fastai (and mix-tch) place the position within a piece in float32: agree to 1e-6.
        assert!(
            (lr - want).abs() <= 1e-6 * want,
            "step {i}: lr {lr}, expected {want}"
        );
        let mom: f64 = row[3].parse().unwrap();
        assert!((0.85..=0.95).contains(&mom), "step {i}: momentum {mom}");
        let loss: f64 = row[4].parse().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "step {i}: loss {loss}");
    }
}

#[test]
fn a_tiny_run_writes_every_file_of_its_run_folder() {
    let sb = Sandbox::new();
    let out = sb.run(&tiny(&["--epochs", "1", "--mix", "cutmix"]));
    out.assert_ok();
    let dirs = sb.run_dirs();
    assert_eq!(dirs.len(), 1, "one run folder: {dirs:?}");
    let run = &dirs[0];
    assert!(
        out.stdout
            .contains("epoch train_loss  valid_loss  error_rate  time"),
        "{}",
        out.stdout
    );

    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["mix"], "cutmix");
    assert_eq!(config["alpha"], 1.0);
    assert_eq!(config["bs"], 8);
    assert_eq!(config["size"], 32);
    assert_eq!(config["device_used"], "cpu");
    assert_eq!(config["classes"], serde_json::json!(SAMPLE_CLASSES));
    // 120 images, fastai's valid_pct 0.2.
    assert_eq!(
        (config["n_train"].as_u64(), config["n_valid"].as_u64()),
        (Some(96), Some(24))
    );

    let (header, rows) = csv(&run.join("metrics.csv"));
    assert_eq!(
        header,
        ["epoch", "train_loss", "valid_loss", "error_rate", "time"]
    );
    assert_eq!(rows.len(), 1);
    let error_rate: f64 = rows[0][3].parse().unwrap();
    assert!((0.0..=1.0).contains(&error_rate));
    check_steps(run, 96 / 8, 1e-3);

    let curves = image::open(run.join("curves.png")).expect("curves.png is a picture");
    assert!(curves.width() > curves.height(), "two panels side by side");

    let bytes = std::fs::read(run.join("model.safetensors")).unwrap();
    let model = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(model.tensor("conv1.weight").unwrap().shape(), [64, 3, 7, 7]);
    assert_eq!(model.tensor("head.8.weight").unwrap().shape(), [6, 512]);
    assert!(run.join("checkpoints/epoch-0001/progress.json").is_file());
    let names: Vec<String> = std::fs::read_dir(run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("tmp")),
        "no temporary files are left: {names:?}"
    );
}

#[test]
fn a_stopped_run_resumes_on_the_same_schedule() {
    let sb = Sandbox::new();
    let first = sb.run(&tiny(&[
        "--epochs",
        "2",
        "--stop-after",
        "1",
        "--lr",
        "2e-3",
    ]));
    first.assert_ok();
    assert!(
        first.stdout.contains("stopping after epoch 1 of 2"),
        "{}",
        first.stdout
    );
    let run = sb.run_dirs().pop().expect("a run folder");
    assert_eq!(csv(&run.join("metrics.csv")).1.len(), 1);
    assert!(run.join("checkpoints/epoch-0001").is_dir());

    // The default layout is decided by a checking pass, and the console says how it went.
    assert!(
        first
            .stdout
            .contains("channels-last layout (a checking pass matched NCHW's gradients to")
            || first.stdout.contains(
                "contiguous (NCHW) layout (a checking pass found channels-last's gradients off by"
            ),
        "{}",
        first.stdout
    );

    // The layout may change on resume: the checkpoint loads into contiguous weights.
    let run_arg = run.to_str().unwrap();
    let again = sb.run(&["--resume", run_arg, "--memory-format", "contiguous"]);
    again.assert_ok();
    assert!(again.stdout.contains("resuming"), "{}", again.stdout);
    assert!(
        again
            .stdout
            .contains("computing in fp32, contiguous (NCHW) layout;"),
        "{}",
        again.stdout
    );
    assert!(again.stdout.contains("finished 2 of 2"), "{}", again.stdout);
    let (_, rows) = csv(&run.join("metrics.csv"));
    let epochs: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(epochs, ["0", "1"]);
    // Both epochs' steps, numbered on from the first, on one schedule of 24 steps.
    check_steps(&run, 24, 2e-3);
    assert!(run.join("checkpoints/epoch-0002").is_dir());
    assert!(
        !run.join("checkpoints/epoch-0001").exists(),
        "older checkpoints are removed"
    );
    assert_eq!(sb.run_dirs().len(), 1, "resuming makes no new folder");

    sb.run(&["--resume", run_arg])
        .assert_fails_with("all 2 epochs are done already");
}

#[test]
fn unknown_options_and_bad_values_fail_with_help() {
    let sb = Sandbox::new();
    let out = sb.run(&["--dataset", "sample", "--epoch", "3"]);
    out.assert_fails_with("unexpected argument '--epoch' found")
        .assert_fails_with("a similar argument exists: '--epochs'");
    assert!(
        out.stderr.contains("--help"),
        "the error points at the help: {}",
        out.stderr
    );
    sb.run(&["--mix", "mixip"])
        .assert_fails_with("invalid value 'mixip' for '--mix <MIX>'")
        .assert_fails_with("a similar value exists: 'mixup'");
    sb.run(&["--resume", "x", "--bs", "2"])
        .assert_fails_with("--bs cannot be combined with --resume");
    sb.run(&["--resume", "no-such-run"])
        .assert_fails_with("expected a run folder made by");
    assert!(sb.run_dirs().is_empty());
}

#[test]
fn a_folder_without_images_fails() {
    let sb = Sandbox::new();
    let empty = sb.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), "not an image").unwrap();
    sb.run(&["--dataset", empty.to_str().unwrap()])
        .assert_fails_with("found no images in");
    sb.run(&["--dataset", sb.path().join("missing").to_str().unwrap()])
        .assert_fails_with("no such folder");
    assert!(sb.run_dirs().is_empty());
}

#[test]
fn a_pattern_that_labels_nothing_fails() {
    let sb = Sandbox::new();
    let dir = sb.path().join("photos");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, name) in ["holiday.jpg", "beach.jpg"].iter().enumerate() {
        std::fs::copy(
            sample_images().join(format!("cat_{}.jpg", i + 1)),
            dir.join(name),
        )
        .unwrap();
    }
    sb.run(&["--dataset", dir.to_str().unwrap()])
        .assert_fails_with("labels none of the 2 images");
    sb.run(&["--dataset", "sample", "--pattern", r"^(\d+)\.png$"])
        .assert_fails_with("labels none of the 120 images");
    assert!(sb.run_dirs().is_empty());
}

#[test]
fn cuda_asked_for_but_absent_fails() {
    let sb = Sandbox::new();
    let mut cmd = sb.command();
    // Hides every GPU from libtorch, so that the test means the same on a machine with CUDA.
    cmd.env("CUDA_VISIBLE_DEVICES", "");
    let runs = sb.runs();
    let out = sb.run_with(
        cmd,
        &[
            "--dataset",
            "sample",
            "--device",
            "cuda",
            "--out",
            runs.to_str().unwrap(),
        ],
    );
    out.assert_fails_with("--device cuda");
    out.assert_fails_with("CUDA asked for (device) but absent");
    assert!(sb.run_dirs().is_empty());
}

#[test]
fn offline_with_nothing_cached_fails_and_leaves_no_dataset() {
    let sb = Sandbox::new();
    // A port nobody listens on: bind one, note it, free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let mut cmd = sb.command();
    // The real Oxford-IIIT Pet URL through a proxy that refuses connections: offline, hermetically.
    cmd.env("HTTPS_PROXY", &dead).env("https_proxy", &dead);
    let runs = sb.runs();
    let out = sb.run_with(cmd, &["--dataset", "pets", "--out", runs.to_str().unwrap()]);
    out.assert_fails_with(
        "could not download https://s3.amazonaws.com/fast-ai-imageclas/oxford-iiit-pet.tgz",
    );
    out.assert_fails_with("put the archive by hand at");
    out.assert_fails_with("--dataset <DIR>");
    let url = format!("{dead}/other.tgz");
    sb.run(&["--dataset", &url])
        .assert_fails_with("could not download");
    assert!(!sb.cache().join("data/oxford-iiit-pet").exists());
    assert!(!sb.cache().join("data/other").exists());
    assert!(sb.run_dirs().is_empty());
}

#[test]
fn a_config_file_runs_timms_mixup_keeps_the_best_model_and_logs_events() {
    let sb = Sandbox::new();
    let config = sb.path().join("run.toml");
    // timm's Mixup with both mixes, per-element draws, switched off from epoch 1, and the best
    // model kept by error rate; the command line's --epochs wins over the file's.
    std::fs::write(
        &config,
        "epochs = 5\nmix = \"timm\"\ncutmix = 1.0\nmixup_mode = \"elem\"\nsmoothing = 0.1\n\
         mixup_off_epoch = 1\nsave_best = \"error_rate\"\n",
    )
    .unwrap();
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend(["--config", config.to_str().unwrap(), "--epochs", "2"]);
    let out = sb.run(&args);
    out.assert_ok();
    let dirs = sb.run_dirs();
    assert_eq!(dirs.len(), 1, "one run folder: {dirs:?}");
    let run = &dirs[0];
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["mix"], "timm");
    assert_eq!(cfg["epochs"], 2);
    assert_eq!(cfg["mixup_off_epoch"], 1);
    assert_eq!(cfg["save_best"], "error_rate");
    assert_eq!(cfg["timm"]["mode"], "elem");
    assert_eq!(cfg["timm"]["cutmix_alpha"], 1.0);
    let best: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("best").join("best.json")).unwrap())
            .unwrap();
    assert_eq!(best["metric"], "error_rate");
    assert!(run.join("best").join("model.safetensors").is_file());
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let epochs = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "epoch")
        .count();
    assert_eq!(epochs, 2, "one epoch line per epoch:\n{events}");
}

//! Pretrained weights fetched like datasets, `fine_tune`, `lr-find` and `predict`, end to end through
//! the binary, with weights served from a loopback server made in the test.

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

fn tiny<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = TINY.to_vec();
    args.extend_from_slice(extra);
    args
}

fn config(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap()
}

fn models_cached(sb: &Sandbox) -> Vec<String> {
    match std::fs::read_dir(sb.cache().join("models")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn weights_from_a_url_are_downloaded_once_checked_and_recorded() {
    let body = resnet18_safetensors(5);
    let sha = sha256_hex(&body);
    let server = FileServer::start("resnet18.safetensors", body);
    let sb = Sandbox::new();
    let args = tiny(&[
        "--epochs",
        "1",
        "--pretrained",
        &server.url,
        "--pretrained-sha256",
        &sha,
    ]);
    let out = sb.run(&args);
    out.assert_ok();
    assert!(
        out.stdout.contains("training ResNet18 pretrained (")
            && out.stdout.contains("resnet18.safetensors, frozen body)"),
        "{}",
        out.stdout
    );
    let run = &sb.run_dirs()[0];
    let c = config(run);
    assert_eq!(c["weights"]["source"], server.url.as_str());
    assert_eq!(c["weights"]["sha256"], sha.as_str());
    let file = c["weights"]["file"].as_str().unwrap().to_string();
    assert!(
        file.starts_with(sb.cache().join("models").to_str().unwrap()),
        "{file}"
    );
    assert_eq!(c["pretrained"], file.as_str());
    let served = server.count();
    assert!(served >= 1);
    // A second run finds the file cached and asks the server nothing.
    sb.run(&args).assert_ok();
    assert_eq!(server.count(), served, "the second run downloaded again");
    assert_eq!(sb.run_dirs().len(), 2);
}

#[test]
fn a_checksum_mismatch_stops_before_the_run_and_caches_nothing() {
    let server = FileServer::start("w.safetensors", resnet18_safetensors(5));
    let sb = Sandbox::new();
    let wrong = "0".repeat(64);
    sb.run(&tiny(&[
        "--pretrained",
        &server.url,
        "--pretrained-sha256",
        &wrong,
    ]))
    .assert_fails_with(&wrong)
    .assert_fails_with("--pretrained none");
    assert!(sb.run_dirs().is_empty(), "no run folder");
    let cached = models_cached(&sb);
    assert!(
        cached.iter().all(|n| n.ends_with(".lock")),
        "nothing but a lock file is cached: {cached:?}"
    );
}

#[test]
fn imagenet_weights_offline_fail_saying_where_to_put_them() {
    let sb = Sandbox::new();
    let runs = sb.runs();
    let mut cmd = sb.command();
    // A proxy that refuses connections: the download fails at once without leaving this machine.
    for var in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        cmd.env(var, "http://127.0.0.1:9");
    }
    let mut args = tiny(&["--pretrained", "imagenet"]);
    args.extend(["--out", runs.to_str().unwrap()]);
    let out = sb.run_with(cmd, &args);
    let expected = sb
        .cache()
        .join("models")
        .join("resnet18.tv_in1k.safetensors");
    out.assert_fails_with(expected.to_str().unwrap())
        .assert_fails_with("--pretrained none")
        .assert_fails_with("huggingface.co");
    assert!(sb.run_dirs().is_empty(), "no run folder");
}

#[test]
fn fine_tune_stops_between_its_fits_and_resumes_into_one_run_folder() {
    let body = resnet18_safetensors(6);
    let sha = sha256_hex(&body);
    let server = FileServer::start("w.safetensors", body);
    let sb = Sandbox::new();
    let out = sb.run(&tiny(&[
        "--fine-tune",
        "1",
        "--pretrained",
        &server.url,
        "--pretrained-sha256",
        &sha,
        "--mix",
        "none",
        "--stop-after",
        "1",
    ]));
    out.assert_ok();
    assert!(
        out.stdout
            .contains("fine_tune(1, freeze_epochs=1): 2 epoch(s)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("stopping after epoch 1 of 2"),
        "{}",
        out.stdout
    );
    // Stopped after the frozen fit: resuming runs the unfrozen one into the same folder.
    let run = &sb.run_dirs()[0];
    let again = sb.run(&["--resume", run.to_str().unwrap()]);
    again.assert_ok();
    assert!(again.stdout.contains("finished 2 of 2"), "{}", again.stdout);
    assert_eq!(sb.run_dirs().len(), 1);
    let (_, epochs) = csv(&run.join("metrics.csv"));
    assert_eq!(
        epochs.iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        ["0", "1"]
    );
    let (_, steps) = csv(&run.join("steps.csv"));
    assert_eq!(steps.len(), 24, "12 frozen steps and 12 unfrozen");
    // The frozen fit peaks at base_lr 2e-3 (pct_start 0.99: the last step is the peak's neighbour); the
    // unfrozen fit's head starts at base_lr/2/div = 1e-3/5.
    let lr = |i: usize| steps[i][2].parse::<f64>().unwrap();
    assert!(lr(11) > 1.9e-3 && lr(11) <= 2e-3, "{}", lr(11));
    assert!((lr(12) - 2e-4).abs() < 1e-9, "{}", lr(12));
    let c = config(run);
    assert_eq!(c["fine_tune"]["freeze_epochs"], 1);
    assert_eq!(c["fine_tune"]["base_lr"], 2e-3);
}

#[test]
fn lr_find_writes_its_plot_and_a_suggestion_and_no_run() {
    let sb = Sandbox::new();
    let png = sb.path().join("lr.png");
    let out = sb.run_with(
        sb.command(),
        &[
            "lr-find",
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
            "--num-it",
            "40",
            "--start-lr",
            "1e-5",
            "--end-lr",
            "100",
            "--out",
            png.to_str().unwrap(),
        ],
    );
    out.assert_ok();
    assert!(
        out.stdout.contains("suggested lr (valley): ") || out.stdout.contains("no suggestion"),
        "{}",
        out.stdout
    );
    let img = image::open(&png).expect("lr-find writes a PNG");
    assert!(img.width() >= 600 && img.height() >= 400);
    assert!(sb.run_dirs().is_empty(), "lr-find makes no run folder");
}

#[test]
fn predict_names_the_class_of_a_training_image() {
    // Two very different photos of the sample, learnt for a few epochs from scratch.
    let sb = Sandbox::new();
    let data = sb.path().join("two");
    std::fs::create_dir(&data).unwrap();
    for entry in std::fs::read_dir(sample_images()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("astronaut_") || name.starts_with("galaxy_") {
            std::fs::copy(&path, data.join(&name)).unwrap();
        }
    }
    sb.run(&[
        "--dataset",
        data.to_str().unwrap(),
        "--device",
        "cpu",
        "--bs",
        "4",
        "--resize",
        "40",
        "--size",
        "32",
        "--epochs",
        "4",
        "--lr",
        "3e-3",
        "--mix",
        "none",
        "--pretrained",
        "none",
    ])
    .assert_ok();
    let run = sb.run_dirs().pop().unwrap();
    let run_arg = run.to_str().unwrap();
    let image = data.join("astronaut_1.jpg");
    let out = sb.run_with(
        sb.command(),
        &[
            "predict",
            "--run",
            run_arg,
            image.to_str().unwrap(),
            data.to_str().unwrap(),
        ],
    );
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 41, "one line per image: {}", out.stdout);
    let first = lines[0];
    assert!(
        first.starts_with(&format!("{}: astronaut ", image.display())),
        "{first}"
    );
    // Two classes: the two probabilities printed sum to 1 (to the 4 decimals printed).
    let probs: Vec<f64> = first
        .split(": ")
        .nth(1)
        .unwrap()
        .split(", ")
        .map(|p| p.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(probs.len(), 2);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() <= 2e-4, "{probs:?}");
    assert!(probs[0] >= probs[1]);
    // Most images are named right after four epochs (39 of 40 when this test was written).
    let right = lines[1..]
        .iter()
        .filter(|l| {
            let (path, rest) = l.split_once(": ").unwrap();
            let label = Path::new(path).file_name().unwrap().to_string_lossy();
            label.starts_with(rest.split(' ').next().unwrap())
        })
        .count();
    assert!(right >= 30, "{right} of 40 right:\n{}", out.stdout);
    // A run folder that is not one is refused with a message.
    sb.run_with(
        sb.command(),
        &[
            "predict",
            "--run",
            sb.path().to_str().unwrap(),
            image.to_str().unwrap(),
        ],
    )
    .assert_fails_with("config.json");
}

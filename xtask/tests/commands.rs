//! End to end: `cargo xtask preview` writes a captioned 3x3 PNG of a mixed sample batch,
//! `download` fetches once and is instant after, and each command's error paths fail fast with
//! their message (`train`'s checks run before anything is built).

mod common;

use std::sync::atomic::Ordering;

use common::*;

/// tile side when the items are 64 px: mix-viz scales tiles up to its 96 px minimum.
const TILE: u32 = 96;
const MARGIN: u32 = 8;

fn preview(sb: &Sandbox, mix: &str, seed: &str, out: &str) -> Run {
    let out = sb.path().join(out);
    sb.run(&[
        "preview",
        "--mix",
        mix,
        "--dataset",
        "sample",
        "--seed",
        seed,
        "--resize",
        "64",
        "--bs",
        "16",
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn preview_writes_a_captioned_3x3_grid_of_a_mixed_batch() {
    let sb = Sandbox::new();
    let run = preview(&sb, "mixup", "3", "grid/mixup.png");
    run.assert_ok();
    let png = sb.path().join("grid/mixup.png");
    let img = image::open(&png).expect("a PNG").to_rgb8();
    assert_eq!(img.width(), MARGIN + 3 * (TILE + MARGIN), "three columns");
    assert!(img.height() > 3 * TILE, "three rows with captions");
    // Each tile's centre is picture, not white background.
    for row in 0..3u32 {
        for col in 0..3u32 {
            let x = MARGIN + col * (TILE + MARGIN) + TILE / 2;
            let first_row_y = MARGIN + TILE / 2;
            let y = first_row_y + row * (img.height() - MARGIN) / 3;
            let p = img.get_pixel(x, y).0;
            assert_ne!(
                p,
                [255, 255, 255],
                "tile ({row}, {col}) at ({x}, {y}) is blank"
            );
        }
    }
    let caps = captions(&run.stdout);
    assert_eq!(caps.len(), 9, "nine captions:\n{}", run.stdout);
    for (own, p, other, q) in &caps {
        assert!(SAMPLE_CLASSES.contains(&own.as_str()) && SAMPLE_CLASSES.contains(&other.as_str()));
        assert_eq!(p + q, 100);
        // fastai's MixUp keeps at least half of each image: lambda = max(l, 1 - l).
        assert!(*p >= 50, "own weight {p}% below half");
    }
    // Same seed, same picture; another seed, another batch.
    preview(&sb, "mixup", "3", "again.png").assert_ok();
    assert_eq!(
        std::fs::read(&png).unwrap(),
        std::fs::read(sb.path().join("again.png")).unwrap()
    );
    preview(&sb, "mixup", "4", "other.png").assert_ok();
    assert_ne!(
        std::fs::read(&png).unwrap(),
        std::fs::read(sb.path().join("other.png")).unwrap()
    );
}

#[test]
fn cutmix_preview_shares_one_area_weight_across_the_batch() {
    let sb = Sandbox::new();
    let run = preview(&sb, "cutmix", "0", "cutmix.png");
    run.assert_ok();
    assert!(run.stdout.contains("CutMix (alpha 1)"), "{}", run.stdout);
    let caps = captions(&run.stdout);
    assert_eq!(caps.len(), 9);
    // fastai's CutMix draws one box per batch, so every item has the same corrected lambda.
    assert!(caps.iter().all(|c| c.1 == caps[0].1), "{caps:?}");
    image::open(sb.path().join("cutmix.png")).expect("a PNG");
}

#[test]
fn preview_errors_name_what_is_wrong() {
    let sb = Sandbox::new();
    let out = sb.run(&["preview", "--mixx", "cutmix"]);
    out.assert_fails_with("unexpected argument '--mixx' found")
        .assert_fails_with("a similar argument exists: '--mix'");
    assert!(
        out.stderr.contains("try '--help'"),
        "the error points at the help: {}",
        out.stderr
    );
    sb.run(&["preview", "--mix", "none"])
        .assert_fails_with("invalid value 'none' for '--mix <MIX>'")
        .assert_fails_with("[possible values: mixup, cutmix]");
    sb.run(&["preview", "--alpha", "-1", "--dataset", "sample"])
        .assert_fails_with("--alpha -1: expected a finite number > 0");
    let empty = sb.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    sb.run(&["preview", "--dataset", empty.to_str().unwrap()])
        .assert_fails_with("found no images in");
    std::fs::copy(sample_images().join("cat_1.jpg"), empty.join("IMG0001.jpg")).unwrap();
    sb.run(&["preview", "--dataset", empty.to_str().unwrap()])
        .assert_fails_with("labels none of the 1 images");
    assert!(!sb.path().join("preview.png").exists(), "nothing written");
}

#[test]
fn download_prints_the_folder_once_fetched_and_is_instant_after() {
    let sb = Sandbox::new();
    let server = FileServer::start(tgz(&[
        ("images/cat_1.jpg", b"not really"),
        ("README", b"hi"),
    ]));
    let url = server.url("tiny-set.tgz");
    let first = sb.run(&["download", "--dataset", &url]);
    first.assert_ok();
    // A URL outside the known table is cached under a folder keyed by the URL.
    let source = mix_fetch::Source::Url(url.clone());
    let cfg = mix_fetch::FetchConfig::in_dir(sb.cache());
    let folder = mix_fetch::dataset_paths(&source, &cfg).unwrap().data;
    assert_eq!(first.stdout.trim(), folder.display().to_string());
    assert_eq!(
        std::fs::read(folder.join("images/cat_1.jpg")).unwrap(),
        b"not really"
    );
    let requests = server.requests.load(Ordering::SeqCst);
    assert!(requests >= 1);
    let second = sb.run(&["download", "--dataset", &url]);
    second.assert_ok();
    assert_eq!(second.stdout, first.stdout);
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        requests,
        "the second run asks the server nothing"
    );
}

#[test]
fn download_offline_with_nothing_cached_says_what_to_do() {
    let sb = Sandbox::new();
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let mut cmd = sb.command();
    // The real Oxford-IIIT Pet URL through a proxy that refuses connections: offline, hermetically.
    cmd.env("HTTPS_PROXY", &dead).env("https_proxy", &dead);
    let out = sb.run_with(cmd, &["download"]);
    out.assert_fails_with(
        "could not download https://s3.amazonaws.com/fast-ai-imageclas/oxford-iiit-pet.tgz",
    );
    out.assert_fails_with("put the archive by hand at");
    assert!(!sb.cache().join("data/oxford-iiit-pet").exists());
    sb.run(&["download", "--dataset", "sample"])
        .assert_fails_with("expected pets, another known name or a .tgz URL");
    sb.run(&["download", "--datset", "pets"])
        .assert_fails_with("unexpected argument '--datset' found");
}

#[test]
fn train_checks_options_and_data_before_building_anything() {
    let sb = Sandbox::new();
    let out = sb.run(&["train", "--dataset", "sample", "--lrr", "1e-2"]);
    out.assert_fails_with("unexpected argument '--lrr' found");
    assert!(
        out.stderr.contains("try '--help'"),
        "the error points at the help: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("cargo run"),
        "nothing was built or run: {}",
        out.stderr
    );
    sb.run(&["train", "--device", "tpu"])
        .assert_fails_with("invalid value 'tpu' for '--device <auto|cpu|cuda|cuda:N>': expected auto, cpu, cuda or cuda:N");
    sb.run(&["train", "--mix", "cutmix", "--alpha", "nan"])
        .assert_fails_with("--alpha NaN: expected a finite number > 0");
    let empty = sb.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = sb.run(&["train", "--dataset", empty.to_str().unwrap()]);
    out.assert_fails_with("found no images in");
    assert!(!out.stderr.contains("cargo run"), "{}", out.stderr);
    sb.run(&["train", "--resume", "runs/none"])
        .assert_fails_with("no config.json there");
    assert!(!sb.path().join("runs").exists());
}

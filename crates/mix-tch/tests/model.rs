//! The ResNet18 body against torchvision, fastai's head and init, pretrained loading and freezing.

mod common;

use common::{max_abs_diff, test_device};
use mix_tch::model::{concat_pool, ParamKind, BODY_FEATURES, HEAD_HIDDEN};
use mix_tch::tch::{Device, Kind, Tensor};
use mix_tch::VisionModel;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn model(n_classes: usize, seed: u64) -> VisionModel {
    VisionModel::new(
        n_classes,
        test_device(),
        &mut ChaCha8Rng::seed_from_u64(seed),
    )
    .unwrap()
}

fn read(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .collect()
}

/// torchvision's resnet18 weights and outputs, written once per test run by
/// tests/python/torchvision_resnet18.py.
fn torchvision_oracle(_dir: &Path) -> (std::path::PathBuf, HashMap<String, Tensor>) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mix-tch-torchvision-oracle");
        std::fs::create_dir_all(&dir).unwrap();
        common::run_python(
            "torchvision_resnet18.py",
            &[dir.as_os_str(), std::ffi::OsStr::new("3")],
        );
        dir
    });
    (
        dir.join("weights.safetensors"),
        read(&dir.join("io.safetensors")),
    )
}

#[test]
fn body_matches_torchvision() {
    let dir = tempfile::tempdir().unwrap();
    let (weights, io) = torchvision_oracle(dir.path());
    let device = test_device();
    let mut m = model(10, 0);
    m.load_body(&weights).unwrap();
    let x = io["x"].to_device(device);
    // cuDNN convolutions use TF32 on Ampere and later GPUs by default; the float64 check below is exact.
    let tol = if device.is_cuda() { 5e-2 } else { 1e-4 };
    let eval = tch_no_grad(|| m.body_forward(&x, false).unwrap());
    assert_eq!(eval.size(), vec![2, BODY_FEATURES, 2, 2]);
    let d = max_abs_diff(&eval, &io["eval"]);
    assert!(d <= tol, "eval-mode body differs from torchvision by {d}");
    let train = tch_no_grad(|| m.body_forward(&x, true).unwrap());
    let d = max_abs_diff(&train, &io["train"]);
    assert!(d <= tol, "train-mode body differs from torchvision by {d}");
    let vars = m.variables();
    for name in [
        "bn1.running_mean",
        "bn1.running_var",
        "layer4.1.bn2.running_var",
    ] {
        let d = max_abs_diff(&vars[name], &io[name]);
        assert!(
            d <= tol,
            "{name} after a train-mode pass differs from torchvision by {d}"
        );
    }
}

#[test]
fn body_matches_torchvision_in_float64() {
    let dir = tempfile::tempdir().unwrap();
    let (weights, io) = torchvision_oracle(dir.path());
    let mut m = model(10, 0);
    m.load_body(&weights).unwrap();
    m.set_kind(Kind::Double);
    let x = io["x"].to_kind(Kind::Double).to_device(test_device());
    let eval = tch_no_grad(|| m.body_forward(&x, false).unwrap());
    let d = max_abs_diff(&eval, &io["eval64"]);
    assert!(
        d <= 1e-9,
        "float64 eval-mode body differs from torchvision by {d}"
    );
}

fn tch_no_grad<T>(f: impl FnOnce() -> T) -> T {
    mix_tch::tch::no_grad(f)
}

#[test]
fn head_has_fastais_layers_and_init() {
    let m = model(37, 1);
    let head: Vec<(&str, Vec<i64>, ParamKind)> = m
        .params()
        .iter()
        .filter(|p| !p.in_body)
        .map(|p| (p.name.as_str(), p.tensor.size(), p.kind))
        .collect();
    assert_eq!(
        head,
        vec![
            ("head.2.weight", vec![2 * BODY_FEATURES], ParamKind::Norm),
            ("head.2.bias", vec![2 * BODY_FEATURES], ParamKind::Norm),
            (
                "head.4.weight",
                vec![HEAD_HIDDEN, 2 * BODY_FEATURES],
                ParamKind::Weight
            ),
            ("head.6.weight", vec![HEAD_HIDDEN], ParamKind::Norm),
            ("head.6.bias", vec![HEAD_HIDDEN], ParamKind::Norm),
            ("head.8.weight", vec![37, HEAD_HIDDEN], ParamKind::Weight),
        ]
    );
    let vars = m.variables();
    for bn in ["head.2", "head.6"] {
        let w = &vars[&format!("{bn}.weight")];
        let b = &vars[&format!("{bn}.bias")];
        assert_eq!(w.min().double_value(&[]), 1.0);
        assert_eq!(w.max().double_value(&[]), 1.0);
        assert!(
            (b.min().double_value(&[]) - 1e-3).abs() < 1e-9
                && (b.max().double_value(&[]) - 1e-3).abs() < 1e-9
        );
    }
    // Kaiming normal, fan_in, gain sqrt(2): std sqrt(2 / fan_in), mean 0.
    for (name, fan_in) in [("head.4.weight", 1024.0f64), ("head.8.weight", 512.0)] {
        let w = vars[name].to_kind(Kind::Double);
        let (std, mean) = (
            w.std(true).double_value(&[]),
            w.mean(Kind::Double).double_value(&[]),
        );
        let want = (2.0 / fan_in).sqrt();
        assert!(
            (std / want - 1.0).abs() < 0.05,
            "{name}: std {std}, want {want}"
        );
        assert!(mean.abs() < 0.1 * want, "{name}: mean {mean}");
    }
    // torchvision's body init: convs kaiming normal with fan_out, BatchNorm 1 and 0.
    let w = vars["layer3.0.conv2.weight"].to_kind(Kind::Double);
    let want = (2.0f64 / (256.0 * 9.0)).sqrt();
    assert!((w.std(true).double_value(&[]) / want - 1.0).abs() < 0.05);
    assert_eq!(
        vars["layer2.1.bn1.weight"]
            .mean(Kind::Double)
            .double_value(&[]),
        1.0
    );
    assert_eq!(vars["layer2.1.bn1.bias"].abs().max().double_value(&[]), 0.0);
    // No linear has a bias; every body name is torchvision's.
    assert!(!vars.keys().any(|k| k.starts_with("head.4.bias")
        || k.starts_with("head.8.bias")
        || k.starts_with("fc.")));
    // torchvision's state_dict without fc and num_batches_tracked: 20 convs and 20 BatchNorms of 4 tensors.
    assert_eq!(
        vars.keys().filter(|k| !k.starts_with("head.")).count(),
        20 + 20 * 4
    );
}

#[test]
fn forward_gives_logits_per_class() {
    let m = model(5, 2);
    let x = Tensor::randn([3, 3, 32, 32], (Kind::Float, test_device()));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let train = m.forward(&x, Some(&mut rng)).unwrap();
    assert_eq!(train.size(), vec![3, 5]);
    let eval = tch_no_grad(|| m.forward(&x, None).unwrap());
    assert_eq!(eval.size(), vec![3, 5]);
    let err = m
        .forward(
            &Tensor::zeros([3, 1, 32, 32], (Kind::Float, test_device())),
            None,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("expected images shaped (batch, 3, height, width)"),
        "{err}"
    );
}

#[test]
fn dropout_masks_come_from_the_rng() {
    let m = model(4, 3);
    let x = Tensor::randn([4, 3, 32, 32], (Kind::Float, test_device()));
    let run = |seed| {
        tch_no_grad(|| {
            m.head_forward(
                &m.body_forward(&x, false).unwrap(),
                Some(&mut ChaCha8Rng::seed_from_u64(seed)),
            )
            .unwrap()
        })
    };
    assert_eq!(max_abs_diff(&run(1), &run(1)), 0.0);
    assert!(max_abs_diff(&run(1), &run(2)) > 0.0);
    let masked = mix_tch::model::dropout(
        &Tensor::ones([1000], (Kind::Float, Device::Cpu)),
        0.25,
        Some(&mut ChaCha8Rng::seed_from_u64(0)),
    )
    .unwrap();
    let zeros = masked.eq(0.0).sum(Kind::Int64).int64_value(&[]);
    assert!(
        (200..300).contains(&zeros),
        "{zeros} of 1000 dropped at p=0.25"
    );
    let kept = masked.max().double_value(&[]);
    assert!((kept - 1.0 / 0.75).abs() < 1e-6);
}

#[test]
fn concat_pool_is_max_then_average() {
    let x = Tensor::randn([2, 4, 3, 5], (Kind::Float, test_device()));
    let y = concat_pool(&x);
    assert_eq!(y.size(), vec![2, 8]);
    let max = x.amax([2, 3], false);
    let avg = x.mean_dim([2i64, 3].as_slice(), false, Kind::Float);
    assert!(max_abs_diff(&y.narrow(1, 0, 4), &max) <= 1e-6);
    assert!(max_abs_diff(&y.narrow(1, 4, 4), &avg) <= 1e-6);
}

#[test]
fn pretrained_loading_freezes_the_body_but_not_batchnorm() {
    let dir = tempfile::tempdir().unwrap();
    let (weights, _) = torchvision_oracle(dir.path());
    let mut m = model(3, 4);
    m.load_pretrained(&weights).unwrap();
    assert!(m.is_frozen());
    let file = read(&weights);
    let vars = m.variables();
    assert_eq!(
        max_abs_diff(
            &vars["layer1.0.conv1.weight"],
            &file["layer1.0.conv1.weight"]
        ),
        0.0
    );
    assert_eq!(
        max_abs_diff(
            &vars["layer3.1.bn2.running_var"],
            &file["layer3.1.bn2.running_var"]
        ),
        0.0
    );
    for p in m.params() {
        let want = !p.in_body || p.kind == ParamKind::Norm;
        assert_eq!(
            p.tensor.requires_grad(),
            want,
            "{} trainable should be {want}",
            p.name
        );
    }
    m.unfreeze();
    assert!(m.params().iter().all(|p| p.tensor.requires_grad()));
}

#[test]
fn pretrained_files_that_do_not_fit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (weights, _) = torchvision_oracle(dir.path());
    let mut file: Vec<(String, Tensor)> = Tensor::read_safetensors(&weights).unwrap();
    // One tensor missing.
    let missing = dir.path().join("missing.safetensors");
    let kept: Vec<(String, Tensor)> = file
        .iter()
        .filter(|(n, _)| n != "layer2.0.downsample.1.running_mean")
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    Tensor::write_safetensors(&kept, &missing).unwrap();
    let err = model(3, 5)
        .load_pretrained(&missing)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 missing (first: layer2.0.downsample.1.running_mean)"),
        "{err}"
    );
    // One tensor of the wrong shape.
    for (n, t) in file.iter_mut() {
        if n == "conv1.weight" {
            *t = Tensor::zeros([64, 3, 3, 3], (Kind::Float, Device::Cpu));
        }
    }
    let wrong = dir.path().join("wrong.safetensors");
    Tensor::write_safetensors(&file, &wrong).unwrap();
    let err = model(3, 5).load_pretrained(&wrong).unwrap_err().to_string();
    assert!(
        err.contains("conv1.weight: expected shape [64, 3, 7, 7], found [64, 3, 3, 3]"),
        "{err}"
    );
    // Not a safetensors file at all.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not safetensors").unwrap();
    let err = model(3, 5).load_pretrained(&junk).unwrap_err().to_string();
    assert!(err.contains("cannot read it as safetensors"), "{err}");
}

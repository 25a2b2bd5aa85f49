//! aug_transforms against fastai's batch-transform code (restated in tests/python/fastai_aug.py), and the
//! distribution of the draws.

mod common;

use common::{max_abs_diff, test_device};
use mix_tch::augment::{denormalize, normalize, IMAGENET_MEAN, IMAGENET_STD};
use mix_tch::tch::{Device, Kind, Tensor};
use mix_tch::{aug_transforms, AugDraw};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

fn f64s(v: impl IntoIterator<Item = f64>) -> Tensor {
    Tensor::from_slice(&v.into_iter().collect::<Vec<f64>>())
}

/// Runs the fastai oracle on `x` (CPU) with `draw`.
fn fastai(x: &Tensor, draw: &AugDraw, size: (i64, i64), valid: bool) -> Tensor {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (
        dir.path().join("in.safetensors"),
        dir.path().join("out.safetensors"),
    );
    let named: Vec<(&str, Tensor)> = vec![
        ("x", x.to_device(Device::Cpu).contiguous()),
        (
            "flip",
            f64s(draw.flip.iter().map(|&f| if f { 1.0 } else { 0.0 })),
        ),
        ("rotate", f64s(draw.rotate_deg.iter().copied())),
        ("zoom", f64s(draw.zoom.iter().copied())),
        ("col", f64s(draw.zoom_center.iter().map(|c| c.0))),
        ("row", f64s(draw.zoom_center.iter().map(|c| c.1))),
        ("warp_x", f64s(draw.warp.iter().map(|w| w.0))),
        ("warp_y", f64s(draw.warp.iter().map(|w| w.1))),
        ("brightness", f64s(draw.brightness.iter().copied())),
        ("contrast", f64s(draw.contrast.iter().copied())),
        ("size", Tensor::from_slice(&[size.0, size.1])),
        ("valid", Tensor::from_slice(&[valid as i64])),
    ];
    Tensor::write_safetensors(&named, &inp).unwrap();
    common::run_python("fastai_aug.py", &[inp.as_os_str(), out.as_os_str()]);
    let t: HashMap<String, Tensor> = Tensor::read_safetensors(&out)
        .unwrap()
        .into_iter()
        .collect();
    t["y"].shallow_clone()
}

fn batch(n: i64, h: i64, w: i64) -> Tensor {
    // Smooth images with structure in both directions, values inside (0, 1).
    let ys = Tensor::arange(h, (Kind::Float, Device::Cpu)).view([1, 1, h, 1]) / h as f64;
    let xs = Tensor::arange(w, (Kind::Float, Device::Cpu)).view([1, 1, 1, w]) / w as f64;
    let k = Tensor::arange(n * 3, (Kind::Float, Device::Cpu)).view([n, 3, 1, 1]);
    (((&ys * 7.0 + &k).sin() * (&xs * 5.0 - &k * 0.3).cos()) * 0.45 + 0.5).contiguous()
}

#[test]
fn training_transform_matches_fastai() {
    let aug = aug_transforms(32);
    let x = batch(8, 40, 48);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut draw = aug.draw(8, &mut rng);
    // Make sure every part is exercised in this batch.
    draw.flip[0] = true;
    draw.rotate_deg[1] = 9.0;
    draw.zoom[2] = 1.08;
    draw.warp[3] = (0.15, -0.12);
    draw.brightness[4] = 0.58;
    draw.contrast[5] = 0.82;
    let want = fastai(&x, &draw, (32, 32), false);
    let got = aug.apply(&x.to_device(test_device()), &draw).unwrap();
    assert_eq!(got.size(), vec![8, 3, 32, 32]);
    let diff = max_abs_diff(&got, &want);
    assert!(diff <= 1e-4, "differs from fastai by {diff}");
}

#[test]
fn validation_resize_matches_fastai() {
    let aug = aug_transforms(24);
    let x = batch(3, 32, 32);
    let want = fastai(&x, &AugDraw::identity(3), (24, 24), true);
    let got = aug.apply_valid(&x.to_device(test_device())).unwrap();
    assert!(max_abs_diff(&got, &want) <= 1e-5);
}

#[test]
fn identity_draw_at_the_same_size_changes_nothing() {
    let aug = mix_tch::AugTransforms {
        max_lighting: 0.0,
        ..aug_transforms(20)
    };
    let x = batch(2, 20, 20).to_device(test_device());
    let got = aug.apply(&x, &AugDraw::identity(2)).unwrap();
    assert!(max_abs_diff(&got, &x) <= 1e-5);
    let got = aug.apply_valid(&x).unwrap();
    assert!(max_abs_diff(&got, &x) <= 1e-5);
    // A flip is exact: bilinear sampling at mirrored pixel centres.
    let mut d = AugDraw::identity(2);
    d.flip = vec![true, false];
    let got = aug.apply(&x, &d).unwrap();
    assert!(max_abs_diff(&got.get(0), &x.get(0).flip([-1])) <= 1e-5);
    assert!(max_abs_diff(&got.get(1), &x.get(1)) <= 1e-5);
}

#[test]
fn draws_follow_fastais_distributions() {
    let aug = aug_transforms(224);
    let n = 20_000;
    let d = aug.draw(n, &mut ChaCha8Rng::seed_from_u64(3));
    let frac = |v: usize| v as f64 / n as f64;
    let near = |x: f64, want: f64| (x - want).abs() < 0.02;
    assert!(near(frac(d.flip.iter().filter(|&&f| f).count()), 0.5));
    assert!(near(
        frac(d.rotate_deg.iter().filter(|&&r| r == 0.0).count()),
        0.25
    ));
    assert!(d.rotate_deg.iter().all(|r| r.abs() <= 10.0));
    assert!(near(
        frac(d.zoom.iter().filter(|&&z| z == 1.0).count()),
        0.25
    ));
    assert!(d.zoom.iter().all(|z| (1.0..=1.1).contains(z)));
    assert!(d
        .zoom_center
        .iter()
        .all(|&(c, r)| (0.0..1.0).contains(&c) && (0.0..1.0).contains(&r)));
    assert!(near(
        frac(d.warp.iter().filter(|w| w.0 == 0.0).count()),
        0.25
    ));
    assert!(near(
        frac(d.warp.iter().filter(|w| w.1 == 0.0).count()),
        0.25
    ));
    assert!(near(
        frac(d.warp.iter().filter(|w| w.0 == 0.0 && w.1 == 0.0).count()),
        0.0625
    ));
    assert!(d.warp.iter().all(|w| w.0.abs() <= 0.2 && w.1.abs() <= 0.2));
    assert!(near(
        frac(d.brightness.iter().filter(|&&b| b == 0.5).count()),
        0.25
    ));
    assert!(d.brightness.iter().all(|b| (0.4..=0.6).contains(b)));
    assert!(near(
        frac(d.contrast.iter().filter(|&&c| c == 1.0).count()),
        0.25
    ));
    assert!(d
        .contrast
        .iter()
        .all(|c| (0.8 - 1e-12..=1.25 + 1e-12).contains(c)));
    // Contrast is log-uniform: as many draws below 1 as above.
    let below = d.contrast.iter().filter(|&&c| c < 1.0).count();
    assert!(near(frac(below), 0.375));
}

#[test]
fn draws_are_reproducible_from_the_seed() {
    let aug = aug_transforms(64);
    let a = aug.draw(16, &mut ChaCha8Rng::seed_from_u64(5));
    let b = aug.draw(16, &mut ChaCha8Rng::seed_from_u64(5));
    let c = aug.draw(16, &mut ChaCha8Rng::seed_from_u64(6));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn normalize_round_trips() {
    let x = batch(2, 8, 8).to_device(test_device());
    let y = normalize(&x, IMAGENET_MEAN, IMAGENET_STD);
    let back = denormalize(&y, IMAGENET_MEAN, IMAGENET_STD);
    assert!(max_abs_diff(&back, &x) <= 1e-6);
    let red = (x.get(0).get(0) - 0.485) / 0.229;
    assert!(max_abs_diff(&y.get(0).get(0), &red) <= 1e-6);
}

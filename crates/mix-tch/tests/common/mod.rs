//! Shared test helpers: the device every test runs on, small generated image sets, the torch Python, and
//! proptest strategies.
#![allow(dead_code)]

use mix_core::cutmix::BBox;
use mix_core::{MixParams, PixelMix, SampleMix};
use mix_tch::tch::{Cuda, Device, Kind, Tensor};
use mix_tch::{InMemory, LearnerConfig};
use ndarray::Array4;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

/// CUDA when libtorch sees it, else the CPU: every test runs on both kinds of machine.
pub fn test_device() -> Device {
    if Cuda::is_available() {
        Device::Cuda(0)
    } else {
        Device::Cpu
    }
}

/// The same choice as a learner setting.
pub fn test_device_choice() -> mix_tch::DeviceChoice {
    match test_device() {
        Device::Cuda(i) => mix_tch::DeviceChoice::Cuda(i),
        _ => mix_tch::DeviceChoice::Cpu,
    }
}

/// `n` RGB images `size` x `size` of `n_classes` classes that a network separates quickly: class `k` has a
/// colour and a stripe direction of its own, plus seeded noise. Labels cycle through the classes.
pub fn striped_images(
    n: usize,
    n_classes: usize,
    size: usize,
    seed: u64,
) -> (Array4<u8>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let labels: Vec<usize> = (0..n).map(|i| i % n_classes).collect();
    let mut images = Array4::<u8>::zeros((n, 3, size, size));
    for (i, &k) in labels.iter().enumerate() {
        for y in 0..size {
            for x in 0..size {
                let stripe = if k % 2 == 0 { (y / 4) % 2 } else { (x / 4) % 2 } as f64;
                for c in 0..3 {
                    let base = if c == k % 3 { 170.0 } else { 60.0 };
                    let v = base + 60.0 * stripe + rng.gen_range(-20.0..20.0);
                    images[[i, c, y, x]] = v.clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    (images, labels)
}

/// A learner configuration for fast tests: `size` x `size` aug_transforms, no console output, the test
/// device.
pub fn small_config(n_classes: usize, size: i64) -> LearnerConfig {
    let mut cfg = LearnerConfig::new(n_classes);
    cfg.aug = Some(mix_tch::aug_transforms(size));
    cfg.progress = false;
    cfg.device = test_device_choice();
    cfg.seed = 7;
    cfg
}

/// Train and valid sources over striped images: `n_train` shuffled with drop_last, `n_valid` in order.
pub fn small_data(
    n_train: usize,
    n_valid: usize,
    n_classes: usize,
    bs: usize,
) -> (InMemory, InMemory) {
    let (ti, tl) = striped_images(n_train, n_classes, 32, 1);
    let (vi, vl) = striped_images(n_valid, n_classes, 32, 2);
    (
        InMemory::new(ti, tl, bs, Some(3), true).unwrap(),
        InMemory::new(vi, vl, bs, None, false).unwrap(),
    )
}

/// The Python with torch 2.11.0 and torchvision (see mix-test-support).
pub fn torch_python() -> PathBuf {
    mix_test_support::torch_python("torch 2.11.0, torchvision 0.26.0 and safetensors")
}

/// Runs `tests/python/<script>` with the torch Python and `args`, panicking with its output on failure.
pub fn run_python(script: &str, args: &[&std::ffi::OsStr]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = std::process::Command::new(torch_python())
        .arg(&script)
        .args(args)
        .env("CUDA_VISIBLE_DEVICES", "")
        .output()
        .expect("starting the torch Python");
    assert!(
        out.status.success(),
        "{} failed:\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Largest absolute difference between two tensors (moved to the CPU as f64).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    let a = a.to_device(Device::Cpu).to_kind(Kind::Double);
    let b = b.to_device(Device::Cpu).to_kind(Kind::Double);
    (a - b).abs().max().double_value(&[])
}

/// An f32 ndarray batch as a tensor on `device`.
pub fn to_tensor(x: &Array4<f32>, device: Device) -> Tensor {
    let x = x.as_standard_layout();
    let (n, c, h, w) = x.dim();
    Tensor::from_slice(x.as_slice().unwrap())
        .view([n as i64, c as i64, h as i64, w as i64])
        .to_device(device)
}

/// A tensor back to an f32 ndarray batch.
pub fn to_array(t: &Tensor) -> Array4<f32> {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let s = t.size();
    let v: Vec<f32> = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
    Array4::from_shape_vec(
        (s[0] as usize, s[1] as usize, s[2] as usize, s[3] as usize),
        v,
    )
    .unwrap()
}

// ---- proptest strategies ----

/// A batch shape (N, C, H, W) in small ranges.
pub fn batch_shape() -> impl Strategy<Value = (usize, usize, usize, usize)> {
    (1usize..6, 1usize..4, 1usize..9, 1usize..9)
}

fn perm_of(n: usize) -> impl Strategy<Value = Vec<usize>> {
    Just((0..n).collect::<Vec<usize>>()).prop_shuffle()
}

fn bbox_in(h: usize, w: usize) -> impl Strategy<Value = BBox> {
    (0..=w, 0..=w, 0..=h, 0..=h).prop_map(|(a, b, c, d)| BBox {
        x1: a.min(b),
        x2: a.max(b),
        y1: c.min(d),
        y2: c.max(d),
    })
}

fn sample_mix(h: usize, w: usize) -> impl Strategy<Value = SampleMix> {
    prop_oneof![
        Just(SampleMix::Keep),
        (0.0f32..=1.0).prop_map(SampleMix::Blend),
        bbox_in(h, w).prop_map(SampleMix::Paste),
    ]
}

/// Valid mix params of every pixel kind for a batch of shape `(n, _, h, w)`.
pub fn mix_params(n: usize, h: usize, w: usize) -> impl Strategy<Value = MixParams> {
    let pixels = prop_oneof![
        Just(PixelMix::Identity),
        proptest::collection::vec(0.0f32..=1.0, n).prop_map(PixelMix::Blend),
        bbox_in(h, w).prop_map(move |b| PixelMix::Boxes(vec![b; n])),
        proptest::collection::vec(bbox_in(h, w), n).prop_map(PixelMix::Boxes),
        proptest::collection::vec(sample_mix(h, w), n).prop_map(PixelMix::PerSample),
    ];
    (
        proptest::collection::vec(0.0f32..=1.0, n),
        perm_of(n),
        pixels,
    )
        .prop_map(|(lam, perm, pixels)| MixParams { lam, perm, pixels })
}

/// Pixel values for a batch of `len` floats.
pub fn pixels(len: usize) -> impl Strategy<Value = Vec<f32>> {
    proptest::collection::vec(-3.0f32..3.0, len)
}

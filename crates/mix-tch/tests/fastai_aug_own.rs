//! aug_transforms(size=224) against fastai's OWN batch transforms (tests/python/fastai_aug_own.py runs
//! `aug_transforms` as `setup_aug_tfms` composes it, with every draw and do-mask pinned) on real photos
//! (data/sample, `Resize(256, method='crop')` centre crops), 256 -> 224 on the CPU, training and validation.

mod oracle_common;

use mix_data::{load_item, CropPos};
use mix_tch::tch::{Device, Kind, Tensor};
use mix_tch::{aug_transforms, AugDraw};
use oracle_common::{max_abs_diff, read, run_fastai};
use std::path::PathBuf;

const SIZE: i64 = 224;
const PHOTOS: [&str; 6] = [
    "astronaut_1.jpg",
    "cat_1.jpg",
    "coffee_19.jpg",
    "galaxy_1.jpg",
    "retina_19.jpg",
    "rocket_1.jpg",
];

/// The photos as fastai's item transform leaves them (256 x 256 centre crops), as floats in [0, 1].
fn photos() -> Tensor {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/images");
    let items: Vec<Tensor> = PHOTOS
        .iter()
        .map(|f| {
            let a = load_item(&dir.join(f), 256, CropPos::CENTER)
                .unwrap_or_else(|e| panic!("cannot load data/sample/images/{f}: {e}"));
            let v: Vec<u8> = a.iter().copied().collect();
            Tensor::from_slice(&v).view([3, 256, 256])
        })
        .collect();
    Tensor::stack(&items, 0).to_kind(Kind::Float) / 255.0
}

/// One sample's draw before masking, and whether each transform is applied (fastai's do-masks).
struct Raw {
    flip: bool,
    rotate: (f64, bool),
    zoom: (f64, bool),
    center: (f64, f64),
    warp_x: (f64, bool),
    warp_y: (f64, bool),
    brightness: (f64, bool),
    contrast: (f64, bool),
}

fn raw_draws(warp: bool) -> Vec<Raw> {
    let r = |flip,
             rotate,
             zoom,
             center,
             warp_x: (f64, bool),
             warp_y: (f64, bool),
             brightness,
             contrast| Raw {
        flip,
        rotate,
        zoom,
        center,
        warp_x: (warp_x.0, warp_x.1 && warp),
        warp_y: (warp_y.0, warp_y.1 && warp),
        brightness,
        contrast,
    };
    vec![
        r(
            true,
            (8.5, true),
            (1.08, true),
            (0.1, 0.7),
            (0.15, true),
            (-0.1, true),
            (0.58, true),
            (0.82, true),
        ),
        r(
            false,
            (-9.7, true),
            (1.03, true),
            (0.9, 0.2),
            (-0.2, true),
            (0.18, false),
            (0.41, true),
            (1.2, false),
        ),
        r(
            true,
            (3.0, false),
            (1.1, true),
            (0.5, 0.5),
            (0.05, false),
            (0.2, true),
            (0.5, true),
            (1.25, true),
        ),
        r(
            false,
            (-2.2, true),
            (1.04, false),
            (0.3, 0.8),
            (0.1, true),
            (-0.05, true),
            (0.6, false),
            (0.9, true),
        ),
        r(
            true,
            (10.0, true),
            (1.06, true),
            (0.0, 0.99),
            (-0.12, true),
            (0.07, true),
            (0.45, true),
            (0.8, true),
        ),
        r(
            true,
            (-6.0, true),
            (1.09, true),
            (0.99, 0.0),
            (0.19, false),
            (-0.2, true),
            (0.52, true),
            (1.1, true),
        ),
    ]
}

/// What mix-tch's `AugTransforms::draw` would have produced for these draws and masks.
fn aug_draw(raw: &[Raw]) -> AugDraw {
    let pick = |(v, on): (f64, bool), neutral: f64| if on { v } else { neutral };
    AugDraw {
        flip: raw.iter().map(|r| r.flip).collect(),
        rotate_deg: raw.iter().map(|r| pick(r.rotate, 0.0)).collect(),
        zoom: raw.iter().map(|r| pick(r.zoom, 1.0)).collect(),
        zoom_center: raw.iter().map(|r| r.center).collect(),
        warp: raw
            .iter()
            .map(|r| (pick(r.warp_x, 0.0), pick(r.warp_y, 0.0)))
            .collect(),
        brightness: raw.iter().map(|r| pick(r.brightness, 0.5)).collect(),
        contrast: raw.iter().map(|r| pick(r.contrast, 1.0)).collect(),
    }
}

fn f64s(v: impl Iterator<Item = f64>) -> Tensor {
    Tensor::from_slice(&v.collect::<Vec<f64>>())
}

fn case_tensors(name: &str, x: &Tensor, raw: Option<&[Raw]>) -> Vec<(String, Tensor)> {
    let mut t = vec![
        (format!("{name}.x"), x.shallow_clone()),
        (format!("{name}.size"), Tensor::from_slice(&[SIZE, SIZE])),
        (
            format!("{name}.valid"),
            Tensor::from_slice(&[i64::from(raw.is_none())]),
        ),
    ];
    let Some(raw) = raw else { return t };
    let mask = |b: bool| if b { 1.0 } else { 0.0 };
    type Get = fn(&Raw) -> (f64, bool);
    let pairs: [(&str, Get); 7] = [
        ("rotate", |r| r.rotate),
        ("zoom", |r| r.zoom),
        ("warp_x", |r| r.warp_x),
        ("warp_y", |r| r.warp_y),
        ("brightness", |r| r.brightness),
        ("contrast", |r| r.contrast),
        ("flip", |r| (1.0, r.flip)),
    ];
    for (k, get) in pairs {
        t.push((format!("{name}.{k}"), f64s(raw.iter().map(|r| get(r).0))));
        t.push((
            format!("{name}.{k}_mask"),
            f64s(raw.iter().map(|r| mask(get(r).1))),
        ));
    }
    t.push((format!("{name}.col"), f64s(raw.iter().map(|r| r.center.0))));
    t.push((format!("{name}.row"), f64s(raw.iter().map(|r| r.center.1))));
    t
}

#[test]
fn aug_transforms_match_fastais_own_code_on_photos() {
    let x = photos();
    let (warped, unwarped) = (raw_draws(true), raw_draws(false));
    let mut named = case_tensors("warped", &x, Some(&warped));
    named.extend(case_tensors("unwarped", &x, Some(&unwarped)));
    named.extend(case_tensors("valid", &x, None));
    let cases = "warped,unwarped,valid";
    named.push(("cases".into(), Tensor::from_slice(cases.as_bytes())));
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (
        dir.path().join("in.safetensors"),
        dir.path().join("out.safetensors"),
    );
    Tensor::write_safetensors(&named, &inp).unwrap();
    run_fastai("fastai_aug_own.py", &[inp.as_os_str(), out.as_os_str()]);
    let want = read(&out);

    let aug = aug_transforms(SIZE);
    let x = x.to_device(Device::Cpu);
    for (name, raw) in [("warped", &warped), ("unwarped", &unwarped)] {
        let draw = aug_draw(raw);
        let got = aug.apply(&x, &draw).unwrap();
        assert_eq!(got.size(), vec![6, 3, SIZE, SIZE]);
        let d = max_abs_diff(&got, &want[&format!("{name}.y")]);
        eprintln!("{name}: largest difference from fastai {d:e}");
        assert!(
            d <= 1e-4,
            "{name} batch differs from fastai's aug_transforms by {d}"
        );
    }
    let got = aug.apply_valid(&x).unwrap();
    let d = max_abs_diff(&got, &want["valid.y"]);
    eprintln!("valid: largest difference from fastai {d:e}");
    assert!(d <= 1e-4, "validation batch differs from fastai's by {d}");
}

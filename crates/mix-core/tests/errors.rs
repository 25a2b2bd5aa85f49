//! Bad inputs give typed errors with clear messages, never panics or silently wrong results.

use mix_core::cutmix::{paste, paste_into, rand_bbox, rand_bbox_timm, BBox};
use mix_core::loss::{mixed_cross_entropy, one_hot};
use mix_core::mixup::{blend, blend_into, blend_u8, blend_u8_into};
use mix_core::{
    Alpha, BatchShape, CutMix, Error, ImageSize, Mix, MixConfig, MixParams, MixUp, Mixer, PixelMix,
};
use ndarray::{Array2, Array4, ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn x4() -> Array4<f32> {
    Array4::from_shape_fn((3, 2, 4, 5), |(n, c, y, x)| {
        (n * 100 + c * 20 + y * 5 + x) as f32
    })
}

#[test]
fn alpha_must_be_finite_and_positive() {
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let e = Alpha::new(bad).unwrap_err();
        assert!(matches!(e, Error::InvalidAlpha(_)), "{bad}: {e:?}");
        assert!(MixUp::new(bad).is_err() && CutMix::new(bad).is_err());
    }
    let msg = MixUp::new(0.0).unwrap_err().to_string();
    assert_eq!(
        msg,
        "alpha must be finite and > 0, found 0; fastai uses 0.4 for MixUp and 1.0 for CutMix"
    );
    assert_eq!(MixUp::default().alpha().get(), 0.4);
    assert_eq!(CutMix::default().alpha().get(), 1.0);
}

#[test]
fn empty_batches_are_rejected() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert_eq!(MixUp::default().draw(0, &mut rng), Err(Error::EmptyBatch));
    assert_eq!(
        CutMix::default().draw(0, ImageSize::new(4, 4), &mut rng),
        Err(Error::EmptyBatch)
    );
    let empty = ArrayD::<f32>::zeros(IxDyn(&[0, 3]));
    assert_eq!(blend(empty.view(), &[], &[]), Err(Error::EmptyBatch));
    let mixer = Mixer::new(MixConfig::default()).unwrap();
    assert_eq!(
        mixer.sample(BatchShape::new(0, 3, ImageSize::new(4, 4)), &mut rng),
        Err(Error::EmptyBatch)
    );
    let logits = Array2::<f32>::zeros((0, 3));
    assert_eq!(
        mixed_cross_entropy(logits.view(), &[], &[], &[]),
        Err(Error::EmptyBatch)
    );
    let scalar = ArrayD::<f32>::zeros(IxDyn(&[]));
    assert_eq!(blend(scalar.view(), &[], &[]), Err(Error::NoBatchAxis));
}

#[test]
fn empty_images_are_rejected_where_a_box_is_needed() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let e = CutMix::default()
        .draw(2, ImageSize::new(0, 5), &mut rng)
        .unwrap_err();
    assert_eq!(
        e,
        Error::EmptyImage {
            size: ImageSize::new(0, 5)
        }
    );
    assert_eq!(
        e.to_string(),
        "image of 0x5 (height x width) has no pixels; expected height and width >= 1"
    );
    assert_eq!(
        BBox::EMPTY.lam(ImageSize::new(3, 0)),
        Err(Error::EmptyImage {
            size: ImageSize::new(3, 0)
        })
    );
}

#[test]
fn wrong_lengths_are_rejected() {
    let x = x4();
    let e = blend(x.view().into_dyn(), &[1.0, 1.0], &[0, 1, 2]).unwrap_err();
    assert_eq!(
        e,
        Error::LengthMismatch {
            what: "lam",
            expected: 3,
            found: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "lam has length 2, expected 3 (one per sample)"
    );
    let e = blend(x.view().into_dyn(), &[1.0; 3], &[0, 1]).unwrap_err();
    assert!(
        matches!(e, Error::LengthMismatch { what: "perm", .. }),
        "{e:?}"
    );
    let mut out = ArrayD::zeros(IxDyn(&[3, 2, 4, 4]));
    let e = blend_into(x.view().into_dyn(), &[1.0; 3], &[0, 1, 2], out.view_mut()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "out has shape [3, 2, 4, 4], expected [3, 2, 4, 5]"
    );
    let mut small = Array4::zeros((3, 2, 4, 4));
    let e = paste_into(x.view(), &[0, 1, 2], BBox::EMPTY, small.view_mut()).unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { what: "out", .. }),
        "{e:?}"
    );
}

#[test]
fn non_permutations_are_rejected() {
    let x = x4();
    let e = blend(x.view().into_dyn(), &[1.0; 3], &[0, 0, 1]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "perm must be a permutation of 0..3, found 0 twice"
    );
    let e = paste(x.view(), &[0, 1, 3], BBox::EMPTY).unwrap_err();
    assert_eq!(
        e.to_string(),
        "perm must be a permutation of 0..3, found 3 (out of range)"
    );
}

#[test]
fn lambdas_outside_zero_one_are_rejected() {
    let x = x4();
    for bad in [-0.01, 1.01, f32::NAN, f32::INFINITY] {
        let e = blend(x.view().into_dyn(), &[1.0, bad, 0.5], &[2, 1, 0]).unwrap_err();
        assert!(
            matches!(e, Error::LambdaOutOfRange { index: 1, .. }),
            "{bad}: {e:?}"
        );
        assert!(rand_bbox(ImageSize::new(4, 5), bad, 0, 0).is_err());
    }
    let e = blend(x.view().into_dyn(), &[1.0, 1.5, 0.5], &[2, 1, 0]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "lambda of sample 1 must be in [0, 1], found 1.5"
    );
}

#[test]
fn boxes_outside_the_image_are_rejected() {
    let x = x4();
    let wide = BBox {
        x1: 1,
        y1: 0,
        x2: 6,
        y2: 2,
    };
    let e = paste(x.view(), &[0, 1, 2], wide).unwrap_err();
    assert_eq!(
        e.to_string(),
        "box BBox { x1: 1, y1: 0, x2: 6, y2: 2 } of sample 0 does not fit a 4x5 (height x width) \
         image: expected x1 <= x2 <= width and y1 <= y2 <= height"
    );
    let inverted = BBox {
        x1: 3,
        y1: 0,
        x2: 2,
        y2: 2,
    };
    assert!(paste(x.view(), &[0, 1, 2], inverted).is_err());
    let size = ImageSize::new(4, 5);
    let e = rand_bbox(size, 0.5, 5, 0).unwrap_err();
    assert_eq!(e, Error::CentreOutOfImage { cx: 5, cy: 0, size });
    assert_eq!(
        e.to_string(),
        "box centre (5, 0) is outside a 4x5 (height x width) image: expected cx < width and cy < height"
    );
    assert_eq!(
        rand_bbox_timm(size, 0.5, 0, 4),
        Err(Error::CentreOutOfImage { cx: 0, cy: 4, size })
    );
    assert!(matches!(
        wide.lam(size),
        Err(Error::BoxOutOfImage { index: 0, .. })
    ));
}

#[test]
fn params_are_validated_before_anything_is_written() {
    let x = x4();
    let shape = BatchShape::of(&x);
    let good = MixParams {
        lam: vec![1.0; 3],
        perm: vec![2, 0, 1],
        pixels: PixelMix::Identity,
    };
    assert_eq!(good.validate(shape), Ok(()));
    let cases = [
        MixParams {
            lam: vec![1.0; 2],
            ..good.clone()
        },
        MixParams {
            perm: vec![0, 0, 1],
            ..good.clone()
        },
        MixParams {
            pixels: PixelMix::Blend(vec![0.5; 2]),
            ..good.clone()
        },
        MixParams {
            pixels: PixelMix::Blend(vec![0.5, 2.0, 0.5]),
            ..good.clone()
        },
        MixParams {
            pixels: PixelMix::Boxes(vec![
                BBox {
                    x1: 0,
                    y1: 0,
                    x2: 1,
                    y2: 5
                };
                3
            ]),
            ..good.clone()
        },
        MixParams {
            pixels: PixelMix::Boxes(vec![BBox::EMPTY; 4]),
            ..good.clone()
        },
    ];
    for bad in cases {
        let e = bad.validate(shape).unwrap_err();
        let mut out = Array4::from_elem(x.dim(), -1.0f32);
        assert_eq!(
            bad.apply_into(x.view(), out.view_mut()),
            Err(e.clone()),
            "{bad:?}"
        );
        assert!(out.iter().all(|&v| v == -1.0), "nothing written on error");
        assert_eq!(bad.apply(x.view()), Err(e.clone()));
        assert_eq!(bad.apply_u8(x.mapv(|v| v as u8).view()), Err(e));
    }
}

#[test]
fn losses_reject_bad_targets_and_logits() {
    let logits = Array2::<f32>::zeros((2, 3));
    let e = mixed_cross_entropy(logits.view(), &[0, 3], &[1, 0], &[1.0, 1.0]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "target of sample 1 is class 3, expected a class index < 3"
    );
    let e = mixed_cross_entropy(logits.view(), &[0], &[1, 0], &[1.0, 1.0]).unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { what: "target", .. }));
    let mut nan = logits.clone();
    nan[(1, 2)] = f32::NAN;
    let e = mixed_cross_entropy(nan.view(), &[0, 1], &[1, 0], &[1.0, 1.0]).unwrap_err();
    assert_eq!(
        e,
        Error::NonFinite {
            what: "logits",
            index: 1
        }
    );
    assert!(one_hot(&[0, 4], 4, 0.0).is_err());
    assert!(one_hot(&[0], 4, 1.0).is_err());
    let params = MixParams::identity(2);
    assert!(params.mix_targets(Array2::zeros((3, 4)).view()).is_err());
}

#[test]
fn mixer_configs_are_checked() {
    let bad = [
        MixConfig {
            mixup_alpha: None,
            cutmix_alpha: None,
            ..MixConfig::default()
        },
        MixConfig {
            mixup_alpha: Some(-1.0),
            ..MixConfig::default()
        },
        MixConfig {
            cutmix_minmax: Some((0.8, 0.2)),
            ..MixConfig::default()
        },
        MixConfig {
            cutmix_minmax: Some((0.2, 1.5)),
            ..MixConfig::default()
        },
        MixConfig {
            prob: 1.5,
            ..MixConfig::default()
        },
        MixConfig {
            switch_prob: f32::NAN,
            ..MixConfig::default()
        },
        MixConfig {
            label_smoothing: 1.0,
            ..MixConfig::default()
        },
    ];
    for config in bad {
        assert!(Mixer::new(config.clone()).is_err(), "{config:?}");
    }
    let e = Mixer::new(MixConfig {
        prob: 1.5,
        ..MixConfig::default()
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "prob must be in [0, 1], found 1.5");
}

/// The functions that used to panic on bad input (`blend`, `blend_into`, `paste`, `rand_bbox`,
/// `BBox::lam`, `mixed_cross_entropy`) now return the error, with a message naming the problem.
#[test]
fn formerly_panicking_functions_return_the_error() {
    let x = x4();
    let e = blend(x.view().into_dyn(), &[1.0; 3], &[0, 0, 1]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "perm must be a permutation of 0..3, found 0 twice"
    );
    let mut out = ArrayD::from_elem(IxDyn(&[3, 2, 4, 5]), -1.0f32);
    let e = blend_into(x.view().into_dyn(), &[1.0, 0.5], &[0, 1, 2], out.view_mut()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "lam has length 2, expected 3 (one per sample)"
    );
    assert!(out.iter().all(|&v| v == -1.0), "nothing written on error");
    let e = paste(Array4::<f32>::zeros((0, 1, 2, 2)).view(), &[], BBox::EMPTY).unwrap_err();
    assert_eq!(
        e.to_string(),
        "empty batch: expected at least one sample, found 0"
    );
    let e = rand_bbox(ImageSize::new(4, 4), 1.5, 0, 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "lambda of sample 0 must be in [0, 1], found 1.5"
    );
    let e = BBox::EMPTY.lam(ImageSize::new(0, 3)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "image of 0x3 (height x width) has no pixels; expected height and width >= 1"
    );
    let logits = Array2::<f32>::zeros((2, 3));
    let e = mixed_cross_entropy(logits.view(), &[0, 1], &[0, 1], &[1.0, -0.5]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "lambda of sample 1 must be in [0, 1], found -0.5"
    );
}

#[test]
fn u8_blend_checks_like_f32() {
    let x = x4().mapv(|v| v as u8);
    assert_eq!(
        blend_u8(x.view().into_dyn(), &[1.0; 3], &[0, 1, 1]),
        Err(Error::NotAPermutation {
            len: 3,
            problem: "1 twice".into()
        })
    );
    let mut out = ArrayD::zeros(IxDyn(&[3, 2, 4, 4]));
    let e = blend_u8_into(x.view().into_dyn(), &[1.0; 3], &[0, 1, 2], out.view_mut()).unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { what: "out", .. }),
        "{e:?}"
    );
}

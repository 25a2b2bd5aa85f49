//! timm's knobs: probabilities, modes, min/max boxes, lambda correction, label smoothing; and the
//! batch sizes timm and fastai refuse (1, odd).

use mix_core::cutmix::{rand_bbox, rand_bbox_timm, BBox};
use mix_core::{
    flip_perm, BatchShape, CutMix, ImageSize, Mix, MixConfig, MixMode, MixParams, MixUp, Mixer,
    PixelMix, SampleMix,
};
use ndarray::Array4;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn mixer(config: MixConfig) -> Mixer {
    Mixer::new(config).expect("valid config")
}

fn both(mode: MixMode) -> MixConfig {
    MixConfig {
        mixup_alpha: Some(0.8),
        cutmix_alpha: Some(1.0),
        mode,
        ..MixConfig::default()
    }
}

fn draws(m: &Mixer, shape: BatchShape, n: usize) -> Vec<MixParams> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    (0..n).map(|_| m.sample(shape, &mut rng).unwrap()).collect()
}

#[test]
fn prob_zero_never_mixes_and_prob_one_always_does() {
    let shape = BatchShape::new(4, 3, ImageSize::new(8, 8));
    for p in draws(
        &mixer(MixConfig {
            prob: 0.0,
            ..both(MixMode::Elem)
        }),
        shape,
        50,
    ) {
        assert_eq!(p.pixels, PixelMix::Identity);
        assert_eq!(p.lam, vec![1.0; 4]);
    }
    for p in draws(
        &mixer(MixConfig {
            prob: 1.0,
            ..both(MixMode::Batch)
        }),
        shape,
        50,
    ) {
        assert_ne!(p.pixels, PixelMix::Identity);
    }
    let half = draws(
        &mixer(MixConfig {
            prob: 0.5,
            ..both(MixMode::Batch)
        }),
        shape,
        400,
    );
    let mixed = half
        .iter()
        .filter(|p| p.pixels != PixelMix::Identity)
        .count();
    assert!(
        (140..=260).contains(&mixed),
        "{mixed} of 400 mixed at prob 0.5"
    );
}

#[test]
fn batch_mode_draws_once_with_timms_flipped_partners_and_no_folding() {
    let shape = BatchShape::new(5, 1, ImageSize::new(6, 4));
    let all = draws(&mixer(MixConfig::default()), shape, 100);
    for p in &all {
        assert_eq!(p.perm, flip_perm(5));
        let PixelMix::Blend(w) = &p.pixels else {
            panic!("MixUp only: {p:?}")
        };
        assert!(w.iter().all(|&v| v == w[0]) && p.lam == *w);
    }
    // timm keeps lambda as drawn, so about half of them are below 0.5.
    assert!(all.iter().any(|p| p.lam[0] < 0.5) && all.iter().any(|p| p.lam[0] > 0.5));
}

#[test]
fn switch_prob_chooses_between_cutmix_and_mixup() {
    let shape = BatchShape::new(4, 1, ImageSize::new(8, 8));
    let cut = mixer(MixConfig {
        switch_prob: 1.0,
        ..both(MixMode::Batch)
    });
    assert!(draws(&cut, shape, 50)
        .iter()
        .all(|p| matches!(p.pixels, PixelMix::Boxes(_))));
    let up = mixer(MixConfig {
        switch_prob: 0.0,
        ..both(MixMode::Batch)
    });
    assert!(draws(&up, shape, 50)
        .iter()
        .all(|p| matches!(p.pixels, PixelMix::Blend(_))));
}

#[test]
fn timm_truncates_the_cut_where_fastai_rounds() {
    // W = H = 9, lam = 0.3: 9 * sqrt(0.7) = 7.53; timm int() gives 7, fastai round() 8 (half 4).
    // timm 1.0.31 spans `c - 7 // 2 .. c + (7 + 1) // 2`, so the odd cut keeps all 7 pixels
    // (older timm, like fastai, cut `c - 3 .. c + 3`); centred at (4, 4) neither box is clipped.
    assert_eq!(
        rand_bbox_timm(ImageSize::new(9, 9), 0.3, 4, 4),
        Ok(BBox {
            x1: 1,
            y1: 1,
            x2: 8,
            y2: 8
        })
    );
    assert_eq!(
        rand_bbox(ImageSize::new(9, 9), 0.3, 4, 4),
        Ok(BBox {
            x1: 0,
            y1: 0,
            x2: 8,
            y2: 8
        })
    );
}

#[test]
fn correct_lam_decides_whether_lambda_follows_the_box() {
    let shape = BatchShape::new(2, 1, ImageSize::new(7, 10));
    let cutmix_only = MixConfig {
        mixup_alpha: None,
        cutmix_alpha: Some(1.0),
        ..MixConfig::default()
    };
    for p in draws(&mixer(cutmix_only.clone()), shape, 100) {
        let PixelMix::Boxes(b) = &p.pixels else {
            panic!("{p:?}")
        };
        assert_eq!(p.lam[0], b[0].lam(ImageSize::new(7, 10)).unwrap());
    }
    let raw = draws(
        &mixer(MixConfig {
            correct_lam: false,
            ..cutmix_only
        }),
        shape,
        100,
    );
    let differs = raw.iter().filter(|p| {
        let PixelMix::Boxes(b) = &p.pixels else {
            panic!("{p:?}")
        };
        (p.lam[0] - b[0].lam(ImageSize::new(7, 10)).unwrap()).abs() > 1e-3
    });
    assert!(
        differs.count() > 50,
        "uncorrected lambdas should mostly differ from the box share"
    );
}

#[test]
fn minmax_boxes_have_bounded_sides_and_corrected_lambdas() {
    let (h, w) = (20, 30);
    let m = mixer(MixConfig {
        mixup_alpha: None,
        cutmix_alpha: None,
        cutmix_minmax: Some((0.2, 0.8)),
        correct_lam: false,
        mode: MixMode::Elem,
        ..MixConfig::default()
    });
    for p in draws(&m, BatchShape::new(3, 1, ImageSize::new(h, w)), 100) {
        let PixelMix::Boxes(boxes) = &p.pixels else {
            panic!("{p:?}")
        };
        for (b, &l) in boxes.iter().zip(&p.lam) {
            assert!(
                (4..16).contains(&b.height()) && (6..24).contains(&b.width()),
                "{b:?}"
            );
            assert!(b.x2 <= w && b.y2 <= h);
            assert_eq!(
                l,
                b.lam(ImageSize::new(h, w)).unwrap(),
                "min/max always corrects lambda"
            );
        }
    }
}

#[test]
fn timm_boxes_keep_odd_cuts_whole_and_clip_at_the_edges() {
    // 10 * sqrt(1 - 0.19) = 9 exactly: cut 9 high and wide, 4 above/left and 5 below/right.
    assert_eq!(
        rand_bbox_timm(ImageSize::new(10, 10), 0.19, 5, 5).unwrap(),
        BBox {
            x1: 1,
            y1: 1,
            x2: 10,
            y2: 10
        }
    );
    assert_eq!(
        rand_bbox_timm(ImageSize::new(10, 10), 0.19, 9, 0).unwrap(),
        BBox {
            x1: 5,
            y1: 0,
            x2: 10,
            y2: 5
        }
    );
    // An even cut is split evenly: 10 * sqrt(1 - 0.35) = 8.06 -> 8, 4 on each side.
    assert_eq!(
        rand_bbox_timm(ImageSize::new(10, 10), 0.35, 5, 5).unwrap(),
        BBox {
            x1: 1,
            y1: 1,
            x2: 9,
            y2: 9
        }
    );
}

#[test]
fn minmax_corners_reach_every_position_the_box_fits() {
    // timm PR #2739: `randint(0, img_h - cut_h + 1)`, so boxes can touch the bottom and right
    // edges as well as the top and left ones, and every corner in between comes up.
    let (h, w) = (5, 6);
    let m = mixer(MixConfig {
        mixup_alpha: None,
        cutmix_alpha: None,
        cutmix_minmax: Some((0.2, 0.8)),
        mode: MixMode::Elem,
        ..MixConfig::default()
    });
    let mut seen = std::collections::BTreeSet::new();
    for p in draws(&m, BatchShape::new(8, 1, ImageSize::new(h, w)), 400) {
        let PixelMix::Boxes(boxes) = &p.pixels else {
            panic!("{p:?}")
        };
        for b in boxes {
            assert!(b.x2 <= w && b.y2 <= h, "{b:?}");
            seen.insert(("y", b.height(), b.y1));
            seen.insert(("x", b.width(), b.x1));
        }
    }
    // Sides: int(5 * 0.2) = 1 .. int(5 * 0.8) = 4 (exclusive) and int(6 * 0.2) = 1 .. 4.
    let mut expected = std::collections::BTreeSet::new();
    for cut in 1..4 {
        expected.extend((0..=h - cut).map(|y1| ("y", cut, y1)));
        expected.extend((0..=w - cut).map(|x1| ("x", cut, x1)));
    }
    assert_eq!(seen, expected);
}

#[test]
fn minmax_boxes_touch_all_four_edges() {
    let (h, w) = (7, 9);
    let m = mixer(MixConfig {
        mixup_alpha: None,
        cutmix_alpha: None,
        cutmix_minmax: Some((0.3, 0.9)),
        mode: MixMode::Elem,
        ..MixConfig::default()
    });
    let boxes: Vec<BBox> = draws(&m, BatchShape::new(8, 1, ImageSize::new(h, w)), 200)
        .iter()
        .flat_map(|p| match &p.pixels {
            PixelMix::Boxes(b) => b.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(boxes.iter().map(|b| b.y1).min(), Some(0));
    assert_eq!(boxes.iter().map(|b| b.x1).min(), Some(0));
    assert_eq!(boxes.iter().map(|b| b.y2).max(), Some(h));
    assert_eq!(boxes.iter().map(|b| b.x2).max(), Some(w));
}

#[test]
fn defaults_are_timms_mixup_defaults() {
    // timm 1.0.31: `Mixup(mixup_alpha=1., cutmix_alpha=0., cutmix_minmax=None, prob=1.0,
    // switch_prob=0.5, mode='batch', correct_lam=True, label_smoothing=0.1, ...)`.
    assert_eq!(
        MixConfig::default(),
        MixConfig {
            mixup_alpha: Some(1.0),
            cutmix_alpha: None,
            cutmix_minmax: None,
            prob: 1.0,
            switch_prob: 0.5,
            mode: MixMode::Batch,
            correct_lam: true,
            label_smoothing: 0.1,
        }
    );
}

#[test]
fn elem_mode_mixes_blends_and_boxes_in_one_batch() {
    let shape = BatchShape::new(6, 2, ImageSize::new(5, 7));
    let all = draws(&mixer(both(MixMode::Elem)), shape, 50);
    assert!(all
        .iter()
        .any(|p| matches!(p.pixels, PixelMix::PerSample(_))));
    let x = Array4::from_shape_fn(shape.dim(), |(n, c, y, x)| {
        (n * 1000 + c * 100 + y * 10 + x) as f32
    });
    for p in &all {
        let out = p.apply(x.view()).unwrap();
        for i in 0..6 {
            let op = p.pixels.for_sample(i).unwrap();
            match op {
                SampleMix::Blend(w) => assert_eq!(w, p.lam[i]),
                SampleMix::Paste(b) => assert_eq!(p.lam[i], b.lam(ImageSize::new(5, 7)).unwrap()),
                SampleMix::Keep => assert_eq!(p.lam[i], 1.0),
            }
            // Each sample alone, through the single-op variants, gives the same pixels.
            let single = MixParams {
                lam: p.lam.clone(),
                perm: p.perm.clone(),
                pixels: PixelMix::from_samples(vec![op; 6]),
            };
            assert_eq!(
                single
                    .apply(x.view())
                    .unwrap()
                    .index_axis(ndarray::Axis(0), i),
                out.index_axis(ndarray::Axis(0), i)
            );
        }
    }
}

#[test]
fn pair_mode_shares_each_draw_between_mirrored_samples() {
    for batch in [1, 2, 5, 8] {
        let all = draws(
            &mixer(both(MixMode::Pair)),
            BatchShape::new(batch, 1, ImageSize::new(6, 6)),
            30,
        );
        for p in &all {
            for i in 0..batch {
                let j = batch - 1 - i;
                assert_eq!(p.pixels.for_sample(i), p.pixels.for_sample(j));
                assert_eq!(p.lam[i], p.lam[j]);
            }
            if batch % 2 == 1 {
                // The middle sample of an odd batch is its own partner and stays as it is.
                assert!(p.pixels.for_sample(batch / 2).unwrap().is_keep(), "{p:?}");
                assert_eq!(p.lam[batch / 2], 1.0);
            }
        }
    }
}

#[test]
fn label_smoothing_builds_timms_targets() {
    let m = mixer(MixConfig {
        label_smoothing: 0.1,
        ..MixConfig::default()
    });
    let t = m.targets(&MixParams::identity(2), &[2, 0], 4).unwrap();
    let (off, on) = (0.1 / 4.0, 1.0 - 0.1 + 0.1 / 4.0);
    assert_eq!(t.row(0).to_vec(), vec![off, off, on, off]);
    assert_eq!(t.row(1).to_vec(), vec![on, off, off, off]);
    let mixed = MixParams {
        lam: vec![0.7, 0.7],
        perm: vec![1, 0],
        pixels: PixelMix::Blend(vec![0.7; 2]),
    };
    let t = m.targets(&mixed, &[2, 0], 4).unwrap();
    assert!((t[(0, 2)] - (0.7 * on + 0.3 * off)).abs() < 1e-6);
    assert!((t[(0, 0)] - (0.7 * off + 0.3 * on)).abs() < 1e-6);
}

#[test]
fn batch_size_one_works_everywhere() {
    // fastai's MixUp crashes here (`squeeze()` makes lambda a scalar); timm asserts an even batch.
    let x = Array4::from_shape_fn((1, 3, 4, 6), |(_, c, y, x)| (c * 100 + y * 10 + x) as f32);
    let shape = BatchShape::of(&x);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let variants: Vec<Box<dyn Mix>> = vec![
        Box::new(MixUp::default()),
        Box::new(CutMix::default()),
        Box::new(mixer(both(MixMode::Batch))),
        Box::new(mixer(both(MixMode::Pair))),
        Box::new(mixer(both(MixMode::Elem))),
    ];
    for v in &variants {
        for _ in 0..20 {
            let p = v.sample(shape, &mut rng).unwrap();
            assert_eq!(p.perm, vec![0], "{}", v.name());
            // Mixing a sample with itself changes nothing.
            assert_eq!(p.apply(x.view()).unwrap(), x, "{}", v.name());
        }
    }
}

#[test]
fn odd_batches_and_non_square_images_work() {
    let x = Array4::from_shape_fn((7, 2, 5, 13), |(n, c, y, x)| {
        (n * 1000 + c * 100 + y * 10 + x) as f32
    });
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..20 {
        let p = CutMix::default()
            .draw(7, ImageSize::new(5, 13), &mut rng)
            .unwrap();
        assert!(p.bbox.x2 <= 13 && p.bbox.y2 <= 5);
        let out = MixParams::from(p).apply(x.view()).unwrap();
        assert_eq!(out.dim(), x.dim());
        let m = MixUp::default().draw(7, &mut rng).unwrap();
        assert_eq!(MixParams::from(m).apply(x.view()).unwrap().dim(), x.dim());
    }
}

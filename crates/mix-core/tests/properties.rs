//! Properties of the samplers and kernels that must hold for every input (proptest).

mod common;

use common::{alpha, bbox, blend_case, images_u8, paste_case, perm, seed, shape, weights};
use mix_core::cutmix::{paste, rand_bbox, BBox};
use mix_core::loss::{mixed_cross_entropy, one_hot, soft_cross_entropy};
use mix_core::mixup::{blend, blend_u8};
use mix_core::{BatchShape, CutMix, ImageSize, Mix, MixParams, MixUp, PixelMix};
use ndarray::{Array2, Array4, Axis};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn is_permutation(perm: &[usize]) -> bool {
    let mut sorted = perm.to_vec();
    sorted.sort_unstable();
    sorted.iter().copied().eq(0..perm.len())
}

proptest! {
    #[test]
    fn mixup_lambdas_lie_in_half_to_one_and_perm_is_a_permutation(
        a in alpha(), batch in 1usize..=64, seed in seed(),
    ) {
        let p = MixUp::new(a).unwrap().draw(batch, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
        prop_assert_eq!(p.lam.len(), batch);
        prop_assert!(p.lam.iter().all(|&l| (0.5..=1.0).contains(&l)), "{:?}", p.lam);
        prop_assert!(is_permutation(&p.perm), "{:?}", p.perm);
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_the_trait_matches_the_inherent_sampler(
        a in alpha(), s in shape(), seed in seed(),
    ) {
        let mixup = MixUp::new(a).unwrap();
        let inherent: MixParams =
            mixup.draw(s.batch, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap().into();
        let via_trait = Mix::sample(&mixup, s, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
        prop_assert_eq!(inherent, via_trait);
        let cutmix: Box<dyn Mix> = Box::new(CutMix::new(a).unwrap());
        let first = cutmix.sample(s, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
        let again = cutmix.sample(s, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
        prop_assert_eq!(first, again);
    }

    #[test]
    fn lambda_one_gives_x_back((x, _, perm) in blend_case()) {
        let ones = vec![1.0; x.len_of(Axis(0))];
        prop_assert_eq!(blend(x.view().into_dyn(), &ones, &perm).unwrap(), x.into_dyn());
    }

    #[test]
    fn lambda_zero_gives_the_partners((x, _, perm) in blend_case()) {
        let zeros = vec![0.0; x.len_of(Axis(0))];
        let out = blend(x.view().into_dyn(), &zeros, &perm).unwrap();
        for (i, &p) in perm.iter().enumerate() {
            prop_assert_eq!(out.index_axis(Axis(0), i), x.index_axis(Axis(0), p).into_dyn());
        }
    }

    #[test]
    fn identity_perm_gives_x_back((x, lam, _) in blend_case()) {
        let ident: Vec<usize> = (0..x.len_of(Axis(0))).collect();
        prop_assert_eq!(blend(x.view().into_dyn(), &lam, &ident).unwrap(), x.into_dyn());
    }

    #[test]
    fn blend_is_linear(
        (x, lam, perm) in blend_case(), a in -3.0f32..3.0, b in -3.0f32..3.0,
    ) {
        let y = x.mapv(|v| (v * 0.37).sin() * 50.0);
        let combo = &x * a + &y * b;
        let lhs = blend(combo.view().into_dyn(), &lam, &perm).unwrap();
        let rhs = blend(x.view().into_dyn(), &lam, &perm).unwrap() * a
            + blend(y.view().into_dyn(), &lam, &perm).unwrap() * b;
        for (l, r) in lhs.iter().zip(&rhs) {
            // Values reach about 450; f32 rounding of the two orders of operations stays well below.
            prop_assert!((l - r).abs() <= 1e-3, "{l} vs {r}");
        }
    }

    #[test]
    fn blend_stays_between_the_two_samples((x, lam, perm) in blend_case()) {
        let out = blend(x.view().into_dyn(), &lam, &perm).unwrap();
        for (i, &p) in perm.iter().enumerate() {
            let own = x.index_axis(Axis(0), i);
            let partner = x.index_axis(Axis(0), p);
            let mixed = out.index_axis(Axis(0), i);
            for ((&o, &a), &q) in mixed.iter().zip(&own).zip(&partner) {
                prop_assert!(o >= a.min(q) && o <= a.max(q), "{o} outside [{a}, {q}]");
            }
        }
    }

    #[test]
    fn cutmix_boxes_stay_inside_and_lambda_is_the_unpasted_share(
        a in alpha(), batch in 1usize..=4, h in 1usize..=40, w in 1usize..=40, seed in seed(),
    ) {
        let p = CutMix::new(a).unwrap().draw(batch, ImageSize::new(h, w), &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
        let b = p.bbox;
        prop_assert!(b.x1 <= b.x2 && b.x2 <= w && b.y1 <= b.y2 && b.y2 <= h, "{b:?} in {w}x{h}");
        prop_assert!(p.cx < w && p.cy < h);
        prop_assert!(is_permutation(&p.perm));
        // The unpasted share, measured: paste a ones image into a zeros image and count.
        let mut x = Array4::<f32>::zeros((2, 1, h, w));
        x.index_axis_mut(Axis(0), 1).fill(1.0);
        let out = paste(x.view(), &[1, 0], b).unwrap();
        let pasted = out.index_axis(Axis(0), 0).sum() / (h * w) as f32;
        prop_assert!((p.lam - (1.0 - pasted)).abs() <= 1e-6, "{} vs {}", p.lam, 1.0 - pasted);
    }

    #[test]
    fn rand_bbox_is_inside_the_image_for_any_lambda_and_centre(
        w in 1usize..=300, h in 1usize..=300, lam in 0.0f32..=1.0, fx in 0.0f64..1.0, fy in 0.0f64..1.0,
    ) {
        let (cx, cy) = ((fx * w as f64) as usize, (fy * h as f64) as usize);
        let b = rand_bbox(ImageSize::new(h, w), lam, cx, cy).unwrap();
        prop_assert!(b.x1 <= b.x2 && b.x2 <= w && b.y1 <= b.y2 && b.y2 <= h);
        prop_assert!(b.x1 <= cx && cx <= b.x2 && b.y1 <= cy && cy <= b.y2);
        // Never wider than the cut: 2 * (cut // 2) <= cut = round(w * sqrt(1 - lam)).
        let cut_w = (w as f64 * (1.0 - f64::from(lam)).sqrt()).round() as usize + 1;
        prop_assert!(b.width() <= cut_w, "{b:?} cut {cut_w}");
    }

    #[test]
    fn paste_keeps_outside_and_copies_inside((x, perm, b) in paste_case()) {
        let out = paste(x.view(), &perm, b).unwrap();
        for ((i, c, y, xx), &v) in out.indexed_iter() {
            let inside = (b.y1..b.y2).contains(&y) && (b.x1..b.x2).contains(&xx);
            let src = if inside { perm[i] } else { i };
            prop_assert_eq!(v, x[(src, c, y, xx)]);
        }
    }

    #[test]
    fn params_apply_matches_the_free_functions((x, lam, perm) in blend_case(), seed in seed()) {
        let s = BatchShape::of(&x);
        let blended = MixParams { lam: lam.clone(), perm: perm.clone(), pixels: PixelMix::Blend(lam.clone()) };
        prop_assert_eq!(blended.apply(x.view()).unwrap().into_dyn(), blend(x.view().into_dyn(), &lam, &perm).unwrap());
        let b = {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let cx = rand::Rng::gen_range(&mut rng, 0..s.size.width);
            let cy = rand::Rng::gen_range(&mut rng, 0..s.size.height);
            rand_bbox(s.size, lam[0], cx, cy).unwrap()
        };
        let boxed = MixParams { lam, perm: perm.clone(), pixels: PixelMix::Boxes(vec![b; s.batch]) };
        prop_assert_eq!(boxed.apply(x.view()).unwrap(), paste(x.view(), &perm, b).unwrap());
        let ident = MixParams { pixels: PixelMix::Identity, ..boxed };
        prop_assert_eq!(ident.apply(x.view()).unwrap(), x);
    }

    #[test]
    fn u8_blend_rounds_timms_formula_to_nearest(
        (x, lam, perm) in shape().prop_flat_map(|s| (images_u8(s), weights(s.batch), perm(s.batch))),
    ) {
        let out = blend_u8(x.view().into_dyn(), &lam, &perm).unwrap();
        let as_f32 = blend(x.mapv(f32::from).view().into_dyn(), &lam, &perm).unwrap();
        for ((i, c, y, xx), &a) in x.indexed_iter() {
            let p = x[(perm[i], c, y, xx)];
            let exact = f32::from(a) * lam[i] + f32::from(p) * (1.0 - lam[i]);
            let got = out[[i, c, y, xx]];
            prop_assert_eq!(f32::from(got), exact.round_ties_even(), "{} {} {}", a, p, lam[i]);
            prop_assert!((f32::from(got) - as_f32[[i, c, y, xx]]).abs() <= 0.5 + 1e-3);
        }
        let params = MixParams { lam: lam.clone(), perm: perm.clone(), pixels: PixelMix::Blend(lam) };
        prop_assert_eq!(params.apply_u8(x.view()).unwrap().into_dyn(), out);
    }

    #[test]
    fn u8_boxes_are_copied_exactly(
        (x, perm, b) in shape().prop_flat_map(|s| (images_u8(s), perm(s.batch), bbox(s.size))),
    ) {
        let params = MixParams { lam: vec![1.0; perm.len()], perm: perm.clone(), pixels: PixelMix::Boxes(vec![b; perm.len()]) };
        let out = params.apply_u8(x.view()).unwrap();
        let as_f32 = paste(x.mapv(f32::from).view(), &perm, b).unwrap();
        prop_assert_eq!(out.mapv(f32::from), as_f32);
    }

    #[test]
    fn mixed_targets_keep_their_row_sums(
        (labels, lam, perm) in (1usize..=8).prop_flat_map(|n| (proptest::collection::vec(0usize..5, n), weights(n), perm(n))),
        smoothing in 0.0f32..0.5,
    ) {
        let onehot = one_hot(&labels, 5, smoothing).unwrap();
        let params = MixParams { lam: lam.clone(), perm, pixels: PixelMix::Blend(lam) };
        let mixed = params.mix_targets(onehot.view()).unwrap();
        for row in mixed.axis_iter(Axis(0)) {
            prop_assert!((row.sum() - 1.0).abs() <= 1e-6, "{row}");
        }
    }

    #[test]
    fn mixed_cross_entropy_equals_cross_entropy_on_mixed_one_hot_targets(
        (labels, lam, perm) in (1usize..=8).prop_flat_map(|n| (proptest::collection::vec(0usize..6, n), weights(n), perm(n))),
        logit_seed in seed(),
    ) {
        // Cross-entropy is linear in the target, so fastai's lerp of two losses must equal the
        // loss against the lerped one-hot targets: two independent routes to the same number.
        let n = labels.len();
        let logits = Array2::from_shape_fn((n, 6), |(i, c)| {
            (((i * 6 + c) as u64 ^ logit_seed) % 1000) as f32 / 100.0 - 5.0
        });
        let onehot = one_hot(&labels, 6, 0.0).unwrap();
        let params = MixParams { lam: lam.clone(), perm: perm.clone(), pixels: PixelMix::Blend(lam.clone()) };
        let soft = soft_cross_entropy(logits.view(), params.mix_targets(onehot.view()).unwrap().view()).unwrap();
        let mixed = mixed_cross_entropy(logits.view(), &labels, &perm, &lam).unwrap();
        prop_assert!((soft - mixed).abs() <= 1e-5, "{soft} vs {mixed}");
        prop_assert_eq!(params.mixed_cross_entropy(logits.view(), &labels).unwrap(), mixed);
    }

    #[test]
    fn noncontiguous_inputs_give_the_same_result((x, lam, perm) in blend_case(), b in bbox(ImageSize::new(4, 4))) {
        // A transposed (channels-last) view takes the strided fallback path of every kernel.
        let nhwc = x.view().permuted_axes([0, 2, 3, 1]).to_owned();
        let strided = nhwc.view().permuted_axes([0, 3, 1, 2]);
        prop_assert_eq!(blend(strided.into_dyn(), &lam, &perm).unwrap(), blend(x.view().into_dyn(), &lam, &perm).unwrap());
        let s = BatchShape::of(&x);
        let (w, h) = (s.size.width, s.size.height);
        let b = BBox { x2: b.x2.min(w), x1: b.x1.min(w), y2: b.y2.min(h), y1: b.y1.min(h) };
        prop_assert_eq!(paste(strided, &perm, b).unwrap(), paste(x.view(), &perm, b).unwrap());
        let u8s = x.mapv(|v| (v + 100.0) as u8);
        let u8_strided = u8s.view().permuted_axes([0, 2, 3, 1]).to_owned();
        let u8_view = u8_strided.view().permuted_axes([0, 3, 1, 2]);
        prop_assert_eq!(
            blend_u8(u8_view.into_dyn(), &lam, &perm).unwrap(),
            blend_u8(u8s.view().into_dyn(), &lam, &perm).unwrap()
        );
    }
}

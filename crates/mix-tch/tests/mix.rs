//! One sampler, two appliers: the same params through mix-core (ndarray) and mix-tch (tensors on the test
//! device) give the same images, targets and losses.

mod common;

use common::{max_abs_diff, test_device, to_array, to_tensor};
use mix_core::cutmix::BBox;
use mix_core::{BatchShape, CutMix, ImageSize, Mix, MixParams, MixUp, PixelMix};
use mix_tch::mix;
use mix_tch::tch::{Kind, Tensor};
use ndarray::{Array2, Array4};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_batch(shape: (usize, usize, usize, usize), seed: u64) -> Array4<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array4::from_shape_fn(shape, |_| rng.gen_range(-2.0f32..2.0))
}

fn assert_apply_parity(params: &MixParams, x: &Array4<f32>) {
    let want = params
        .apply(x.view())
        .expect("mix-core applies valid params");
    let got = to_array(
        &mix::apply(params, &to_tensor(x, test_device())).expect("mix-tch applies valid params"),
    );
    let diff = (&want - &got).mapv(f32::abs).fold(0.0f32, |a, &b| a.max(b));
    assert!(
        diff <= 1e-5,
        "mix-tch differs from mix-core by {diff} for {params:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn apply_matches_mix_core(
        (shape, params, values) in common::batch_shape().prop_flat_map(|(n, c, h, w)| {
            (Just((n, c, h, w)), common::mix_params(n, h, w), common::pixels(n * c * h * w))
        })
    ) {
        let x = Array4::from_shape_vec(shape, values).unwrap();
        assert_apply_parity(&params, &x);
    }
}

#[test]
fn sampled_mixup_and_cutmix_match_mix_core() {
    let shape = (6, 3, 16, 20);
    let x = random_batch(shape, 1);
    let mixes: Vec<Box<dyn Mix>> = vec![
        Box::new(MixUp::new(0.4).unwrap()),
        Box::new(CutMix::new(1.0).unwrap()),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for m in &mixes {
        for _ in 0..5 {
            let params = m
                .sample(BatchShape::new(6, 3, ImageSize::new(16, 20)), &mut rng)
                .unwrap();
            assert_apply_parity(&params, &x);
        }
    }
}

#[test]
fn one_box_for_the_batch_pastes_exactly() {
    let x = random_batch((4, 2, 8, 8), 2);
    let b = BBox {
        x1: 1,
        y1: 2,
        x2: 5,
        y2: 7,
    };
    let params = MixParams {
        lam: vec![0.5; 4],
        perm: vec![3, 2, 1, 0],
        pixels: PixelMix::Boxes(vec![b; 4]),
    };
    let got = to_array(&mix::apply(&params, &to_tensor(&x, test_device())).unwrap());
    for i in 0..4 {
        for y in 0..8 {
            for xx in 0..8 {
                let inside = (1..5).contains(&xx) && (2..7).contains(&y);
                let src = if inside { params.perm[i] } else { i };
                for c in 0..2 {
                    assert_eq!(got[[i, c, y, xx]], x[[src, c, y, xx]]);
                }
            }
        }
    }
}

#[test]
fn mixed_cross_entropy_matches_mix_core() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (n, k) = (8, 5);
    let logits = Array2::from_shape_fn((n, k), |_| rng.gen_range(-3.0f32..3.0));
    let target: Vec<usize> = (0..n).map(|_| rng.gen_range(0..k)).collect();
    let params = Mix::sample(
        &MixUp::new(1.0).unwrap(),
        BatchShape::new(n, 3, ImageSize::new(4, 4)),
        &mut rng,
    )
    .unwrap();
    let want = params.mixed_cross_entropy(logits.view(), &target).unwrap();
    let device = test_device();
    let lt = Tensor::from_slice(logits.as_slice().unwrap())
        .view([n as i64, k as i64])
        .to_device(device);
    let tt =
        Tensor::from_slice(&target.iter().map(|&t| t as i64).collect::<Vec<_>>()).to_device(device);
    let got = mix::mixed_cross_entropy(&params, &lt, &tt)
        .unwrap()
        .double_value(&[]);
    assert!(
        (got - want as f64).abs() <= 1e-5,
        "mix-tch {got} vs mix-core {want}"
    );
    // And the identity mix gives plain cross entropy.
    let plain = lt.cross_entropy_for_logits(&tt).double_value(&[]);
    let id = mix::mixed_cross_entropy(&MixParams::identity(n), &lt, &tt)
        .unwrap()
        .double_value(&[]);
    assert!((plain - id).abs() <= 1e-6);
}

#[test]
fn lerped_targets_match_mix_core() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let (n, k) = (6, 4);
    let labels: Vec<usize> = (0..n).map(|_| rng.gen_range(0..k)).collect();
    let onehot = mix_core::loss::one_hot(&labels, k, 0.0).unwrap();
    let params = Mix::sample(
        &CutMix::new(1.0).unwrap(),
        BatchShape::new(n, 3, ImageSize::new(10, 10)),
        &mut rng,
    )
    .unwrap();
    let want = params.mix_targets(onehot.view()).unwrap();
    let t = Tensor::from_slice(onehot.as_slice().unwrap())
        .view([n as i64, k as i64])
        .to_device(test_device());
    let got = mix::lerp_targets(&params, &t).unwrap();
    let want_t = Tensor::from_slice(want.as_slice().unwrap()).view([n as i64, k as i64]);
    assert!(max_abs_diff(&got, &want_t) <= 1e-6);
}

#[test]
fn params_for_another_batch_are_rejected() {
    let x = Tensor::zeros([4, 3, 8, 8], (Kind::Float, test_device()));
    let params = MixParams::identity(3);
    let err = mix::apply(&params, &x).unwrap_err().to_string();
    assert!(err.starts_with("mix: "), "{err}");
    let y = Tensor::zeros([4], (Kind::Int64, test_device()));
    let err = mix::mixed_cross_entropy(&params, &x.view([4, -1]), &y)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expected mix params for a batch of 4"),
        "{err}"
    );
}

//! The batch-parallel kernels give the same bits as a plain serial loop, whatever the thread count.
//! The batches here are big enough for the rayon path to be taken when the feature is on.

use mix_core::{
    BBox, BatchShape, ImageSize, MixConfig, MixMode, MixParams, Mixer, PixelMix, SampleMix,
};
use ndarray::{Array4, ArrayD};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SHAPE: (usize, usize, usize, usize) = (9, 3, 48, 40);

fn batch_f32(seed: u64) -> Array4<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array4::from_shape_simple_fn(SHAPE, || rng.gen_range(-3.0f32..3.0))
}

fn batch_u8(seed: u64) -> Array4<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array4::from_shape_simple_fn(SHAPE, || rng.gen())
}

/// Params that use every kind of sample operation in one batch.
fn params() -> Vec<MixParams> {
    let m = Mixer::new(MixConfig {
        mixup_alpha: Some(0.4),
        cutmix_alpha: Some(1.0),
        mode: MixMode::Elem,
        ..MixConfig::default()
    })
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let shape = BatchShape::new(SHAPE.0, SHAPE.1, ImageSize::new(SHAPE.2, SHAPE.3));
    let mut all: Vec<MixParams> = (0..4).map(|_| m.draw(shape, &mut rng).unwrap()).collect();
    let perm: Vec<usize> = vec![3, 8, 0, 1, 2, 7, 6, 5, 4];
    all.push(MixParams {
        lam: vec![0.5; 9],
        perm: perm.clone(),
        pixels: PixelMix::Blend(vec![0.0, 0.1, 0.49, 0.5, 0.51, 0.9, 1.0, 0.25, 0.75]),
    });
    all.push(MixParams {
        lam: vec![0.5; 9],
        perm,
        pixels: PixelMix::PerSample(vec![
            SampleMix::Keep,
            SampleMix::Blend(0.3),
            SampleMix::Paste(BBox {
                x1: 0,
                y1: 0,
                x2: 40,
                y2: 48,
            }),
            SampleMix::Paste(BBox {
                x1: 5,
                y1: 7,
                x2: 6,
                y2: 40,
            }),
            SampleMix::Paste(BBox::EMPTY),
            SampleMix::Blend(0.8),
            SampleMix::Keep,
            SampleMix::Paste(BBox {
                x1: 39,
                y1: 0,
                x2: 40,
                y2: 1,
            }),
            SampleMix::Blend(0.5),
        ]),
    });
    assert!(all
        .iter()
        .any(|p| matches!(p.pixels, PixelMix::PerSample(_))));
    all
}

/// The reference: torch.lerp's formula and a box test, one element at a time, in order.
fn naive_f32(p: &MixParams, x: &Array4<f32>) -> Array4<f32> {
    Array4::from_shape_fn(x.dim(), |(i, c, y, xx)| {
        let own = x[(i, c, y, xx)];
        let partner = x[(p.perm[i], c, y, xx)];
        match p.pixels.for_sample(i).unwrap() {
            SampleMix::Keep => own,
            SampleMix::Blend(w) if w < 0.5 => partner + w * (own - partner),
            SampleMix::Blend(w) => own - (own - partner) * (1.0 - w),
            SampleMix::Paste(b) => {
                let inside = y >= b.y1 && y < b.y2 && xx >= b.x1 && xx < b.x2;
                if inside {
                    partner
                } else {
                    own
                }
            }
        }
    })
}

fn naive_u8(p: &MixParams, x: &Array4<u8>) -> Array4<u8> {
    Array4::from_shape_fn(x.dim(), |(i, c, y, xx)| {
        let own = x[(i, c, y, xx)];
        let partner = x[(p.perm[i], c, y, xx)];
        match p.pixels.for_sample(i).unwrap() {
            SampleMix::Keep => own,
            SampleMix::Blend(w) => {
                (f32::from(own) * w + f32::from(partner) * (1.0 - w)).round_ties_even() as u8
            }
            SampleMix::Paste(b) => {
                let inside = y >= b.y1 && y < b.y2 && xx >= b.x1 && xx < b.x2;
                if inside {
                    partner
                } else {
                    own
                }
            }
        }
    })
}

fn bits(a: &Array4<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn kernels_equal_the_serial_reference_bit_for_bit() {
    let x = batch_f32(2);
    let x8 = batch_u8(3);
    for p in params() {
        assert_eq!(
            bits(&p.apply(x.view()).unwrap()),
            bits(&naive_f32(&p, &x)),
            "{:?}",
            p.pixels
        );
        assert_eq!(
            p.apply_u8(x8.view()).unwrap(),
            naive_u8(&p, &x8),
            "{:?}",
            p.pixels
        );
    }
}

#[test]
fn blend_of_any_rank_equals_the_reference() {
    let x = batch_f32(4);
    let lam = [0.0, 0.1, 0.49, 0.5, 0.51, 0.9, 1.0, 0.25, 0.75];
    let perm = [8, 7, 6, 5, 4, 3, 2, 1, 0];
    let p = MixParams {
        lam: lam.to_vec(),
        perm: perm.to_vec(),
        pixels: PixelMix::Blend(lam.to_vec()),
    };
    let want = naive_f32(&p, &x);
    // The same data as a rank-2 batch (features) and a rank-5 batch (video-like).
    let flat = x
        .clone()
        .into_shape_with_order((9, 3 * 48 * 40))
        .unwrap()
        .into_dyn();
    let got = mix_core::mixup::blend(flat.view(), &lam, &perm).unwrap();
    assert_eq!(got.into_shape_with_order(x.raw_dim()).unwrap(), want);
    let five: ArrayD<f32> = x
        .clone()
        .into_shape_with_order(vec![9, 3, 6, 8, 40])
        .unwrap();
    let got = mix_core::mixup::blend(five.view(), &lam, &perm).unwrap();
    assert_eq!(got.into_shape_with_order(x.raw_dim()).unwrap(), want);
}

#[cfg(feature = "rayon")]
#[test]
fn thread_count_does_not_change_a_bit() {
    let x = batch_f32(5);
    let x8 = batch_u8(6);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            params()
                .iter()
                .map(|p| {
                    (
                        bits(&p.apply(x.view()).unwrap()),
                        p.apply_u8(x8.view()).unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(5));
}

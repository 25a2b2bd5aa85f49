//! mix-core speed on a 64x3x224x224 batch, each kernel next to the copy it is measured against.
//!
//! Yardsticks, measured in the same run: `copy_f32_into_preallocated` (ndarray `assign`, one
//! thread) and `identity_params_f32` (the same copy through mix-core's batch-parallel kernel), and
//! `copy_u8_into_preallocated` for the uint8 kernel. Targets: `blend_into` at most 2x the copy,
//! CutMix paste of a lambda = 0.5 box at most 1x. The peer `benches/peers/mix_ops.py` times the
//! same operations in torch (fastai-style, CPU) and numpy.
//! Run: `cargo bench -p mix-benches --bench mix_core` (add `-- --quick` for a short run).

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mix_core::cutmix::{paste_into, rand_bbox};
use mix_core::mixup::blend_into;
use mix_core::{ImageSize, MixParams, MixUp, PixelMix};
use ndarray::{Array4, ArrayView4};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SHAPE: (usize, usize, usize, usize) = (64, 3, 224, 224);

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x = Array4::from_shape_simple_fn(SHAPE, || rng.gen_range(-2.0f32..2.0));
    let x8 = Array4::from_shape_simple_fn(SHAPE, || rng.gen::<u8>());
    let mut out = Array4::<f32>::zeros(SHAPE);
    let mut out8 = Array4::<u8>::zeros(SHAPE);
    let mixup = MixUp::default().draw(SHAPE.0, &mut rng).unwrap();
    let (_, _, h, w) = SHAPE;
    // The lambda = 0.5 box, centred so that it is not clipped: 158 x 158 pixels.
    let bbox = rand_bbox(ImageSize::new(h, w), 0.5, w / 2, h / 2).unwrap();
    let blend_params: MixParams = mixup.clone().into();
    let identity = MixParams::identity(SHAPE.0);

    let mut g = c.benchmark_group("mix_core_64x3x224x224");
    g.sample_size(20);
    g.throughput(Throughput::Bytes((x.len() * 4) as u64));
    g.bench_function("copy_f32_into_preallocated", |b| {
        b.iter(|| out.assign(std::hint::black_box(&x)))
    });
    g.bench_function("identity_params_f32", |b| {
        b.iter(|| identity.apply_into(view(&x), out.view_mut()).unwrap())
    });
    g.bench_function("blend_into", |b| {
        b.iter(|| {
            blend_into(
                view(&x).into_dyn(),
                &mixup.lam,
                &mixup.perm,
                out.view_mut().into_dyn(),
            )
            .unwrap()
        })
    });
    g.bench_function("cutmix_paste_into_lam_0.5", |b| {
        b.iter(|| paste_into(view(&x), &mixup.perm, bbox, out.view_mut()).unwrap())
    });
    g.throughput(Throughput::Bytes(x8.len() as u64));
    g.bench_function("copy_u8_into_preallocated", |b| {
        b.iter(|| out8.assign(std::hint::black_box(&x8)))
    });
    g.bench_function("u8_collate_blend", |b| {
        b.iter(|| {
            blend_params
                .apply_u8_into(x8.view(), out8.view_mut())
                .unwrap()
        })
    });
    let boxes = MixParams {
        pixels: PixelMix::Boxes(vec![bbox; SHAPE.0]),
        ..blend_params.clone()
    };
    g.bench_function("u8_collate_cutmix", |b| {
        b.iter(|| boxes.apply_u8_into(x8.view(), out8.view_mut()).unwrap())
    });
    g.finish();
}

/// A view the optimiser cannot see through.
fn view(x: &Array4<f32>) -> ArrayView4<'_, f32> {
    std::hint::black_box(x.view())
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Proptest strategies shared by the integration tests: small shapes, batches, perms, weights, boxes.

// Each test file uses a different subset of these strategies.
#![allow(dead_code)]

use mix_core::{BBox, BatchShape, ImageSize};
use ndarray::Array4;
use proptest::collection::vec;
use proptest::prelude::*;

/// NCHW shapes with 1..=6 samples and small, often non-square images.
pub fn shape() -> impl Strategy<Value = BatchShape> {
    (1usize..=6, 1usize..=3, 1usize..=9, 1usize..=9)
        .prop_map(|(n, c, h, w)| BatchShape::new(n, c, ImageSize::new(h, w)))
}

/// An f32 batch of `shape` with values in [-100, 100].
pub fn images(shape: BatchShape) -> impl Strategy<Value = Array4<f32>> {
    let len = shape.batch * shape.channels * shape.size.area();
    vec(-100.0f32..100.0, len)
        .prop_map(move |v| Array4::from_shape_vec(shape.dim(), v).expect("length matches shape"))
}

/// A uint8 batch of `shape`.
pub fn images_u8(shape: BatchShape) -> impl Strategy<Value = Array4<u8>> {
    let len = shape.batch * shape.channels * shape.size.area();
    vec(any::<u8>(), len)
        .prop_map(move |v| Array4::from_shape_vec(shape.dim(), v).expect("length matches shape"))
}

/// A uniformly shuffled permutation of `0..n`.
pub fn perm(n: usize) -> impl Strategy<Value = Vec<usize>> {
    Just((0..n).collect::<Vec<_>>()).prop_shuffle()
}

/// `n` weights in [0, 1], with the edges and the lerp branch point 0.5 drawn often.
pub fn weights(n: usize) -> impl Strategy<Value = Vec<f32>> {
    vec(
        prop_oneof![Just(0.0f32), Just(0.5f32), Just(1.0f32), 0.0f32..=1.0],
        n,
    )
}

/// Any box inside an image of `size`, empty and full ones included.
pub fn bbox(size: ImageSize) -> impl Strategy<Value = BBox> {
    let ImageSize { height, width } = size;
    (0..=width, 0..=width, 0..=height, 0..=height).prop_map(|(a, b, c, d)| BBox {
        x1: a.min(b),
        x2: a.max(b),
        y1: c.min(d),
        y2: c.max(d),
    })
}

/// A batch, one weight per sample and a permutation.
pub fn blend_case() -> impl Strategy<Value = (Array4<f32>, Vec<f32>, Vec<usize>)> {
    shape().prop_flat_map(|s| (images(s), weights(s.batch), perm(s.batch)))
}

/// A batch, a permutation and a box inside its images.
pub fn paste_case() -> impl Strategy<Value = (Array4<f32>, Vec<usize>, BBox)> {
    shape().prop_flat_map(|s| (images(s), perm(s.batch), bbox(s.size)))
}

/// The alphas the issue names, plus anything in between.
pub fn alpha() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(0.2f32),
        Just(0.4f32),
        Just(1.0f32),
        Just(2.0f32),
        Just(5.0f32),
        0.05f32..10.0
    ]
}

/// A generator seed.
pub fn seed() -> impl Strategy<Value = u64> {
    any::<u64>()
}

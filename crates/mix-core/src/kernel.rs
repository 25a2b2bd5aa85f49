//! The per-sample loops behind every applier, and the one place that decides serial or rayon.
//!
//! Every kernel writes sample `i` of the output from samples `i` and `perm[i]` of the input and
//! nothing else, so the order the samples are visited in (or the thread that visits them) cannot
//! change a single bit of the result.

use ndarray::{
    s, ArrayView, ArrayView3, ArrayViewMut, ArrayViewMut3, Axis, Dimension, RemoveAxis, Zip,
};

use crate::cutmix::BBox;
use crate::params::SampleMix;

/// Below this many elements in a whole batch, threads cost more than they save (targets, tiny tests).
#[cfg(feature = "rayon")]
const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// Calls `f(i, out_i)` for every sample `i` along axis 0: on rayon's pool when the `rayon` feature
/// is on and the batch is big enough, else in order. Results are identical either way.
pub(crate) fn for_each_sample<T, D, F>(mut out: ArrayViewMut<'_, T, D>, f: F)
where
    T: Send + Sync,
    D: RemoveAxis,
    F: Fn(usize, ArrayViewMut<'_, T, D::Smaller>) + Send + Sync,
{
    #[cfg(feature = "rayon")]
    {
        use rayon::iter::{IndexedParallelIterator, IntoParallelIterator, ParallelIterator};
        if out.len() >= PARALLEL_MIN_ELEMENTS && out.len_of(Axis(0)) > 1 {
            out.axis_iter_mut(Axis(0))
                .into_par_iter()
                .enumerate()
                .for_each(|(i, o)| f(i, o));
            return;
        }
    }
    for (i, o) in out.axis_iter_mut(Axis(0)).enumerate() {
        f(i, o);
    }
}

/// torch.lerp(start = partner, end = own, weight = w), with torch's two-sided formula: it returns
/// `partner` exactly at w = 0 and `own` exactly at w = 1.
#[inline(always)]
pub(crate) fn lerp(own: f32, partner: f32, w: f32) -> f32 {
    if w < 0.5 {
        partner + w * (own - partner)
    } else {
        own - (own - partner) * (1.0 - w)
    }
}

/// `out = lerp(partner, own, w)` elementwise, for one sample of any rank.
pub(crate) fn blend_sample<D: Dimension>(
    own: ArrayView<'_, f32, D>,
    partner: ArrayView<'_, f32, D>,
    w: f32,
    mut out: ArrayViewMut<'_, f32, D>,
) {
    // The branch is hoisted out of the loop so that each loop is one straight, vectorisable line.
    if let (Some(a), Some(p), Some(o)) = (own.as_slice(), partner.as_slice(), out.as_slice_mut()) {
        if w < 0.5 {
            for ((o, &a), &p) in o.iter_mut().zip(a).zip(p) {
                *o = p + w * (a - p);
            }
        } else {
            let v = 1.0 - w;
            for ((o, &a), &p) in o.iter_mut().zip(a).zip(p) {
                *o = a - (a - p) * v;
            }
        }
    } else {
        Zip::from(&mut out)
            .and(&own)
            .and(&partner)
            .for_each(|o, &a, &p| *o = lerp(a, p, w));
    }
}

/// Adding 2^23 to a float in [0, 2^23) rounds it to the nearest integer, ties to even (the default
/// IEEE rounding mode, numpy's `rint`), and leaves that integer in the low mantissa bits; reading
/// them back is integer work that vectorises on every x86-64, unlike `round_ties_even` and a
/// saturating float-to-int cast.
const ROUND_MAGIC: f32 = 8_388_608.0;

/// timm's `blend` for uint8: `rint(own * w + partner * (1 - w))` computed in f32.
#[inline(always)]
pub(crate) fn blend_u8_value(own: u8, partner: u8, w: f32, v: f32) -> u8 {
    let y = f32::from(own) * w + f32::from(partner) * v;
    // y lies in [0, 255] up to a last-bit overshoot, which the rounding removes, so the low
    // eight bits are the whole result.
    ((y + ROUND_MAGIC).to_bits() & 0xff) as u8
}

/// `out = rint(own * w + partner * (1 - w))` elementwise on uint8, for one sample of any rank.
pub(crate) fn blend_u8_sample<D: Dimension>(
    own: ArrayView<'_, u8, D>,
    partner: ArrayView<'_, u8, D>,
    w: f32,
    mut out: ArrayViewMut<'_, u8, D>,
) {
    let v = 1.0 - w;
    if let (Some(a), Some(p), Some(o)) = (own.as_slice(), partner.as_slice(), out.as_slice_mut()) {
        for ((o, &a), &p) in o.iter_mut().zip(a).zip(p) {
            *o = blend_u8_value(a, p, w, v);
        }
    } else {
        Zip::from(&mut out)
            .and(&own)
            .and(&partner)
            .for_each(|o, &a, &p| *o = blend_u8_value(a, p, w, v));
    }
}

/// One CHW sample: `own` outside `bbox`, `partner` inside, written in a single pass over `out`.
pub(crate) fn paste_sample<T: Copy>(
    own: ArrayView3<'_, T>,
    partner: ArrayView3<'_, T>,
    bbox: BBox,
    mut out: ArrayViewMut3<'_, T>,
) {
    let (channels, height, width) = own.dim();
    if let (Some(a), Some(p), Some(o)) = (own.as_slice(), partner.as_slice(), out.as_slice_mut()) {
        // In memory order the sample alternates between runs of `own` and the partner's box rows
        // (one per channel and box row). Everything from the end of one box row to the start of
        // the next, across row and channel ends, is a single run of `own`: two copies per box row.
        let BBox { x1, y1, x2, y2 } = bbox;
        let mut done = 0;
        if !bbox.is_empty() {
            for c in 0..channels {
                for y in y1..y2 {
                    let start = (c * height + y) * width + x1;
                    let end = start + (x2 - x1);
                    o[done..start].copy_from_slice(&a[done..start]);
                    o[start..end].copy_from_slice(&p[start..end]);
                    done = end;
                }
            }
        }
        o[done..].copy_from_slice(&a[done..]);
    } else {
        out.assign(&own);
        let region = s![.., bbox.y1..bbox.y2, bbox.x1..bbox.x2];
        out.slice_mut(region).assign(&partner.slice(region));
    }
}

/// Applies one [`SampleMix`] to one f32 CHW sample.
pub(crate) fn apply_sample_f32(
    op: SampleMix,
    own: ArrayView3<'_, f32>,
    partner: ArrayView3<'_, f32>,
    mut out: ArrayViewMut3<'_, f32>,
) {
    match op {
        SampleMix::Keep => out.assign(&own),
        SampleMix::Blend(w) => blend_sample(own, partner, w, out),
        SampleMix::Paste(bbox) => paste_sample(own, partner, bbox, out),
    }
}

/// Applies one [`SampleMix`] to one uint8 CHW sample.
pub(crate) fn apply_sample_u8(
    op: SampleMix,
    own: ArrayView3<'_, u8>,
    partner: ArrayView3<'_, u8>,
    mut out: ArrayViewMut3<'_, u8>,
) {
    match op {
        SampleMix::Keep => out.assign(&own),
        SampleMix::Blend(w) => blend_u8_sample(own, partner, w, out),
        SampleMix::Paste(bbox) => paste_sample(own, partner, bbox, out),
    }
}

//! Input checks shared by every kernel: batch sizes, permutations, weights and boxes.

use crate::cutmix::BBox;
use crate::{Error, ImageSize, Result};

/// Rejects an empty batch.
pub(crate) fn batch(batch: usize) -> Result<()> {
    if batch == 0 {
        Err(Error::EmptyBatch)
    } else {
        Ok(())
    }
}

/// Checks that `len` (the length of argument `what`) is the batch size.
pub(crate) fn length(what: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            what,
            expected,
            found,
        })
    }
}

/// Checks that `perm` is a permutation of `0..batch`.
pub(crate) fn perm(perm: &[usize], batch: usize) -> Result<()> {
    length("perm", batch, perm.len())?;
    let mut seen = vec![false; batch];
    for &p in perm {
        let slot = seen.get_mut(p).ok_or_else(|| Error::NotAPermutation {
            len: batch,
            problem: format!("{p} (out of range)"),
        })?;
        if *slot {
            return Err(Error::NotAPermutation {
                len: batch,
                problem: format!("{p} twice"),
            });
        }
        *slot = true;
    }
    Ok(())
}

/// Checks one weight in [0, 1].
pub(crate) fn weight(index: usize, value: f32) -> Result<()> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::LambdaOutOfRange { index, value })
    }
}

/// Checks one weight per sample, each in [0, 1].
pub(crate) fn weights(what: &'static str, lam: &[f32], batch: usize) -> Result<()> {
    length(what, batch, lam.len())?;
    lam.iter().enumerate().try_for_each(|(i, &l)| weight(i, l))
}

/// Checks that a box is not inverted and lies inside an image of `size`.
pub(crate) fn bbox(index: usize, bbox: BBox, size: ImageSize) -> Result<()> {
    if bbox.x1 <= bbox.x2 && bbox.x2 <= size.width && bbox.y1 <= bbox.y2 && bbox.y2 <= size.height {
        Ok(())
    } else {
        Err(Error::BoxOutOfImage { index, bbox, size })
    }
}

/// Rejects an image with no pixels, where a box area must be divided by the image area.
pub(crate) fn image(size: ImageSize) -> Result<()> {
    if size.is_empty() {
        Err(Error::EmptyImage { size })
    } else {
        Ok(())
    }
}

/// Checks that an array shape equals the expected one.
pub(crate) fn shape(what: &'static str, expected: &[usize], found: &[usize]) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what,
            expected: expected.to_vec(),
            found: found.to_vec(),
        })
    }
}

/// Turns a failed range check of setting `name` into an error that shows the allowed `range`.
pub(crate) fn setting(name: &'static str, range: &'static str, value: f32, ok: bool) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::OutOfRange { name, range, value })
    }
}

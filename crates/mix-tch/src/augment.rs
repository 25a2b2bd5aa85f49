//! fastai's batch transforms on the device (fastai/vision/augment.py): `aug_transforms` (flip, warp, rotate,
//! zoom composed into one grid and resampled once; brightness and contrast in logit space), the validation
//! resize through the same grid sampler, and `Normalize`.
//!
//! Random draws come from a passed Rust rng on the CPU (per sample, as fastai does with `batch=False`), so a
//! seeded run augments identically on every device; the pixels are then moved by one `grid_sample` on the
//! device the batch lives on.

use crate::{Error, Result};
use rand::Rng;
use tch::{Device, Kind, Tensor};

/// ImageNet channel means (fastai's `imagenet_stats`).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (fastai's `imagenet_stats`).
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// `grid_sampler` interpolation code for bilinear.
const BILINEAR: i64 = 0;
/// `grid_sampler` padding code for reflection.
const REFLECTION: i64 = 2;

/// The arguments of fastai's `aug_transforms`, with its defaults from [`aug_transforms`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AugTransforms {
    /// Output `(height, width)`; every batch is resampled to it (fastai's `size`).
    pub size: (i64, i64),
    /// Multiplier of `max_rotate`, `max_lighting` and `max_warp`.
    pub mult: f64,
    /// Random horizontal flip with probability 0.5.
    pub do_flip: bool,
    /// Largest rotation in degrees.
    pub max_rotate: f64,
    /// Smallest zoom factor.
    pub min_zoom: f64,
    /// Largest zoom factor.
    pub max_zoom: f64,
    /// Largest brightness and contrast change.
    pub max_lighting: f64,
    /// Largest perspective warp.
    pub max_warp: f64,
    /// Probability of each of warp (x and y separately), rotate and zoom, per sample.
    pub p_affine: f64,
    /// Probability of each of brightness and contrast, per sample.
    pub p_lighting: f64,
}

/// fastai's `aug_transforms(size=size)` with every other argument at its default: flip p=0.5, warp 0.2,
/// rotate 10 degrees, zoom 1..1.1 (each p=0.75), brightness and contrast 0.2 (p=0.75).
pub fn aug_transforms(size: i64) -> AugTransforms {
    AugTransforms {
        size: (size, size),
        mult: 1.0,
        do_flip: true,
        max_rotate: 10.0,
        min_zoom: 1.0,
        max_zoom: 1.1,
        max_lighting: 0.2,
        max_warp: 0.2,
        p_affine: 0.75,
        p_lighting: 0.75,
    }
}

/// The random part of one batch's augmentation, one entry per sample, drawn by [`AugTransforms::draw`].
#[derive(Debug, Clone, PartialEq)]
pub struct AugDraw {
    /// Horizontal flip.
    pub flip: Vec<bool>,
    /// Rotation angle in degrees (0 when not applied).
    pub rotate_deg: Vec<f64>,
    /// Zoom factor (1 when not applied).
    pub zoom: Vec<f64>,
    /// Zoom centre, `(col_pct, row_pct)` in [0, 1].
    pub zoom_center: Vec<(f64, f64)>,
    /// Perspective warp magnitudes `(x_t, y_t)` (0 when not applied).
    pub warp: Vec<(f64, f64)>,
    /// Brightness target in (0, 1), 0.5 meaning unchanged.
    pub brightness: Vec<f64>,
    /// Contrast factor, 1 meaning unchanged.
    pub contrast: Vec<f64>,
}

impl AugDraw {
    /// A draw that changes nothing for `n` samples.
    pub fn identity(n: usize) -> Self {
        AugDraw {
            flip: vec![false; n],
            rotate_deg: vec![0.0; n],
            zoom: vec![1.0; n],
            zoom_center: vec![(0.5, 0.5); n],
            warp: vec![(0.0, 0.0); n],
            brightness: vec![0.5; n],
            contrast: vec![1.0; n],
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.flip.len()
    }

    /// Whether the draw is for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.flip.is_empty()
    }

    /// The 2x3 affine matrices fastai hands to `affine_grid`: `flip @ rotate @ zoom`, then `_prepare_mat`'s
    /// aspect correction for an input of `in_h` x `in_w`.
    pub fn affine(&self, in_h: i64, in_w: i64) -> Vec<[f64; 6]> {
        (0..self.len())
            .map(|i| {
                let f = if self.flip[i] { -1.0 } else { 1.0 };
                let flip = [[f, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
                let t = self.rotate_deg[i].to_radians();
                let rot = [
                    [t.cos(), t.sin(), 0.0],
                    [-t.sin(), t.cos(), 0.0],
                    [0.0, 0.0, 1.0],
                ];
                let s = 1.0 / self.zoom[i];
                let (col, row) = self.zoom_center[i];
                let zoom = [
                    [s, 0.0, (1.0 - s) * (2.0 * col - 1.0)],
                    [0.0, s, (1.0 - s) * (2.0 * row - 1.0)],
                    [0.0, 0.0, 1.0],
                ];
                let m = matmul3(&matmul3(&flip, &rot), &zoom);
                let (h, w) = (in_h as f64, in_w as f64);
                [
                    m[0][0],
                    m[0][1] * h / w,
                    m[0][2],
                    m[1][0] * w / h,
                    m[1][1],
                    m[1][2],
                ]
            })
            .collect()
    }

    /// The homography coefficients `c0..c7` of each sample's warp (fastai's `find_coeffs(orig_pts, targ_pts)`),
    /// mapping output grid coordinates to source coordinates.
    pub fn warp_coeffs(&self) -> Vec<[f64; 8]> {
        self.warp
            .iter()
            .map(|&(x_t, y_t)| {
                let orig = [(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)];
                let targ = [
                    (-1.0 - y_t, -1.0 - x_t),
                    (-1.0 + y_t, 1.0 + x_t),
                    (1.0 + y_t, -1.0 + x_t),
                    (1.0 - y_t, 1.0 - x_t),
                ];
                find_coeffs(&orig, &targ)
            })
            .collect()
    }
}

fn matmul3(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

/// Solves fastai's 8x8 system for the perspective transform taking `p2` to `p1`.
fn find_coeffs(p1: &[(f64, f64); 4], p2: &[(f64, f64); 4]) -> [f64; 8] {
    let mut a = [[0.0f64; 9]; 8];
    for i in 0..4 {
        let (x1, y1) = p1[i];
        let (x2, y2) = p2[i];
        a[2 * i] = [x2, y2, 1.0, 0.0, 0.0, 0.0, -x1 * x2, -x1 * y2, x1];
        a[2 * i + 1] = [0.0, 0.0, 0.0, x2, y2, 1.0, -y1 * x2, -y1 * y2, y1];
    }
    // Gauss-Jordan elimination with partial pivoting on the augmented matrix.
    for col in 0..8 {
        let pivot = (col..8)
            .max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        let pivot_row = a[col];
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot_row[col];
                for (x, p) in row.iter_mut().zip(pivot_row.iter()).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    std::array::from_fn(|i| a[i][8] / a[i][i])
}

/// fastai's `mask_tensor` for one sample: the drawn value with probability `p`, else `neutral`.
fn masked(rng: &mut impl Rng, p: f64, value: f64, neutral: f64) -> f64 {
    if p >= 1.0 || rng.gen::<f64>() < p {
        value
    } else {
        neutral
    }
}

impl AugTransforms {
    /// Draws the random part for a batch of `n` samples.
    pub fn draw(&self, n: usize, rng: &mut impl Rng) -> AugDraw {
        let max_rotate = self.max_rotate * self.mult;
        let max_lighting = self.max_lighting * self.mult;
        let max_warp = self.max_warp * self.mult;
        let mut d = AugDraw::identity(n);
        for i in 0..n {
            if self.do_flip {
                d.flip[i] = rng.gen::<f64>() < 0.5;
            }
            if max_warp > 0.0 {
                let x_t = rng.gen_range(-max_warp..=max_warp);
                let x_t = masked(rng, self.p_affine, x_t, 0.0);
                let y_t = rng.gen_range(-max_warp..=max_warp);
                let y_t = masked(rng, self.p_affine, y_t, 0.0);
                d.warp[i] = (x_t, y_t);
            }
            if max_rotate > 0.0 {
                let deg = rng.gen_range(-max_rotate..=max_rotate);
                d.rotate_deg[i] = masked(rng, self.p_affine, deg, 0.0);
            }
            if self.min_zoom < 1.0 || self.max_zoom > 1.0 {
                let z = rng.gen_range(self.min_zoom..=self.max_zoom);
                d.zoom[i] = masked(rng, self.p_affine, z, 1.0);
                d.zoom_center[i] = (rng.gen::<f64>(), rng.gen::<f64>());
            }
            if max_lighting > 0.0 {
                let b = rng.gen_range(0.5 * (1.0 - max_lighting)..=0.5 * (1.0 + max_lighting));
                d.brightness[i] = masked(rng, self.p_lighting, b, 0.5);
                let lo = (1.0 - max_lighting).ln();
                let c = rng.gen_range(lo..=-lo).exp();
                d.contrast[i] = masked(rng, self.p_lighting, c, 1.0);
            }
        }
        d
    }

    /// Training transform of a float batch `(N, C, H, W)` in [0, 1]: one affine+warp resample to `size`
    /// (bilinear, reflection padding, align_corners=True), then brightness and contrast in logit space.
    pub fn apply(&self, x: &Tensor, draw: &AugDraw) -> Result<Tensor> {
        let (n, _, h, w) = check_batch(x, draw.len())?;
        let theta = draw.affine(h, w);
        let mut grid = affine_grid(&theta, x, self.size)?;
        if draw.warp.iter().any(|&(a, b)| a != 0.0 || b != 0.0) {
            grid = apply_perspective(&grid, &draw.warp_coeffs())?;
        }
        let out = x.f_grid_sampler(&grid, BILINEAR, REFLECTION, true)?;
        if self.max_lighting * self.mult <= 0.0 {
            return Ok(out);
        }
        let device = x.device();
        let per_sample = |v: &[f64]| {
            Tensor::from_slice(&v.iter().map(|&a| a as f32).collect::<Vec<_>>())
                .to_device(device)
                .view([n, 1, 1, 1])
        };
        let brightness = logit(&per_sample(&draw.brightness));
        let contrast = per_sample(&draw.contrast);
        Ok(((logit(&out) + brightness) * contrast).sigmoid())
    }

    /// Validation transform (fastai's `AffineCoordTfm` with `split_idx=1`): the identity grid resampled to
    /// `size`, no randomness.
    pub fn apply_valid(&self, x: &Tensor) -> Result<Tensor> {
        let (n, _, h, w) = check_batch(x, usize::MAX)?;
        let theta = AugDraw::identity(n as usize).affine(h, w);
        let grid = affine_grid(&theta, x, self.size)?;
        Ok(x.f_grid_sampler(&grid, BILINEAR, REFLECTION, true)?)
    }
}

fn check_batch(x: &Tensor, n: usize) -> Result<(i64, i64, i64, i64)> {
    let size = x.size();
    match size.as_slice() {
        &[b, c, h, w] if (n == usize::MAX || b as usize == n) && x.kind() == Kind::Float => {
            Ok((b, c, h, w))
        }
        _ => Err(Error::Invalid(format!(
            "expected a float batch (N, C, H, W) with N = {n}, found {:?} of {:?}",
            size,
            x.kind()
        ))),
    }
}

/// `F.affine_grid(theta, (N, C, out_h, out_w), align_corners=True)` with theta from the CPU.
fn affine_grid(theta: &[[f64; 6]], x: &Tensor, size: (i64, i64)) -> Result<Tensor> {
    let n = theta.len() as i64;
    let flat: Vec<f32> = theta.iter().flatten().map(|&v| v as f32).collect();
    let theta = Tensor::from_slice(&flat)
        .view([n, 2, 3])
        .to_device(x.device());
    let c = x.size()[1];
    Ok(Tensor::f_affine_grid_generator(
        &theta,
        [n, c, size.0, size.1],
        true,
    )?)
}

/// fastai's `apply_perspective`: `(x, y) -> ((c0 x + c1 y + c2) / (c6 x + c7 y + 1), (c3 x + c4 y + c5) / (…))`.
fn apply_perspective(grid: &Tensor, coeffs: &[[f64; 8]]) -> Result<Tensor> {
    let size = grid.size();
    let n = size[0];
    let mut m: Vec<f32> = Vec::with_capacity(coeffs.len() * 9);
    for c in coeffs {
        m.extend(c.iter().map(|&v| v as f32));
        m.push(1.0);
    }
    let m = Tensor::from_slice(&m)
        .view([n, 3, 3])
        .to_device(grid.device());
    let coords = grid.f_view([n, -1, 2])?;
    // coords @ m[..., :2]^T + m[..., 2]
    let lin = m.narrow(2, 0, 2).transpose(1, 2);
    let coords1 = coords.f_bmm(&lin)? + m.narrow(2, 2, 1).transpose(1, 2);
    let xy = coords1.narrow(2, 0, 2) / coords1.narrow(2, 2, 1);
    Ok(xy.f_view(size.as_slice())?)
}

/// fastai's `logit`: `-(1/x - 1).log()` after clamping to [1e-7, 1 - 1e-7].
pub fn logit(x: &Tensor) -> Tensor {
    let x = x.clamp(1e-7, 1.0 - 1e-7);
    -(x.reciprocal() - 1.0).log()
}

/// fastai's `Normalize.from_stats(mean, std)` on a `(N, 3, H, W)` float batch.
pub fn normalize(x: &Tensor, mean: [f64; 3], std: [f64; 3]) -> Tensor {
    let device = x.device();
    let t = |v: [f64; 3]| {
        Tensor::from_slice(&v.map(|a| a as f32))
            .to_device(device)
            .view([1, 3, 1, 1])
    };
    (x - t(mean)) / t(std)
}

/// The inverse of [`normalize`] (for pictures of augmented batches).
pub fn denormalize(x: &Tensor, mean: [f64; 3], std: [f64; 3]) -> Tensor {
    let device = x.device();
    let t = |v: [f64; 3]| {
        Tensor::from_slice(&v.map(|a| a as f32))
            .to_device(device)
            .view([1, 3, 1, 1])
    };
    x * t(std) + t(mean)
}

/// fastai's `IntToFloatTensor`: a `u8` batch `(N, C, H, W)` as floats in [0, 1] on `device`.
pub fn to_float(images: &Tensor, device: Device) -> Tensor {
    images.to_device(device).to_kind(Kind::Float) / 255.0
}

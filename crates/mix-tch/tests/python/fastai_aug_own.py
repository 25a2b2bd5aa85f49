"""Oracle for mix-tch's aug_transforms that runs fastai's OWN code: `aug_transforms(size=...)`
(fastai/vision/augment.py) as `setup_aug_tfms` composes it (one `AffineCoordTfm` holding `flip_mat`,
`rotate_mat`, `zoom_mat` and a `_WarpCoord`, one `LightingTfm` holding `_BrightnessLogit` and
`_ContrastLogit`), called as the batch transform is, `tfm(x, split_idx=...)`.

Its random draws are pinned through fastai's own hooks: the values through the `draw=` arguments (the
partials' `draw`, `draw_x`, `draw_y` keywords, `_WarpCoord.draw_x/draw_y`, the lighting functions'
`draw`), and the do-masks by replacing `Tensor.bernoulli_`, which `mask_tensor` calls once per masked
draw, in fastai's order: flip, rotate, zoom, warp x, warp y, brightness, contrast.

Usage: python fastai_aug_own.py IN OUT
IN (safetensors), for each case name C listed in `cases` (a uint8 string of names joined by ','):
  C.x (N, 3, H, W) float32 in [0, 1]; C.size (2,) int64; C.valid (1,) int64;
  for a training case, C.<draw> and C.<draw>_mask (N,) float64 for draw in rotate, zoom, col, row,
  warp_x, warp_y, brightness, contrast, and C.flip_mask.
OUT (safetensors): C.y, the transformed batch (before Normalize).
"""
import sys

import torch
from fastai.torch_core import TensorImage
from fastai.vision.augment import AffineCoordTfm, LightingTfm, aug_transforms
from safetensors.torch import load_file, save_file

t = load_file(sys.argv[1])
cases = bytes(t["cases"].tolist()).decode().split(",")
out = {}
for c in cases:
    x = TensorImage(t[f"{c}.x"])
    size = tuple(int(v) for v in t[f"{c}.size"])
    tfms = aug_transforms(size=size)
    aff, light = tfms
    assert isinstance(aff, AffineCoordTfm) and isinstance(light, LightingTfm) and len(tfms) == 2
    if int(t[f"{c}.valid"][0]):
        torch.manual_seed(0)
        y = light(aff(x, split_idx=1), split_idx=1)
        out[f"{c}.y"] = torch.as_tensor(y).contiguous()
        continue
    lst = lambda k: [float(v) for v in t[f"{c}.{k}"]]
    flip_f, rot_f, zoom_f = aff.aff_fs
    assert [f.func.__name__ for f in aff.aff_fs] == ["flip_mat", "rotate_mat", "zoom_mat"]
    rot_f.keywords["draw"] = lst("rotate")
    zoom_f.keywords.update(draw=lst("zoom"), draw_x=lst("col"), draw_y=lst("row"))
    (warp,) = aff.coord_fs
    warp.draw_x, warp.draw_y = lst("warp_x"), lst("warp_y")
    bright, contrast = light.fs
    bright.draw, contrast.draw = lst("brightness"), lst("contrast")
    masks = [t[f"{c}.{k}_mask"] for k in
             ["flip", "rotate", "zoom", "warp_x", "warp_y", "brightness", "contrast"]]
    saved = torch.Tensor.bernoulli_

    def pinned(self, *args, **kwargs):
        m = masks.pop(0)
        assert m.shape == self.shape, (m.shape, self.shape)
        return self.copy_(m.to(self.dtype))

    torch.Tensor.bernoulli_ = pinned
    try:
        y = light(aff(x, split_idx=0), split_idx=0)
    finally:
        torch.Tensor.bernoulli_ = saved
    assert not masks, f"fastai drew {7 - len(masks)} masks, expected 7"
    out[f"{c}.y"] = torch.as_tensor(y).contiguous()
save_file(out, sys.argv[2])

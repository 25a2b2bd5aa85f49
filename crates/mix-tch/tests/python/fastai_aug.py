"""Oracle for mix-tch's aug_transforms: fastai's batch-transform code (fastai/vision/augment.py) restated
on torch with fixed draws (every probability 1, the `draw=` lists carrying the values mix-tch drew).

Usage: python fastai_aug.py IN OUT
IN (safetensors): x (N,C,H,W) in [0,1]; flip, rotate, zoom, col, row, warp_x, warp_y, brightness,
contrast (N,) float64; size (2,) int64 (h, w); valid (1,) int64 (1 = validation resize only).
OUT (safetensors): y, the transformed batch.
"""
import math
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

t = load_file(sys.argv[1])
x = t["x"]
n = x.shape[0]
size = tuple(int(v) for v in t["size"])
valid = bool(int(t["valid"][0]))


def affine_mat(*ms):
    t0, t1 = torch.zeros_like, torch.ones_like
    return torch.stack([torch.stack([ms[0], ms[1], ms[2]], dim=1),
                        torch.stack([ms[3], ms[4], ms[5]], dim=1),
                        torch.stack([t0(ms[0]), t0(ms[0]), t1(ms[0])], dim=1)], dim=1)


def drawn(name):
    return t[name].float()


def flip_mat():
    mask = x.new_ones(n) - 2 * drawn("flip")
    z = torch.zeros_like(mask)
    return affine_mat(mask, z, z, z, torch.ones_like(mask), z)


def rotate_mat():
    thetas = drawn("rotate") * math.pi / 180
    z = torch.zeros_like(thetas)
    return affine_mat(thetas.cos(), thetas.sin(), z, -thetas.sin(), thetas.cos(), z)


def zoom_mat():
    s = 1 / drawn("zoom")
    col_c = (1 - s) * (2 * drawn("col") - 1)
    row_c = (1 - s) * (2 * drawn("row") - 1)
    z = torch.zeros_like(s)
    return affine_mat(s, z, col_c, z, s, row_c)


def find_coeffs(p1, p2):
    m = []
    p = p1[:, 0, 0]
    t0, t1 = torch.zeros_like, torch.ones_like
    for i in range(p1.shape[1]):
        m.append(torch.stack([p2[:, i, 0], p2[:, i, 1], t1(p), t0(p), t0(p), t0(p), -p1[:, i, 0] * p2[:, i, 0], -p1[:, i, 0] * p2[:, i, 1]]))
        m.append(torch.stack([t0(p), t0(p), t0(p), p2[:, i, 0], p2[:, i, 1], t1(p), -p1[:, i, 1] * p2[:, i, 0], -p1[:, i, 1] * p2[:, i, 1]]))
    A = torch.stack(m).permute(2, 0, 1)
    B = p1.view(p1.shape[0], 8, 1)
    return torch.linalg.solve(A, B)


def apply_perspective(coords, coeffs):
    sz = coords.shape
    coords = coords.view(sz[0], -1, 2)
    coeffs = torch.cat([coeffs, torch.ones_like(coeffs[:, :1])], dim=1).view(coeffs.shape[0], 3, 3)
    coords1 = coords @ coeffs[..., :2].transpose(1, 2) + coeffs[..., 2].unsqueeze(1)
    if (coords1[..., 2] == 0.).any():
        return coords[..., :2].view(*sz)
    coords = coords1 / coords1[..., 2].unsqueeze(-1)
    return coords[..., :2].view(*sz)


def warp(coords):
    x_t, y_t = drawn("warp_x"), drawn("warp_y")
    orig_pts = torch.tensor([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=x.dtype).unsqueeze(0).expand(n, 4, 2)
    targ_pts = torch.stack([torch.stack([-1 - y_t, -1 - x_t]), torch.stack([-1 + y_t, 1 + x_t]),
                            torch.stack([1 + y_t, -1 + x_t]), torch.stack([1 - y_t, 1 - x_t])]).permute(2, 0, 1)
    return apply_perspective(coords, find_coeffs(orig_pts, targ_pts))


def prepare_mat(mat):
    h, w = x.shape[-2:]
    mat[:, 0, 1] *= h / w
    mat[:, 1, 0] *= w / h
    return mat[:, :2]


def logit(v):
    v = v.clamp(1e-7, 1 - 1e-7)
    return -(1 / v - 1).log()


mat = torch.eye(3).float().unsqueeze(0).expand(n, 3, 3).contiguous()
if not valid:
    for m in [flip_mat(), rotate_mat(), zoom_mat()]:
        mat = mat @ m
mat = prepare_mat(mat)
coords = F.affine_grid(mat, x.shape[:2] + size, align_corners=True)
if not valid:
    coords = warp(coords)
y = F.grid_sample(x, coords, mode="bilinear", padding_mode="reflection", align_corners=True)
if not valid:
    y = logit(y)
    y = y.add_(logit(drawn("brightness")[:, None, None, None]))
    y = y.mul_(drawn("contrast")[:, None, None, None])
    y = torch.sigmoid(y)
save_file({"y": y.contiguous()}, sys.argv[2])

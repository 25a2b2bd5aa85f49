#!/usr/bin/env python3
"""Peer of benches/benches/mix_core.rs: the same mixing operations in torch (CPU) and numpy.

On a 64x3x224x224 float32 batch (uint8 for the collate row), each timed call does what the Rust
figure beside it does:
  torch_copy        out.copy_(x) into a preallocated tensor (the yardstick)
  numpy_copy        np.copyto(out, x) into a preallocated array
  fastai_mixup      fastai's MixUp.before_batch (alpha 0.4): Beta draws, max(lam, 1 - lam),
                    randperm, x[shuffle], torch.lerp; fastai's own callback when fastai is
                    importable, else the same torch calls copied from fastai/callback/mixup.py
  fastai_cutmix     fastai's CutMix.before_batch with lambda fixed at 0.5 and the box centred (as the
                    Rust figure): randperm, x[shuffle], rand_bbox, the in-place box assignment
  numpy_mixup       lam * x + (1 - lam) * x[perm], broadcast per sample
  numpy_cutmix      out = x.copy(); out[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
  numpy_mixup_u8    timm's FastCollateMixup batch mode on uint8 samples: per sample
                    rint(a * lam + b * (1 - lam)) in float32, cast to uint8 into the output
The median of the timed calls is reported.

usage: mix_ops.py [--json FILE] [--quick]
prints and writes {"results": [{"name", "median_s", "items", "label"}, ...]}
"""
import argparse
import json
import os
import statistics
import time
from types import SimpleNamespace

import numpy as np
import torch

SHAPE = (64, 3, 224, 224)
ALPHA_MIXUP = 0.4


def timed(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fastai_callbacks():
    """fastai's MixUp and CutMix callbacks on a stand-in learner, or None without fastai."""
    try:
        from fastai.callback.mixup import CutMix, MixUp
    except ImportError:
        return None
    return MixUp, CutMix


class FixedBeta:
    def __init__(self, lam):
        self.lam = torch.tensor([lam])

    def sample(self, shape):
        return self.lam.reshape(shape)


def fastai_mixup_op(x, y):
    callbacks = fastai_callbacks()
    if callbacks is None:
        distrib = torch.distributions.Beta(torch.tensor(ALPHA_MIXUP), torch.tensor(ALPHA_MIXUP))

        def op():
            # fastai/callback/mixup.py MixUp.before_batch, integer targets (stack_y).
            lam = distrib.sample((y.size(0),)).squeeze()
            lam = torch.stack([lam, 1 - lam], 1).max(1)[0]
            shuffle = torch.randperm(y.size(0))
            xb1 = x[shuffle]
            return torch.lerp(xb1, x, lam.view(-1, 1, 1, 1))

        return op, "torch ops copied from fastai MixUp.before_batch"
    cb = callbacks[0](ALPHA_MIXUP)
    cb.learn = SimpleNamespace(xb=(x,), yb=(y,), x=x, y=y, training=True)
    cb.stack_y = True

    def op():
        cb.learn.xb = (x,)
        cb.before_batch()
        return cb.learn.xb[0]

    import fastai
    return op, f"fastai {fastai.__version__} MixUp.before_batch"


def fastai_cutmix_op(x, y):
    _, _, h, w = x.shape
    callbacks = fastai_callbacks()
    centre = [w // 2, h // 2]
    randint = torch.randint

    if callbacks is None:
        def op():
            # fastai/callback/mixup.py CutMix.before_batch and rand_bbox, lambda 0.5.
            lam = torch.tensor([0.5])
            shuffle = torch.randperm(x.size(0))
            xb1 = x[shuffle]
            cut_rat = torch.sqrt(1. - lam)
            cut_w = torch.round(w * cut_rat).type(torch.long)
            cut_h = torch.round(h * cut_rat).type(torch.long)
            cx, cy = torch.tensor([centre[0]]), torch.tensor([centre[1]])
            x1 = torch.clamp(cx - torch.div(cut_w, 2, rounding_mode='floor'), 0, w)
            y1 = torch.clamp(cy - torch.div(cut_h, 2, rounding_mode='floor'), 0, h)
            x2 = torch.clamp(cx + torch.div(cut_w, 2, rounding_mode='floor'), 0, w)
            y2 = torch.clamp(cy + torch.div(cut_h, 2, rounding_mode='floor'), 0, h)
            x[..., y1:y2, x1:x2] = xb1[..., y1:y2, x1:x2]
            return x

        return op, "torch ops copied from fastai CutMix.before_batch, lambda 0.5, centred box"
    cb = callbacks[1](1.0)
    cb.distrib = FixedBeta(0.5)
    cb.learn = SimpleNamespace(xb=(x,), yb=(y,), x=x, y=y, training=True)
    cb.stack_y = True

    def op():
        draws = iter(centre)
        torch.randint = lambda lo, hi, size, *a, **k: torch.tensor([next(draws)])
        try:
            cb.before_batch()
        finally:
            torch.randint = randint
        return cb.learn.xb[0]

    import fastai
    return op, f"fastai {fastai.__version__} CutMix.before_batch, lambda 0.5, centred box"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    repeats = 5 if a.quick else 20

    rng = np.random.default_rng(0)
    xn = rng.uniform(-2, 2, SHAPE).astype(np.float32)
    x8 = rng.integers(0, 256, SHAPE, dtype=np.uint8)
    n, _, h, w = SHAPE
    perm = rng.permutation(n)
    lam = np.maximum(l := rng.beta(ALPHA_MIXUP, ALPHA_MIXUP, n), 1 - l).astype(np.float32)
    lam4 = lam.reshape(-1, 1, 1, 1)
    cut = int(round(w * np.sqrt(0.5)))
    x1, y1 = w // 2 - cut // 2, h // 2 - cut // 2
    x2, y2 = w // 2 + cut // 2, h // 2 + cut // 2

    xt = torch.from_numpy(xn.copy())
    yt = torch.randint(0, 37, (n,))
    out_t = torch.empty_like(xt)
    out_n = np.empty_like(xn)
    out_8 = np.empty_like(x8)
    threads = torch.get_num_threads()
    torch_label = f"torch {torch.__version__} CPU, {threads} threads"
    numpy_label = f"numpy {np.__version__}"

    def numpy_u8():
        # timm FastCollateMixup._mix_batch_collate with timm's blend(): one sample at a time.
        for i in range(n):
            j = perm[i]
            mixed = x8[i].astype(np.float32) * lam[i] + x8[j].astype(np.float32) * (1 - lam[i])
            np.rint(mixed, out=mixed)
            out_8[i] = mixed.astype(np.uint8)

    def numpy_cutmix():
        out = xn.copy()
        out[:, :, y1:y2, x1:x2] = xn[perm, :, y1:y2, x1:x2]
        return out

    mixup_op, mixup_label = fastai_mixup_op(xt, yt)
    cutmix_op, cutmix_label = fastai_cutmix_op(xt.clone(), yt)
    rows = [
        ("torch_copy", lambda: out_t.copy_(xt), torch_label),
        ("numpy_copy", lambda: np.copyto(out_n, xn), numpy_label),
        ("fastai_mixup", mixup_op, f"{mixup_label}; {torch_label}"),
        ("fastai_cutmix", cutmix_op, f"{cutmix_label}; {torch_label}"),
        ("numpy_mixup", lambda: lam4 * xn + (1 - lam4) * xn[perm], numpy_label),
        ("numpy_cutmix", numpy_cutmix, numpy_label),
        ("numpy_mixup_u8", numpy_u8, f"{numpy_label}, timm FastCollateMixup blend per sample"),
    ]
    results = [dict(name=name, median_s=timed(fn, repeats), items=n, label=label)
               for name, fn, label in rows]
    text = json.dumps({"results": results})
    print(text)
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, a.json)


if __name__ == "__main__":
    main()

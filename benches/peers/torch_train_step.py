"""Peer of benches/benches/train_step.rs: the same ResNet18 training step in PyTorch eager, on the CPU.

torchvision's resnet18 body with fastai's head (concat pool, BatchNorm1d, Dropout, Linear without bias,
ReLU, ...), cross entropy (mixed per sample for MixUp/CutMix, fastai's MixHandler.lf), and fastai's Adam
step written with the same per-parameter tensor ops mix-tch uses. Prints images/s per variant.

Usage: python benches/peers/torch_train_step.py [--steps N] [--batch 32] [--size 64] [--device cpu|cuda]
"""
import argparse
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=20)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--size", type=int, default=64)
p.add_argument("--classes", type=int, default=37)
p.add_argument("--device", default="cpu")
args = p.parse_args()
torch.manual_seed(0)


class ConcatPool(nn.Module):
    def forward(self, x):
        return torch.cat([F.adaptive_max_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1)], 1)


body = nn.Sequential(*list(torchvision.models.resnet18(weights=None).children())[:-2])
head = nn.Sequential(ConcatPool(), nn.Flatten(), nn.BatchNorm1d(1024), nn.Dropout(0.25), nn.Linear(1024, 512, bias=False),
                     nn.ReLU(inplace=True), nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, args.classes, bias=False))
dev = torch.device(args.device)
torch.backends.cudnn.benchmark = True
model = nn.Sequential(body, head).to(dev).train()
params = [(p, not isinstance(m, nn.BatchNorm2d) and not isinstance(m, nn.BatchNorm1d))
          for m in model.modules() for p in m.parameters(recurse=False)]
state = {}


@torch.no_grad()
def adam_step(lr=1e-3, mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.01):
    for p, do_wd in params:
        if p.grad is None:
            continue
        g = p.grad
        if do_wd:
            p.mul_(1 - lr * wd)
        s = state.setdefault(p, {"avg": torch.zeros_like(g), "sqr": torch.zeros_like(g), "step": 0})
        s["avg"].lerp_(g, 1 - mom)
        s["sqr"].lerp_(g.square(), 1 - sqr_mom)
        s["step"] += 1
        debias1 = 1 - mom ** s["step"]
        debias2 = 1 - sqr_mom ** s["step"]
        denom = (s["sqr"] / debias2).sqrt() + eps
        p.addcdiv_(s["avg"] * (-lr / debias1), denom)
    for p, _ in params:
        if p.grad is not None:
            p.grad.zero_()


x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
y = torch.randint(args.classes, (args.batch,), device=dev)
rng = np.random.default_rng(0)


def step(variant):
    xb = x
    if variant == "plain":
        loss = F.cross_entropy(model(xb), y)
    else:
        perm = torch.from_numpy(rng.permutation(args.batch)).to(dev)
        if variant == "mixup":
            lam = torch.from_numpy(rng.beta(0.4, 0.4, args.batch).astype(np.float32)).to(dev)
            lam = torch.maximum(lam, 1 - lam)
            xb = torch.lerp(x[perm], x, lam.view(-1, 1, 1, 1))
        else:
            lam0 = rng.beta(1.0, 1.0)
            cut = int(round(args.size * np.sqrt(1 - lam0)))
            cx, cy = rng.integers(args.size), rng.integers(args.size)
            x1, x2 = np.clip(cx - cut // 2, 0, args.size), np.clip(cx + cut // 2, 0, args.size)
            y1, y2 = np.clip(cy - cut // 2, 0, args.size), np.clip(cy + cut // 2, 0, args.size)
            xb = x.clone()
            xb[..., y1:y2, x1:x2] = x[perm][..., y1:y2, x1:x2]
            lam = torch.full((args.batch,), 1 - (x2 - x1) * (y2 - y1) / args.size ** 2, device=dev)
        pred = model(xb)
        loss = torch.lerp(F.cross_entropy(pred, y[perm], reduction="none"), F.cross_entropy(pred, y, reduction="none"), lam).mean()
    loss.backward()
    adam_step()
    if dev.type == "cuda":
        torch.cuda.synchronize()


results = {"device": args.device, "batch": args.batch, "size": args.size, "threads": torch.get_num_threads(), "torch": torch.__version__}
for variant in ["plain", "mixup", "cutmix"]:
    for _ in range(3):
        step(variant)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(variant)
    results[variant] = round(args.steps * args.batch / (time.perf_counter() - t0), 2)
print(json.dumps(results))

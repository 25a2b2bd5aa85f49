#!/usr/bin/env python3
"""Peer of `mix-train` in the epoch step of `cargo xtask bench`: one whole epoch of fastai's own
training loop, timed.

The seed's recipe with fastai itself, one epoch, from scratch so that both sides run the full
backward pass:

    set_seed(seed)
    dls = ImageDataLoaders.from_name_re(path, get_image_files(path), r'([^/]+)_\\d+.*$',
            item_tfms=Resize(ITEM, method='crop'),
            batch_tfms=[*aug_transforms(size=SIZE), Normalize.from_stats(*imagenet_stats)],
            bs=64, num_workers=<core count>, seed=seed, device=DEVICE)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=error_rate)
    learn.fit_one_cycle(1, cbs=MixUp(1.0))

A callback times the training loop (before_train to after_train), validation (before_validate to
after_validate) and the whole epoch (before_epoch to after_epoch, the Recorder's end-of-epoch work
included), and counts the items each loop saw. On CUDA it synchronises before reading the clock.
torch's thread count is set like the accuracy peer's (every core), and nothing is downloaded (see
fastai_train.py, whose download guard this script imports).

usage: fastai_epoch.py --images DIR [--item 144] [--size 128] [--bs 64] [--alpha 1.0] [--seed 0]
                       [--device cpu|cuda] [--workers N] [--threads N]
prints one JSON line: {"fastai", "torch", "device", "gpu", "threads", "workers", "train_items",
"valid_items", "train_s", "valid_s", "epoch_s", "train_loss", "valid_loss", "error_rate"}
"""
import argparse
import json
import os
import sys
import time

import torch

# Importing the accuracy peer replaces torch.hub's downloads with ones that fail, and gives the
# labelling pattern and the core count both peers use.
from fastai_train import PATTERN, cores  # noqa: E402

import fastai  # noqa: E402
from fastai.callback.mixup import MixUp  # noqa: E402
from fastai.torch_core import find_bs  # noqa: E402
from fastai.vision.all import (Callback, ImageDataLoaders, Normalize, Resize, aug_transforms,  # noqa: E402
                               error_rate, get_image_files, imagenet_stats, resnet18, set_seed,
                               vision_learner)


class EpochTimings(Callback):
    "Wall seconds of the training loop, the validation loop and the whole epoch, and items seen."
    # After the Recorder (50) and the progress callback (60), so that after_epoch's clock includes
    # their end-of-epoch work.
    order = 100

    def __init__(self, cuda):
        self.cuda = cuda

    def now(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def before_epoch(self):
        self.epoch_start = self.now()
        self.items = {"train": 0, "valid": 0}
        self.seconds = {}

    def before_train(self):
        self.start = self.now()

    def after_train(self):
        self.seconds["train"] = self.now() - self.start

    def before_validate(self):
        self.start = self.now()

    def after_validate(self):
        self.seconds["valid"] = self.now() - self.start

    def after_batch(self):
        self.items["train" if self.training else "valid"] += find_bs(self.xb)

    def after_epoch(self):
        self.seconds["epoch"] = self.now() - self.epoch_start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, help="folder of images named <label>_<n>.jpg")
    ap.add_argument("--item", type=int, default=144, help="Resize(ITEM, method='crop')")
    ap.add_argument("--size", type=int, default=128, help="aug_transforms(size=SIZE)")
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--workers", type=int, default=cores())
    ap.add_argument("--threads", type=int, default=cores())
    a = ap.parse_args()
    if not os.path.isdir(a.images):
        sys.exit(f"--images {a.images}: expected a folder of images")
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device; run on a GPU machine or pass --device cpu")
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)

    set_seed(a.seed)
    dls = ImageDataLoaders.from_name_re(
        a.images, get_image_files(a.images), PATTERN,
        item_tfms=Resize(a.item, method='crop'),
        batch_tfms=[*aug_transforms(size=a.size), Normalize.from_stats(*imagenet_stats)],
        bs=a.bs, num_workers=a.workers, seed=a.seed, device=device)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=error_rate)
    # Without the progress bar fastai's Recorder prints each row on stdout; print it to stderr
    # instead, so that stdout carries only the JSON line.
    print("epoch  train_loss  valid_loss  error_rate  time", file=sys.stderr)
    learn.logger = lambda row: print("  ".join(f"{v:.6f}" if isinstance(v, float) else str(v)
                                               for v in row), file=sys.stderr, flush=True)
    timer = EpochTimings(a.device == "cuda")
    with learn.no_bar():
        learn.fit_one_cycle(1, cbs=[timer, MixUp(a.alpha)])
    for part in ("train", "valid", "epoch"):
        if part not in timer.seconds:
            sys.exit(f"the timing callback saw no end of the {part} loop")
    names = list(learn.recorder.metric_names[1:-1])  # without 'epoch' and 'time'
    last = dict(zip(names, (float(v) for v in learn.recorder.values[-1])))
    out = {
        "fastai": fastai.__version__,
        "torch": torch.__version__,
        "device": a.device,
        "gpu": torch.cuda.get_device_name(0) if a.device == "cuda" else None,
        "threads": torch.get_num_threads(),
        "workers": a.workers,
        "train_items": timer.items["train"],
        "valid_items": timer.items["valid"],
        "train_s": timer.seconds["train"],
        "valid_s": timer.seconds["valid"],
        "epoch_s": timer.seconds["epoch"],
        "train_loss": last.get("train_loss"),
        "valid_loss": last.get("valid_loss"),
        "error_rate": last.get("error_rate"),
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

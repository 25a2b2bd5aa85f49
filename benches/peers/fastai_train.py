#!/usr/bin/env python3
"""Peer of `mix-train` (the accuracy step of `cargo xtask bench`): fastai's own vision_learner.

For each seed, the recipe our sample run uses, with fastai itself:

    set_seed(seed, reproducible=True)
    dls = ImageDataLoaders.from_name_re(path, get_image_files(path), r'([^/]+)_\\d+.*$',
            valid_pct=0.2, seed=seed, item_tfms=Resize(RESIZE, method='crop'),
            batch_tfms=[*aug_transforms(size=SIZE), Normalize.from_stats(*imagenet_stats)],
            bs=BS, num_workers=WORKERS, device=cpu)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=error_rate)
    learn.fit_one_cycle(EPOCHS, LR, cbs=MixUp(ALPHA))     # or CutMix(ALPHA), or no callback

Each epoch's row comes from the learner's Recorder (`recorder.values`, named by
`recorder.metric_names`), not from the console table; its seconds are timed by a callback from
before_epoch to after_epoch (training and validation), as fastai's own `time` column but unrounded.

Nothing is downloaded: the model starts from scratch (pretrained=False) and torch.hub's download
functions are replaced by ones that fail, so that a code path asking for weights stops loudly.

usage: fastai_train.py --images DIR [--seeds 0,1,2] [--epochs 3] [--bs 16] [--resize 128]
                       [--size 112] [--lr 1e-3] [--mix mixup|cutmix|none] [--alpha 1.0]
                       [--workers N] [--threads N] [--json FILE]
prints and writes {"fastai", "torch", "threads", "workers", "settings", "runs": [{"seed", "n_train",
"n_valid", "classes", "epochs": [{"epoch", "train_loss", "valid_loss", "error_rate", "seconds"}]}]}
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.hub


def no_download(*args, **kwargs):
    raise RuntimeError(
        "fastai_train.py must not download anything (asked for "
        f"{args[0] if args else kwargs}); the peer trains from scratch with pretrained=False")


torch.hub.load_state_dict_from_url = no_download
torch.hub.download_url_to_file = no_download

import fastai  # noqa: E402
from fastai.callback.mixup import CutMix, MixUp  # noqa: E402
from fastai.vision.all import (Callback, ImageDataLoaders, Normalize, Resize, aug_transforms,  # noqa: E402
                               error_rate, get_image_files, imagenet_stats, resnet18, set_seed,
                               vision_learner)

PATTERN = r'([^/]+)_\d+.*$'


def cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class EpochTimer(Callback):
    "Wall seconds of each epoch, training and validation, unrounded."
    order = -10

    def before_fit(self):
        self.seconds = []

    def before_epoch(self):
        self.start = time.perf_counter()

    def after_epoch(self):
        self.seconds.append(time.perf_counter() - self.start)


def mix_callback(mix, alpha):
    if mix == "mixup":
        return [MixUp(alpha)]
    if mix == "cutmix":
        return [CutMix(alpha)]
    return []


def train_one(a, seed):
    set_seed(seed, reproducible=True)
    path = a.images
    dls = ImageDataLoaders.from_name_re(
        path, get_image_files(path), PATTERN, valid_pct=0.2, seed=seed,
        item_tfms=Resize(a.resize, method='crop'),
        batch_tfms=[*aug_transforms(size=a.size), Normalize.from_stats(*imagenet_stats)],
        bs=a.bs, num_workers=a.workers, device=torch.device('cpu'))
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=error_rate)
    # Without the progress bar fastai's Recorder prints each row as a bare list on stdout; print
    # the table to stderr instead, so that stdout carries only the JSON.
    print("epoch  train_loss  valid_loss  error_rate  time", file=sys.stderr)
    learn.logger = lambda row: print("  ".join(f"{v:.6f}" if isinstance(v, float) else str(v)
                                               for v in row), file=sys.stderr, flush=True)
    timer = EpochTimer()
    with learn.no_bar():
        learn.fit_one_cycle(a.epochs, a.lr, cbs=[timer, *mix_callback(a.mix, a.alpha)])
    names = list(learn.recorder.metric_names[1:-1])  # without 'epoch' and 'time'
    epochs = []
    for i, values in enumerate(learn.recorder.values):
        row = dict(zip(names, (float(v) for v in values)))
        for needed in ("train_loss", "valid_loss", "error_rate"):
            if needed not in row:
                sys.exit(f"fastai's recorder has no `{needed}` column (it has {names})")
        epochs.append({"epoch": i, "train_loss": row["train_loss"], "valid_loss": row["valid_loss"],
                       "error_rate": row["error_rate"], "seconds": timer.seconds[i]})
    if len(epochs) != a.epochs:
        sys.exit(f"expected {a.epochs} epochs in fastai's recorder, found {len(epochs)}")
    return {"seed": seed, "n_train": len(dls.train_ds), "n_valid": len(dls.valid_ds),
            "classes": [str(c) for c in dls.vocab], "epochs": epochs}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, help="folder of images named <label>_<n>.jpg")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--resize", type=int, default=128)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--mix", choices=["mixup", "cutmix", "none"], default="mixup")
    ap.add_argument("--alpha", type=float, default=1.0)
    # Worker processes decode images in parallel with training; on a 2-core CPU machine they take
    # the cores that torch trains on (one epoch: 44 s with 2 workers, 39 s with none, on a busy
    # 2-core machine), so the default is none: the main process loads the batches.
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=cores())
    ap.add_argument("--json")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    if not os.path.isdir(a.images):
        sys.exit(f"--images {a.images}: expected a folder of images")
    torch.set_num_threads(a.threads)

    runs = []
    for seed in seeds:
        print(f"fastai {fastai.__version__}: seed {seed}", file=sys.stderr, flush=True)
        runs.append(train_one(a, seed))
    out = {
        "fastai": fastai.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "workers": a.workers,
        "settings": {"epochs": a.epochs, "bs": a.bs, "resize": a.resize, "size": a.size,
                     "lr": a.lr, "mix": a.mix, "alpha": a.alpha, "pattern": PATTERN,
                     "valid_pct": 0.2, "pretrained": False},
        "runs": runs,
    }
    text = json.dumps(out)
    print(text)
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, a.json)


if __name__ == "__main__":
    main()

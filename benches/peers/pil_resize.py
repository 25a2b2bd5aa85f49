#!/usr/bin/env python3
"""Peer of benches/benches/mix_data.rs: Pillow decode + fastai's Resize(256, method='crop') per image.

For every image of the corpus (sorted, the same files the criterion bench reads): what fastai's
PILImage.create + Resize(256, method='crop') do on the validation set, on one core: Image.open,
convert('RGB'), crop at the centred fastai box, resize((256, 256), BILINEAR), then the HWC->CHW
array the batch needs. One timed pass covers the whole corpus; the median pass is reported.

usage: pil_resize.py [--json FILE] [--quick] [--corpus DIR]   (corpus default: $MIX_BENCH_CORPUS)
prints and writes {"results": [{"name": "pil_decode_resize_crop_256", "median_s", "items",
"images_per_s", "label"}]}
"""
import argparse, json, os, statistics, time
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

SIZE = 256
# CPython 3.11 mimetypes image/* extensions plus webp, as mix_data::IMAGE_EXTENSIONS.
EXTS = {".avif", ".bmp", ".gif", ".heic", ".heif", ".ico", ".ief", ".jpe", ".jpeg", ".jpg", ".pbm", ".pgm",
        ".png", ".pnm", ".ppm", ".ras", ".rgb", ".svg", ".tif", ".tiff", ".webp", ".xbm", ".xpm", ".xwd"}


def crop_box(w, h, size, pcts=(0.5, 0.5)):
    # fastai/vision/augment.py Resize.encodes, method=ResizeMethod.Crop.
    m = w / size if (w / size) < (h / size) else h / size
    cp = (int(m * size), int(m * size))
    tl = (int(pcts[0] * (w - cp[0])), int(pcts[1] * (h - cp[1])))
    return (tl[0], tl[1], tl[0] + cp[0], tl[1] + cp[1])


def item(path):
    im = Image.open(path)
    im.load()
    im = im.convert("RGB")
    im = im.crop(crop_box(*im.size, SIZE)).resize((SIZE, SIZE), Image.BILINEAR)
    return np.ascontiguousarray(np.asarray(im).transpose(2, 0, 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--corpus", default=os.environ.get("MIX_BENCH_CORPUS"))
    a = ap.parse_args()
    if not a.corpus:
        raise SystemExit("no corpus: pass --corpus DIR or set MIX_BENCH_CORPUS (see benches/benches/mix_data.rs)")
    files = sorted(p for p in Path(a.corpus).rglob("*")
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in EXTS)
    if not files:
        raise SystemExit(f"no images under {a.corpus}")
    for f in files[:8]:  # warm-up: page cache and Pillow's lazy imports
        item(f)
    passes = []
    for _ in range(3 if a.quick else 10):
        t = time.perf_counter()
        for f in files:
            item(f)
        passes.append(time.perf_counter() - t)
    median = statistics.median(passes)
    out = {"results": [{"name": "pil_decode_resize_crop_256", "median_s": median, "items": len(files),
                        "images_per_s": len(files) / median,
                        "label": f"Pillow {PIL.__version__}, 1 core"}]}
    text = json.dumps(out)
    print(text)
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, a.json)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Make the bundled offline sample dataset (data/sample/images) from the photos in ../shared/photos.

Each class is one photo; each image is a random crop / flip / rescale / colour shift of that photo,
saved as JPEG (longer side 160..256 px, quality 85). File names follow the Oxford-IIIT Pet layout,
images/<label>_<n>.jpg, so the seed's labelling regex r'([^/]+)_\\d+.*$' gives the label. Unlike
../shared/tools/make_pets_like.py (which it is modelled on) the labels here mean something: every
crop of a class comes from the same photo, so a small model can learn them in a few epochs.

usage: make_sample.py [--photos DIR] [--out DIR] [--per-class N] [--seed S]
needs: Pillow (for example ~/.cache/mix/libtorch-2.11.0/bin/python)
The committed images were made with the defaults; rerunning with them rewrites the same set.
"""
import argparse, os, random, tempfile
from pathlib import Path
from PIL import Image, ImageEnhance, ImageOps

HERE = Path(__file__).resolve().parent
# label -> photo file; labels are lower-case single words so that the regex keeps them whole.
CLASSES = {
    "astronaut": "astronaut.png",
    "cat": "chelsea.png",
    "coffee": "coffee.png",
    "galaxy": "hubble_deep_field.jpg",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
}


def random_crop(rng, im):
    """A crop covering 30..100% of the photo's area with aspect ratio 3/4..4/3 (like RandomResizedCrop)."""
    W, H = im.size
    for _ in range(20):
        area = rng.uniform(0.3, 1.0) * W * H
        aspect = rng.uniform(3 / 4, 4 / 3)
        cw, ch = round((area * aspect) ** 0.5), round((area / aspect) ** 0.5)
        if 0 < cw <= W and 0 < ch <= H:
            x0, y0 = rng.randint(0, W - cw), rng.randint(0, H - ch)
            return im.crop((x0, y0, x0 + cw, y0 + ch))
    return im


def make(src, rng):
    im = random_crop(rng, src)
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    long_side = rng.randint(160, 256)
    s = long_side / max(im.size)
    im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.BILINEAR)
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.8, 1.2))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.8, 1.2))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.7, 1.3))
    return im


def save_atomic(im, path):
    """Writes a JPEG through a temporary file in the same folder and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".jpg")
    try:
        with os.fdopen(fd, "wb") as f:
            im.save(f, format="JPEG", quality=85, optimize=True)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", default=str(HERE.parent.parent.parent / "shared" / "photos"))
    ap.add_argument("--out", default=str(HERE / "images"))
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.jpg"):
        old.unlink()
    total = 0
    for label, file in CLASSES.items():
        src = Image.open(Path(a.photos) / file).convert("RGB")
        for n in range(1, a.per_class + 1):
            path = out / f"{label}_{n}.jpg"
            save_atomic(make(src, rng), path)
            total += path.stat().st_size
    count = len(CLASSES) * a.per_class
    print(f"{count} images, {total / 1e6:.2f} MB under {out}")


if __name__ == "__main__":
    main()

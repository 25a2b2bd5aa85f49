#!/usr/bin/env python3
"""Seed corpus for the decode fuzz target: tiny images of every kind the decoder handles (needs Pillow).

usage: python make_corpus.py   (from this folder; writes corpus/decode/seed_*)
"""
import io
from pathlib import Path
from PIL import Image

out = Path("corpus/decode"); out.mkdir(parents=True, exist_ok=True)
rgb = Image.new("RGB", (5, 3)); rgb.putdata([(i * 40 % 256, i * 90 % 256, i * 7) for i in range(15)])
seeds = {
    "rgb.jpg": (rgb, "JPEG", {}), "prog.jpg": (rgb, "JPEG", {"progressive": True}),
    "gray.jpg": (rgb.convert("L"), "JPEG", {}), "cmyk.jpg": (rgb.convert("CMYK"), "JPEG", {}),
    "rgb.png": (rgb, "PNG", {}), "rgba.png": (rgb.convert("RGBA"), "PNG", {}),
    "la.png": (rgb.convert("LA"), "PNG", {}), "pal.png": (rgb.convert("P"), "PNG", {"transparency": 1}),
    "i16.png": (rgb.convert("I;16"), "PNG", {}), "one.png": (Image.new("1", (9, 2)), "PNG", {}),
    "a.gif": (rgb.convert("P"), "GIF", {}), "a.bmp": (rgb, "BMP", {}), "a.tif": (rgb, "TIFF", {}),
    "a.webp": (rgb, "WEBP", {"lossless": True}), "lossy.webp": (rgb, "WEBP", {"quality": 50}),
}
for name, (im, fmt, kw) in seeds.items():
    b = io.BytesIO(); im.save(b, fmt, **kw)
    (out / f"seed_{name}").write_bytes(b.getvalue())
jpeg = (out / "seed_rgb.jpg").read_bytes()
(out / "seed_trunc.jpg").write_bytes(jpeg[: len(jpeg) // 2])
(out / "seed_text.jpg").write_bytes(b"<html>404 not found</html>\n")

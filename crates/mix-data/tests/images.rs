//! Decoding of many kinds of files, fastai's crop geometry, the bilinear resize, normalisation.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use image::{ImageBuffer, ImageFormat, Luma, Rgb, RgbImage};
use mix_data::{
    crop_box, decode_rgb, decode_rgb_bytes, imagenet_normalize, load_item, normalize, resize_crop,
    resize_short_side, CropBox, CropPos, Error, IMAGENET_MEAN, IMAGENET_STD,
};
use ndarray::{Array3, Array4};
use proptest::prelude::*;

fn decode_err(path: &Path) -> String {
    match decode_rgb(path) {
        Err(e @ Error::Decode { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()),
                "error names the file: {msg}"
            );
            msg
        }
        other => panic!(
            "expected a decode error for {}, got {other:?}",
            path.display()
        ),
    }
}

fn max_abs_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

// ---------------------------------------------------------------- decoding

#[test]
fn lossless_colour_types_convert_like_pil() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();

    let rgb = pattern_rgb(23, 17);
    rgb.save_with_format(d.join("rgb.png"), ImageFormat::Png)
        .unwrap();
    assert_eq!(decode_rgb(&d.join("rgb.png")).unwrap(), rgb);

    // Grayscale: replicated to three channels (PIL 'L' -> 'RGB').
    let gray = pattern_gray(19, 7);
    write_gray_png(&d.join("gray.png"), &gray);
    let got = decode_rgb(&d.join("gray.png")).unwrap();
    for (g, p) in gray.pixels().zip(got.pixels()) {
        assert_eq!(p.0, [g.0[0]; 3]);
    }

    // RGBA: alpha dropped, not composited (PIL 'RGBA' -> 'RGB').
    let rgba = pattern_rgba(13, 11);
    rgba.save_with_format(d.join("rgba.png"), ImageFormat::Png)
        .unwrap();
    let got = decode_rgb(&d.join("rgba.png")).unwrap();
    for (a, p) in rgba.pixels().zip(got.pixels()) {
        assert_eq!(p.0, [a.0[0], a.0[1], a.0[2]]);
    }

    // Gray + alpha.
    let la = pattern_la(9, 9);
    la.save_with_format(d.join("la.png"), ImageFormat::Png)
        .unwrap();
    let got = decode_rgb(&d.join("la.png")).unwrap();
    for (a, p) in la.pixels().zip(got.pixels()) {
        assert_eq!(p.0, [a.0[0]; 3]);
    }

    // Palette with a transparent entry: palette colours, transparency dropped (PIL 'P' -> 'RGB').
    let palette = [[10u8, 20, 30], [200, 100, 50], [0, 255, 0]];
    let index = |x: u32, y: u32| ((x + y) % 3) as u8;
    write_palette_png(&d.join("pal.png"), 8, 5, &palette, index);
    let got = decode_rgb(&d.join("pal.png")).unwrap();
    for (x, y, p) in got.enumerate_pixels() {
        assert_eq!(p.0, palette[usize::from(index(x, y))], "({x}, {y})");
    }

    // BMP, TIFF and lossless WebP round-trip exactly.
    for (name, fmt) in [
        ("a.bmp", ImageFormat::Bmp),
        ("a.tif", ImageFormat::Tiff),
        ("a.webp", ImageFormat::WebP),
    ] {
        rgb.save_with_format(d.join(name), fmt).unwrap();
        assert_eq!(decode_rgb(&d.join(name)).unwrap(), rgb, "{name}");
    }
}

#[test]
fn sixteen_bit_pngs_round_to_eight_bits() {
    let tmp = tempfile::tempdir().unwrap();
    let rgb16 = pattern_rgb16(31, 9);
    let p = tmp.path().join("rgb16.png");
    rgb16.save_with_format(&p, ImageFormat::Png).unwrap();
    let got = decode_rgb(&p).unwrap();
    for (a, b) in rgb16.pixels().zip(got.pixels()) {
        for c in 0..3 {
            let want = (f64::from(a.0[c]) / 257.0).round() as u8;
            assert!(
                b.0[c].abs_diff(want) <= 1,
                "{} -> {} (want {want})",
                a.0[c],
                b.0[c]
            );
        }
    }
    let g16: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(5, 5, |x, y| Luma([(x * 13000 + y * 500) as u16]));
    let p = tmp.path().join("g16.png");
    g16.save_with_format(&p, ImageFormat::Png).unwrap();
    let got = decode_rgb(&p).unwrap();
    for (a, b) in g16.pixels().zip(got.pixels()) {
        let want = (f64::from(a.0[0]) / 257.0).round() as u8;
        assert!(b.0[0].abs_diff(want) <= 1 && b.0[0] == b.0[1] && b.0[1] == b.0[2]);
    }
}

#[test]
fn jpegs_of_odd_shapes_and_gray_decode() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for (w, h) in [(1, 1), (4000, 10), (10, 4000), (3, 700)] {
        let img = RgbImage::from_pixel(w, h, Rgb([200, 40, 90]));
        let p = d.join(format!("{w}x{h}.jpg"));
        write_jpeg(&p, &img);
        let got = decode_rgb(&p).unwrap();
        assert_eq!(got.dimensions(), (w, h));
        assert!(max_abs_diff(got.as_raw(), img.as_raw()) <= 4, "{w}x{h}");
        // And through Resize(256, crop): a flat image stays flat at any scale.
        let item = load_item(&p, 256, CropPos::CENTER).unwrap();
        assert_eq!(item.shape(), &[3, 256, 256]);
        for (c, want) in [200u8, 40, 90].iter().enumerate() {
            assert!(
                item.index_axis(ndarray::Axis(0), c)
                    .iter()
                    .all(|v| v.abs_diff(*want) <= 4),
                "{w}x{h} channel {c}"
            );
        }
    }
    let gray = pattern_gray(16, 16);
    let p = d.join("gray.jpg");
    gray.save_with_format(&p, ImageFormat::Jpeg).unwrap();
    let got = decode_rgb(&p).unwrap();
    assert!(got.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
}

#[test]
fn cmyk_jpeg_converts_like_pil() {
    // tests/fixtures/cmyk.jpg was saved by Pillow in CMYK mode; cmyk_rgb.txt holds PIL's
    // convert('RGB') at the centre of each flat 8x8 block (see make_fixtures.py).
    let got = decode_rgb(&fixture("cmyk.jpg")).unwrap();
    let want = fs::read_to_string(fixture("cmyk_rgb.txt")).unwrap();
    for line in want.lines() {
        let v: Vec<u32> = line
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        let px = got.get_pixel(v[0], v[1]).0;
        for c in 0..3 {
            assert!(
                u32::from(px[c]).abs_diff(v[2 + c]) <= 3,
                "({}, {}): got {px:?}, PIL {:?}",
                v[0],
                v[1],
                &v[2..]
            );
        }
    }
}

#[test]
fn format_is_read_from_content_not_extension() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("really_a_png_1.jpg");
    let img = pattern_rgb(6, 4);
    img.save_with_format(&p, ImageFormat::Png).unwrap();
    assert_eq!(decode_rgb(&p).unwrap(), img);
    let gif = tmp.path().join("anim_2.jpg");
    let flat = RgbImage::from_pixel(6, 4, Rgb([255, 0, 0]));
    flat.save_with_format(&gif, ImageFormat::Gif).unwrap();
    let got = decode_rgb(&gif).unwrap();
    assert!(max_abs_diff(got.as_raw(), flat.as_raw()) <= 8);
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();

    let text = d.join("notes_1.jpg");
    fs::write(&text, "this is not a picture\n").unwrap();
    assert!(decode_err(&text).contains("text"));

    let empty = d.join("empty_1.jpg");
    fs::write(&empty, b"").unwrap();
    assert!(decode_err(&empty).contains("empty"));

    let jpeg = jpeg_bytes(&pattern_rgb(64, 48));
    let trunc = d.join("trunc_1.jpg");
    fs::write(&trunc, &jpeg[..jpeg.len() / 2]).unwrap();
    assert!(decode_err(&trunc).contains("truncated"));

    let mut png = Vec::new();
    pattern_rgb(64, 48)
        .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
        .unwrap();
    let trunc_png = d.join("trunc_2.png");
    fs::write(&trunc_png, &png[..png.len() * 2 / 3]).unwrap();
    decode_err(&trunc_png);

    let garbage = d.join("garbage_3.png");
    fs::write(&garbage, [0x89, b'P', b'N', b'G', 1, 2, 3, 4, 5]).unwrap();
    decode_err(&garbage);

    let missing = d.join("missing_4.jpg");
    assert!(matches!(decode_rgb(&missing), Err(Error::Io { .. })));
}

#[test]
fn jpeg_with_exif_thumbnail_truncated_after_it_is_still_an_error() {
    // A thumbnail's end-of-image marker inside APP1 must not make a cut file look complete.
    let thumb = jpeg_bytes(&pattern_rgb(8, 8));
    let main = jpeg_bytes(&pattern_rgb(64, 48));
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&u16::try_from(thumb.len() + 2).unwrap().to_be_bytes());
    app1.extend_from_slice(&thumb);
    let mut whole = main[..2].to_vec();
    whole.extend_from_slice(&app1);
    whole.extend_from_slice(&main[2..]);
    let path = Path::new("with_thumb.jpg");
    assert_eq!(
        decode_rgb_bytes(&whole, path).unwrap().dimensions(),
        (64, 48)
    );
    let cut = &whole[..whole.len() - 100];
    assert!(matches!(
        decode_rgb_bytes(cut, path),
        Err(Error::Decode { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn every_prefix_of_a_jpeg_is_rejected(cut_frac in 0.0f64..1.0) {
        let jpeg = jpeg_bytes(&pattern_rgb(40, 30));
        let cut = ((jpeg.len() as f64 * cut_frac) as usize).min(jpeg.len() - 1);
        prop_assert!(decode_rgb_bytes(&jpeg[..cut], Path::new("x.jpg")).is_err());
    }
}

// ---------------------------------------------------------------- crop geometry

#[test]
fn crop_box_matches_fastai_formula_fixture() {
    // crop_boxes.txt: fastai's Resize.encodes crop computed by Python (make_fixtures.py).
    let text = fs::read_to_string(fixture("crop_boxes.txt")).unwrap();
    let mut n = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let u = |i: usize| f[i].parse::<u32>().unwrap();
        let pos = CropPos {
            x: f[4].parse().unwrap(),
            y: f[5].parse().unwrap(),
        };
        let got = crop_box(u(0), u(1), u(2), u(3), pos);
        let want = CropBox {
            left: u(6),
            top: u(7),
            width: u(8),
            height: u(9),
        };
        assert_eq!(got, want, "case {line}");
        n += 1;
    }
    assert!(n > 700, "fixture has {n} cases");
}

#[test]
fn crop_position_train_vs_valid_on_pets_sizes() {
    // 500x375 landscape, target 256: crop is 375x375; validation centres it at left=62.
    assert_eq!(
        crop_box(500, 375, 256, 256, CropPos::CENTER),
        CropBox {
            left: 62,
            top: 0,
            width: 375,
            height: 375
        }
    );
    assert_eq!(
        crop_box(375, 500, 256, 256, CropPos::CENTER),
        CropBox {
            left: 0,
            top: 62,
            width: 375,
            height: 375
        }
    );
    assert_eq!(
        crop_box(500, 375, 256, 256, CropPos { x: 0.0, y: 0.9 }).left,
        0
    );
    assert_eq!(
        crop_box(500, 375, 256, 256, CropPos { x: 0.999, y: 0.0 }).left,
        124
    );
}

#[test]
fn crop_picks_the_expected_part_of_the_image() {
    // Left half red, right half blue, 512x256: a left crop is all red, a right crop all blue.
    let img = RgbImage::from_fn(512, 256, |x, _| {
        if x < 256 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    let left = resize_crop(&img, 64, CropPos { x: 0.0, y: 0.5 }).unwrap();
    // x = 1.0 puts the crop at the far right (random draws stay below 1, so int() truncation
    // leaves training crops one column short of it).
    let right = resize_crop(&img, 64, CropPos { x: 1.0, y: 0.5 }).unwrap();
    let centre = resize_crop(&img, 64, CropPos::CENTER).unwrap();
    assert!(left
        .index_axis(ndarray::Axis(0), 0)
        .iter()
        .all(|&v| v == 255));
    assert!(right
        .index_axis(ndarray::Axis(0), 2)
        .iter()
        .all(|&v| v == 255));
    // The centred crop spans the boundary at its middle column.
    assert_eq!(centre[[0, 10, 5]], 255);
    assert_eq!(centre[[2, 10, 60]], 255);
}

proptest! {
    #[test]
    fn crop_box_is_largest_fitting_box_with_target_aspect(
        (w, h) in dims(), tw in target_size(), th in target_size(), px in crop_fraction(), py in crop_fraction(),
    ) {
        let b = crop_box(w, h, tw, th, CropPos { x: px, y: py });
        prop_assert!(b.width >= 1 && b.height >= 1);
        prop_assert!(b.left + b.width <= w && b.top + b.height <= h);
        // Maximal: it touches both sides in at least one dimension (up to Python's truncation).
        prop_assert!(b.width + 1 >= w || b.height + 1 >= h, "{b:?} in {w}x{h}");
        // Aspect ratio of the target, up to one pixel of truncation.
        let (bw, bh) = (f64::from(b.width), f64::from(b.height));
        prop_assert!((bw * f64::from(th) - bh * f64::from(tw)).abs() <= f64::from(tw.max(th)) + 1e-9);
        // Position: int(frac * slack).
        prop_assert_eq!(b.left, (px * f64::from(w - b.width)) as u32);
        prop_assert_eq!(b.top, (py * f64::from(h - b.height)) as u32);
    }
}

// ---------------------------------------------------------------- bilinear resize

/// Pillow's BILINEAR convolution (libImaging/Resample.c, `precompute_coeffs`) in f64, one axis.
fn pil_coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // bilinear support 1.0, widened when downscaling
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = (center - support + 0.5).floor().max(0.0) as usize;
            let xmax = ((center + support + 0.5).floor() as usize).min(in_size);
            let mut w: Vec<f64> = (xmin..xmax)
                .map(|x| (1.0 - ((x as f64 - center + 0.5) / filter_scale).abs()).max(0.0))
                .collect();
            let sum: f64 = w.iter().sum();
            w.iter_mut().for_each(|v| *v /= sum);
            (xmin, w)
        })
        .collect()
}

/// Naive oracle: crop, then separable bilinear in f64 with a single final rounding, CHW.
fn naive_resize_crop(img: &RgbImage, b: CropBox, size: usize) -> Array3<u8> {
    let cx = pil_coeffs(b.width as usize, size);
    let cy = pil_coeffs(b.height as usize, size);
    let px = |x: usize, y: usize, c: usize| {
        f64::from(img.get_pixel(b.left + x as u32, b.top + y as u32).0[c])
    };
    Array3::from_shape_fn((3, size, size), |(c, oy, ox)| {
        let (ymin, wy) = &cy[oy];
        let (xmin, wx) = &cx[ox];
        let mut acc = 0.0;
        for (j, wyj) in wy.iter().enumerate() {
            for (i, wxi) in wx.iter().enumerate() {
                acc += wyj * wxi * px(xmin + i, ymin + j, c);
            }
        }
        acc.round().clamp(0.0, 255.0) as u8
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn resize_matches_naive_pillow_bilinear_oracle(
        (w, h) in dims(), size in 1usize..40, px in crop_fraction(), py in crop_fraction(),
    ) {
        let img = pattern_rgb(w, h);
        let pos = CropPos { x: px, y: py };
        let got = resize_crop(&img, size, pos).unwrap();
        let b = crop_box(w, h, size as u32, size as u32, pos);
        let want = naive_resize_crop(&img, b, size);
        // fast_image_resize, like Pillow, rounds to u8 between the horizontal and vertical pass
        // and uses fixed-point weights: at most 1 level off an exact single-rounding oracle.
        let d = max_abs_diff(got.as_slice().unwrap(), want.as_slice().unwrap());
        prop_assert!(d <= 1, "max diff {d} for {w}x{h} -> {size} at {pos:?}");
    }
}

#[test]
fn resize_matches_pillow_output_fixtures() {
    // pil_bilinear_*.bin: PIL's crop(box).resize((s, s), BILINEAR) of pil_pattern(w, h).
    for (name, w, h, s, pos) in [
        ("down", 97, 61, 16, CropPos::CENTER),
        ("down_edge", 97, 61, 24, CropPos { x: 0.0, y: 0.0 }),
        ("up", 11, 7, 32, CropPos { x: 1.0, y: 0.5 }),
        ("tall", 40, 90, 17, CropPos { x: 0.3, y: 0.7 }),
    ] {
        let want_hwc = fs::read(fixture(&format!("pil_bilinear_{name}.bin"))).unwrap();
        let got = resize_crop(&pil_pattern(w, h), s, pos).unwrap();
        let got_hwc: Vec<u8> = (0..s * s)
            .flat_map(|i| (0..3).map(move |c| (c, i)))
            .map(|(c, i)| got[[c, i / s, i % s]])
            .collect();
        let d = max_abs_diff(&got_hwc, &want_hwc);
        let exact = got_hwc
            .iter()
            .zip(&want_hwc)
            .filter(|(a, b)| a == b)
            .count();
        eprintln!(
            "{name}: {exact}/{} values equal Pillow's, max diff {d}",
            got_hwc.len()
        );
        assert!(d <= 1, "{name}: max diff {d} from Pillow");
        assert!(
            exact * 5 >= got_hwc.len() * 4,
            "{name}: only {exact}/{} values equal Pillow's",
            got_hwc.len()
        );
    }
}

#[test]
fn short_side_resize_keeps_aspect() {
    let img = pattern_rgb(500, 375);
    let s = resize_short_side(&img, 256).unwrap();
    assert_eq!(s.dimensions(), (341, 256));
    let t = resize_short_side(&pattern_rgb(10, 4000), 256).unwrap();
    assert_eq!(t.dimensions(), (256, 102_400));
    assert!(resize_short_side(&img, 0).is_err());
}

#[test]
fn resize_rejects_bad_output_shapes() {
    let img = pattern_rgb(8, 8);
    let mut out = Array3::<u8>::zeros((3, 4, 5));
    assert!(mix_data::resize_crop_into(&img, 4, CropPos::CENTER, out.view_mut()).is_err());
    assert!(resize_crop(&img, 0, CropPos::CENTER).is_err());
}

// ---------------------------------------------------------------- normalisation

#[test]
fn imagenet_normalize_is_fastai_arithmetic() {
    let imgs = Array4::from_shape_fn((2, 3, 4, 5), |(n, c, y, x)| {
        ((n * 97 + c * 31 + y * 7 + x * 3) % 256) as u8
    });
    let got = imagenet_normalize(imgs.view()).unwrap();
    assert_eq!(got.shape(), imgs.shape());
    for ((n, c, y, x), &v) in imgs.indexed_iter() {
        // IntToFloatTensor: x.float() / 255; Normalize: (x - mean) / std, all f32.
        let want = (f32::from(v) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        assert_eq!(got[[n, c, y, x]].to_bits(), want.to_bits());
    }
    assert!(normalize(
        Array4::<u8>::zeros((1, 4, 2, 2)).view(),
        IMAGENET_MEAN,
        IMAGENET_STD
    )
    .is_err());
}

//! Fuzzes `mix_data::decode_rgb_bytes` and the `Resize(crop)` that follows it in the loader: whatever
//! the bytes, decoding must return an image or an error (never panic, never a zero-sized image), and
//! a decoded image must resize at any crop position to a buffer of exactly the asked size.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mix_data::{crop_box, decode_rgb_bytes, resize_crop, CropPos};

fuzz_target!(|data: &[u8]| {
    // The last byte, when there is one, picks the crop position; the whole input is the file.
    let pos = data.last().map_or(CropPos::CENTER, |&b| CropPos {
        x: f64::from(b & 0x0F) / 15.0,
        y: f64::from(b >> 4) / 15.0,
    });
    let Ok(img) = decode_rgb_bytes(data, Path::new("fuzz.bin")) else {
        return;
    };
    let (w, h) = img.dimensions();
    assert!(w > 0 && h > 0, "decoded a {w}x{h} image");
    assert_eq!(img.as_raw().len(), w as usize * h as usize * 3);
    let b = crop_box(w, h, 16, 16, pos);
    assert!(b.left + b.width <= w && b.top + b.height <= h && b.width > 0 && b.height > 0);
    // Huge but valid images are legal; resizing them is slow and proves nothing more.
    if u64::from(w) * u64::from(h) <= 1 << 22 {
        let out = resize_crop(&img, 16, pos).expect("a decoded image always resizes");
        assert_eq!(out.shape(), &[3, 16, 16]);
    }
});

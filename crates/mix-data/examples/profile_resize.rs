//! Temporary: resize timing variants.
use fast_image_resize::images::{CroppedImage, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat").unwrap().split_whitespace().next().unwrap().parse().unwrap()
}
fn main() {
    let src: Vec<u8> = (0..500 * 375 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let mut r = Resizer::new();
    println!("cpu ext {:?}", r.cpu_extensions());
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    let src_ref = ImageRef::new(500, 375, &src, PixelType::U8x3).unwrap();
    let mut dst = Image::new(256, 256, PixelType::U8x3);
    for _ in 0..3 {
        let t = cpu_ns();
        for _ in 0..200 {
            let c = CroppedImage::new(&src_ref, 62, 0, 375, 375).unwrap();
            r.resize(&c, &mut dst, &opts).unwrap();
        }
        let a = (cpu_ns() - t) / 200;
        let t = cpu_ns();
        for _ in 0..200 {
            r.resize(&src_ref, &mut dst, &opts.crop(62.0, 0.0, 375.0, 375.0)).unwrap();
        }
        let b = (cpu_ns() - t) / 200;
        let small: Vec<u8> = src[..375 * 375 * 3].to_vec();
        let small_ref = ImageRef::new(375, 375, &small, PixelType::U8x3).unwrap();
        let t = cpu_ns();
        for _ in 0..200 {
            r.resize(&small_ref, &mut dst, &opts).unwrap();
        }
        let c = (cpu_ns() - t) / 200;
        let img = image::RgbImage::from_raw(500, 375, src.clone()).unwrap();
        let t = cpu_ns();
        for _ in 0..200 {
            std::hint::black_box(mix_data::resize_crop(&img, 256, mix_data::CropPos::CENTER).unwrap());
        }
        let d = (cpu_ns() - t) / 200;
        println!("cropped view {} us, crop option {} us, plain 375^2 {} us, resize_crop {} us", a / 1000, b / 1000, c / 1000, d / 1000);
    }
}

//! Temporary: split decode vs resize time on a corpus.
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let files = mix_data::get_image_files(dir.as_ref()).unwrap();
    let bytes: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    for _ in 0..6 {
        let t = std::time::Instant::now();
        let imgs: Vec<_> = bytes.iter().zip(&files).map(|(b, f)| mix_data::decode_rgb_bytes(b, f).unwrap()).collect();
        let td = t.elapsed();
        let t = std::time::Instant::now();
        for im in &imgs {
            std::hint::black_box(mix_data::resize_crop(im, 256, mix_data::CropPos::CENTER).unwrap());
        }
        let tr = t.elapsed();
        let t = std::time::Instant::now();
        for (b, _) in bytes.iter().zip(&files) {
            std::hint::black_box(image::load_from_memory_with_format(b, image::ImageFormat::Jpeg).unwrap());
        }
        let ti = t.elapsed();
        let px: u64 = imgs.iter().map(|i| u64::from(i.width()) * u64::from(i.height())).sum();
        println!("n={} mean px={} decode {:?}/img, image-crate-only {:?}/img, resize {:?}/img", files.len(), px / files.len() as u64, td / files.len() as u32, ti / files.len() as u32, tr / files.len() as u32);
    }
}

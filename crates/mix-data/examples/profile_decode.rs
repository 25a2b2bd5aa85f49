//! Temporary: split decode vs resize CPU time on a corpus.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let files = mix_data::get_image_files(dir.as_ref()).unwrap();
    let bytes: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let n = files.len() as u64;
    for _ in 0..4 {
        let t = cpu_ns();
        let imgs: Vec<_> = bytes
            .iter()
            .zip(&files)
            .map(|(b, f)| mix_data::decode_rgb_bytes(b, f).unwrap())
            .collect();
        let td = cpu_ns() - t;
        let t = cpu_ns();
        for im in &imgs {
            std::hint::black_box(
                mix_data::resize_crop(im, 256, mix_data::CropPos::CENTER).unwrap(),
            );
        }
        let tr = cpu_ns() - t;
        let t = cpu_ns();
        for f in &files {
            std::hint::black_box(mix_data::load_item(f, 256, mix_data::CropPos::CENTER).unwrap());
        }
        let tl = cpu_ns() - t;
        println!(
            "cpu per img: decode {} us, resize {} us, load_item {} us => {:.0} img/s per core",
            td / n / 1000,
            tr / n / 1000,
            tl / n / 1000,
            1e9 / (tl / n) as f64
        );
    }
}

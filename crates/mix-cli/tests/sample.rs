//! The sample compiled into the binary: unpacked into a cache folder it equals the repository's copy,
//! is labelled by the seed's pattern, and a damaged file is written again.

use std::path::Path;

#[test]
fn the_embedded_sample_unpacks_like_the_repositorys_and_repairs_a_damaged_file() {
    let cache = tempfile::tempdir().unwrap();
    let images = mix_cli::sample::unpack(cache.path()).unwrap();
    assert_eq!(images, cache.path().join("sample").join("images"));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/images");
    let embedded = mix_cli::sample::embedded();
    assert_eq!(embedded.len(), 120, "6 labels x 20 photos");
    for (name, bytes) in embedded {
        assert_eq!(std::fs::read(images.join(name)).unwrap(), *bytes, "{name}");
        assert_eq!(std::fs::read(repo.join(name)).unwrap(), *bytes, "{name}");
    }
    let files = mix_cli::dataset::image_files(&images).unwrap();
    mix_cli::dataset::check_pattern(&files, mix_cli::dataset::SEED_PATTERN, &images).unwrap();

    let (first, bytes) = embedded[0];
    std::fs::write(images.join(first), b"cut short").unwrap();
    mix_cli::sample::unpack(cache.path()).unwrap();
    assert_eq!(std::fs::read(images.join(first)).unwrap(), bytes);
}

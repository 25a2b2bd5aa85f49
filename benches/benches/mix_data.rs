//! mix-data speed: decode + `Resize(256, method='crop')` per image on one core, and loader
//! throughput at 1 and 2 threads, on a pets-like JPEG corpus.
//!
//! The corpus is a pets-like images folder made from the photos in data/sample (Oxford-IIIT-Pet-like
//! names and sizes); `cargo xtask bench` makes it and passes it in `MIX_BENCH_CORPUS`. By hand:
//! `cargo xtask corpus /tmp/pets --per-breed 8` (it prints the images folder) then
//! `MIX_BENCH_CORPUS=<that folder> cargo bench -p mix-benches --bench mix_data`.
//! The peer `benches/peers/pil_resize.py` times Pillow doing the same on the same files.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mix_data::{get_image_files, load_item, CropPos, DataLoader, LoaderConfig, LoaderKind};

const SIZE: usize = 256;

fn corpus() -> Vec<PathBuf> {
    let dir = std::env::var_os("MIX_BENCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "MIX_BENCH_CORPUS is not set: run `cargo xtask bench`, or make a corpus with \
             `cargo xtask corpus /tmp/pets --per-breed 8` and set MIX_BENCH_CORPUS to the images \
             folder it prints"
            )
        });
    let files = get_image_files(&dir).unwrap_or_else(|e| panic!("cannot list the corpus: {e}"));
    assert!(!files.is_empty(), "no images in {}", dir.display());
    files
}

fn bench(c: &mut Criterion) {
    let files = corpus();
    let n = files.len() as u64;
    let mut g = c.benchmark_group("mix_data");
    g.throughput(Throughput::Elements(n));
    // One iteration decodes and crops every file of the corpus on this thread (validation crop,
    // the same box Pillow's peer takes), so the per-image time is one core's.
    g.bench_function("decode_resize_crop_256", |b| {
        b.iter(|| {
            for f in &files {
                std::hint::black_box(load_item(f, SIZE, CropPos::CENTER).unwrap());
            }
        })
    });
    for threads in [1usize, 2] {
        let cfg = LoaderConfig {
            threads,
            ..LoaderConfig::default()
        };
        let labels = vec![0; files.len()];
        // Validation kind: every file lands in a batch, so one epoch is exactly n images.
        let dl = DataLoader::new(files.clone(), labels, LoaderKind::Valid, &cfg).unwrap();
        g.bench_with_input(BenchmarkId::new("loader_epoch", threads), &dl, |b, dl| {
            b.iter(|| {
                for batch in dl.epoch(0) {
                    std::hint::black_box(batch.unwrap());
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

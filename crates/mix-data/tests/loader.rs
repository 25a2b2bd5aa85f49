//! The loaders end to end: split, vocab, batch shapes and order, shuffling, drop_last, threads,
//! cache, bad files.

mod common;

use std::fs;
use std::path::PathBuf;

use common::*;
use image::{Rgb, RgbImage};
use mix_data::{
    load_item, BadImagePolicy, Batch, BatchIter, DataLoader, DataLoaders, Error, LoaderConfig,
    LoaderKind, IMAGENET_MEAN, IMAGENET_STD,
};
use ndarray::{s, Array4};

const CLASSES: [&str; 5] = ["Bengal", "Persian", "beagle", "great_pyrenees", "pug"];

fn cfg(threads: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        item_size: 16,
        threads,
        seed: 7,
        ..LoaderConfig::default()
    }
}

fn dataset(n_per_class: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let tmp = tempfile::tempdir().unwrap();
    write_pets_like(tmp.path(), &CLASSES, n_per_class, 48, 32);
    let files = mix_data::get_image_files(tmp.path()).unwrap();
    (tmp, files)
}

fn collect(it: BatchIter) -> Vec<Batch> {
    it.map(|b| b.unwrap()).collect()
}

/// The batches `dl` must produce for `epoch`, from its plan and the single-item function.
fn expected(dl: &DataLoader, epoch: u64) -> Vec<Batch> {
    let s = dl.item_size();
    let plan = dl.plan(epoch);
    let mut out = Vec::new();
    for chunk in plan.chunks(dl.batch_size()) {
        if chunk.len() < dl.batch_size() && dl.kind() == LoaderKind::Train {
            break;
        }
        let mut images = Array4::zeros((chunk.len(), 3, s, s));
        for (k, &(i, pos)) in chunk.iter().enumerate() {
            images
                .slice_mut(s![k, .., .., ..])
                .assign(&load_item(&dl.items()[i], s, pos).unwrap());
        }
        let labels = chunk.iter().map(|&(i, _)| dl.labels()[i]).collect();
        out.push(Batch { images, labels });
    }
    out
}

#[test]
fn default_config_is_the_seed_notebooks() {
    let c = LoaderConfig::default();
    assert_eq!((c.batch_size, c.valid_pct, c.item_size), (64, 0.2, 256));
    assert_eq!(c.bad_image, BadImagePolicy::Skip);
}

#[test]
fn from_name_re_splits_labels_and_sizes_like_fastai() {
    let (_tmp, files) = dataset(6); // 30 files
    let dls = DataLoaders::from_name_re(&files, PETS_PATTERN, &cfg(2)).unwrap();
    assert_eq!(dls.vocab.labels(), CLASSES); // already in code-point order
    assert_eq!(dls.valid.len_items(), 6); // int(0.2 * 30)
    assert_eq!(dls.train.len_items(), 24);
    assert_eq!(dls.train.num_batches(), 6);
    assert_eq!(dls.valid.num_batches(), 2);
    // Labels agree with the file names.
    for dl in [&dls.train, &dls.valid] {
        for (path, &class) in dl.items().iter().zip(dl.labels()) {
            let name = path.file_name().unwrap().to_str().unwrap();
            assert!(
                name.starts_with(&format!("{}_", dls.vocab.label(class))),
                "{name}"
            );
        }
    }
    // Train and valid are disjoint and cover every file.
    let mut all: Vec<&PathBuf> = dls.train.items().iter().chain(dls.valid.items()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 30);
    // Same seed, same split; another seed, another split.
    let again = DataLoaders::from_name_re(&files, PETS_PATTERN, &cfg(1)).unwrap();
    assert_eq!(again.valid.items(), dls.valid.items());
    let other =
        DataLoaders::from_name_re(&files, PETS_PATTERN, &LoaderConfig { seed: 8, ..cfg(1) })
            .unwrap();
    assert_ne!(other.valid.items(), dls.valid.items());
}

#[test]
fn batches_have_the_right_shapes_order_labels_and_crops() {
    let (_tmp, files) = dataset(6);
    let dls = DataLoaders::from_name_re(&files, PETS_PATTERN, &cfg(2)).unwrap();
    for epoch in [0, 3] {
        let train = collect(dls.train.epoch(epoch));
        assert_eq!(train.len(), dls.train.num_batches());
        assert!(train
            .iter()
            .all(|b| b.images.shape() == [4, 3, 16, 16] && b.len() == 4));
        assert_eq!(train, expected(&dls.train, epoch), "train epoch {epoch}");
    }
    let valid = collect(dls.valid.epoch(0));
    assert_eq!(
        valid.iter().map(Batch::len).collect::<Vec<_>>(),
        [4, 2],
        "last partial batch kept"
    );
    assert_eq!(valid, expected(&dls.valid, 0));
    // Validation: fixed order (the loader's item order) and centred crops, every epoch.
    let plan = dls.valid.plan(5);
    assert_eq!(
        plan.iter().map(|p| p.0).collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>()
    );
    assert!(plan.iter().all(|p| p.1 == mix_data::CropPos::CENTER));
    assert_eq!(collect(dls.valid.epoch(5)), valid);
}

#[test]
fn training_shuffles_per_epoch_reproducibly_and_drops_the_last_partial_batch() {
    let (_tmp, files) = dataset(6);
    let c = LoaderConfig {
        valid_pct: 0.1,
        ..cfg(2)
    }; // 27 train items: 6 full batches + 3 dropped
    let dls = DataLoaders::from_name_re(&files, PETS_PATTERN, &c).unwrap();
    assert_eq!(dls.train.len_items(), 27);
    assert_eq!(dls.train.num_batches(), 6);
    let e0 = dls.train.plan(0);
    let e1 = dls.train.plan(1);
    assert_ne!(
        e0.iter().map(|p| p.0).collect::<Vec<_>>(),
        e1.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    assert_eq!(e0, dls.train.plan(0));
    // Random crop fractions in [0, 1), not all centred.
    assert!(e0
        .iter()
        .all(|p| (0.0..1.0).contains(&p.1.x) && (0.0..1.0).contains(&p.1.y)));
    assert!(e0.iter().any(|p| p.1 != mix_data::CropPos::CENTER));
    let b0 = collect(dls.train.epoch(0));
    assert_eq!(b0.len(), 6);
    assert_eq!(b0, collect(dls.train.epoch(0)));
    assert_ne!(b0, collect(dls.train.epoch(1)));
}

#[test]
fn results_do_not_depend_on_threads_or_prefetch() {
    let (_tmp, files) = dataset(5);
    let base = DataLoaders::from_name_re(&files, PETS_PATTERN, &cfg(1)).unwrap();
    let want_train = collect(base.train.epoch(2));
    let want_valid = collect(base.valid.epoch(2));
    for (threads, prefetch) in [(2, 2), (3, 0), (4, 5)] {
        let c = LoaderConfig {
            prefetch,
            ..cfg(threads)
        };
        let dls = DataLoaders::from_name_re(&files, PETS_PATTERN, &c).unwrap();
        assert_eq!(
            collect(dls.train.epoch(2)),
            want_train,
            "threads {threads} prefetch {prefetch}"
        );
        assert_eq!(
            collect(dls.valid.epoch(2)),
            want_valid,
            "threads {threads} prefetch {prefetch}"
        );
    }
}

#[test]
fn normalised_batches_use_imagenet_stats() {
    let (_tmp, files) = dataset(4);
    let dls = DataLoaders::from_name_re(&files, PETS_PATTERN, &cfg(2)).unwrap();
    let b = dls.valid.epoch(0).next().unwrap().unwrap();
    let f = b.imagenet_normalized().unwrap();
    assert_eq!(f.shape(), b.images.shape());
    for ((n, c, y, x), &v) in b.images.indexed_iter() {
        let want = (f32::from(v) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        assert_eq!(f[[n, c, y, x]], want);
    }
}

#[test]
fn cache_gives_identical_validation_and_stable_training_batches() {
    let tmp = tempfile::tempdir().unwrap();
    // Smooth images, so a sub-pixel shift of the cached training crop changes little.
    for (c, class) in CLASSES.iter().enumerate() {
        for k in 1..=4u32 {
            let img = RgbImage::from_fn(60 + 7 * k, 40, |x, y| {
                Rgb([(x * 2) as u8, (y * 3) as u8, (c * 40) as u8])
            });
            write_jpeg(&tmp.path().join(format!("{class}_{k}.jpg")), &img);
        }
    }
    // A thin strip is never cached (memory bound); it must still come out the same.
    let strip = RgbImage::from_fn(200, 40, |x, y| Rgb([x as u8, (y * 5) as u8, 9]));
    write_jpeg(&tmp.path().join("pug_9.jpg"), &strip);
    let files = mix_data::get_image_files(tmp.path()).unwrap();
    let plain = DataLoaders::from_name_re(&files, PETS_PATTERN, &cfg(2)).unwrap();
    let cached_cfg = LoaderConfig {
        cache_decoded: true,
        ..cfg(2)
    };
    let cached = DataLoaders::from_name_re(&files, PETS_PATTERN, &cached_cfg).unwrap();
    assert!(
        cached
            .train
            .items()
            .iter()
            .any(|p| p.ends_with("pug_9.jpg")),
        "the strip is a training item"
    );
    assert_eq!(
        collect(cached.valid.epoch(0)),
        collect(plain.valid.epoch(0))
    );
    assert_eq!(
        collect(cached.valid.epoch(1)),
        collect(plain.valid.epoch(0)),
        "warm cache"
    );

    // Training: the same batches whether the cache is cold or warm, and whatever the threads.
    let warm: Vec<Batch> = {
        let _ = collect(cached.train.epoch(0));
        collect(cached.train.epoch(1))
    };
    let cold = DataLoaders::from_name_re(
        &files,
        PETS_PATTERN,
        &LoaderConfig {
            threads: 1,
            ..cached_cfg
        },
    )
    .unwrap();
    assert_eq!(collect(cold.train.epoch(1)), warm);
    // Close to the uncached crops: same items and labels, pixels off by a sub-pixel shift.
    let exact = collect(plain.train.epoch(1));
    assert_eq!(exact.len(), warm.len());
    for (a, b) in exact.iter().zip(&warm) {
        assert_eq!(a.labels, b.labels);
        let mean_diff = a
            .images
            .iter()
            .zip(b.images.iter())
            .map(|(x, y)| f64::from(x.abs_diff(*y)))
            .sum::<f64>()
            / a.images.len() as f64;
        assert!(mean_diff < 4.0, "mean abs diff {mean_diff}");
    }
}

fn dataset_with_bad_files() -> (tempfile::TempDir, Vec<PathBuf>, Vec<PathBuf>) {
    let (tmp, _) = dataset(6);
    let text = tmp.path().join("Bengal_100.jpg");
    fs::write(&text, "<html>not found</html>").unwrap();
    let jpeg = jpeg_bytes(&pattern_rgb(48, 32));
    let trunc = tmp.path().join("pug_100.jpg");
    fs::write(&trunc, &jpeg[..jpeg.len() / 3]).unwrap();
    let files = mix_data::get_image_files(tmp.path()).unwrap();
    (tmp, files, vec![text, trunc])
}

#[test]
fn bad_files_are_skipped_and_reported_under_skip() {
    let (_tmp, files, bad) = dataset_with_bad_files(); // 32 files, 2 bad
    let c = LoaderConfig {
        valid_pct: 0.0,
        ..cfg(2)
    };
    let dls = DataLoaders::from_name_re(&files, PETS_PATTERN, &c).unwrap();
    assert_eq!(dls.train.num_batches(), 8);
    let first = collect(dls.train.epoch(0));
    // 30 good items: 7 full batches, 2 dropped; no batch holds a bad file's pixels.
    assert_eq!(first.len(), 7);
    assert!(first.iter().all(|b| b.len() == 4));
    let mut skipped: Vec<PathBuf> = dls.train.skipped().into_iter().map(|s| s.path).collect();
    skipped.sort();
    let mut want = bad.clone();
    want.sort();
    assert_eq!(skipped, want);
    assert!(dls
        .train
        .skipped()
        .iter()
        .any(|s| s.reason.contains("truncated")));
    assert_eq!(dls.train.len_items(), 30);
    assert_eq!(dls.train.num_batches(), 7);
    // The good items come in plan order with the bad ones left out: compare with the oracle.
    let plan: Vec<(usize, mix_data::CropPos)> = dls
        .train
        .plan(0)
        .into_iter()
        .filter(|&(i, _)| !bad.contains(&dls.train.items()[i]))
        .collect();
    for (b, chunk) in first.iter().zip(plan.chunks(4)) {
        for (k, &(i, pos)) in chunk.iter().enumerate() {
            assert_eq!(
                b.images.slice(s![k, .., .., ..]),
                load_item(&dls.train.items()[i], 16, pos).unwrap()
            );
        }
    }
    // Once known, bad files are left out before decoding: same batches as a fresh loader.
    let fresh = DataLoaders::from_name_re(&files, PETS_PATTERN, &c).unwrap();
    let _ = collect(dls.train.epoch(1));
    assert_eq!(collect(dls.train.epoch(2)), collect(fresh.train.epoch(2)));
}

#[test]
fn bad_files_end_the_epoch_with_an_error_under_error_policy() {
    let (_tmp, files, bad) = dataset_with_bad_files();
    let c = LoaderConfig {
        valid_pct: 0.0,
        bad_image: BadImagePolicy::Error,
        ..cfg(2)
    };
    let dls = DataLoaders::from_name_re(&files, PETS_PATTERN, &c).unwrap();
    let results: Vec<_> = dls.train.epoch(0).collect();
    let err = results.last().unwrap().as_ref().unwrap_err();
    assert!(matches!(err, Error::Decode { .. }));
    let msg = err.to_string();
    assert!(
        bad.iter().any(|p| msg.contains(&p.display().to_string())),
        "{msg}"
    );
    assert!(results[..results.len() - 1].iter().all(Result::is_ok));
}

#[test]
fn labelling_errors_name_the_file_and_pattern() {
    let (tmp, mut files) = dataset(2);
    let odd = tmp.path().join("README.png");
    fs::write(&odd, b"x").unwrap();
    files.push(odd);
    let err = DataLoaders::from_name_re(&files, PETS_PATTERN, &cfg(1)).unwrap_err();
    assert!(matches!(err, Error::NoMatch { .. }));
    assert!(err.to_string().contains("README.png") && err.to_string().contains(PETS_PATTERN));
    assert!(matches!(
        DataLoaders::from_name_re(&files, r"[^/]+_\d+", &cfg(1)),
        Err(Error::Pattern { .. })
    ));
}

#[test]
fn a_label_only_in_validation_is_an_error() {
    let (_tmp, files) = dataset(2);
    let c = LoaderConfig {
        valid_pct: 1.0,
        ..cfg(1)
    };
    let err = DataLoaders::from_name_re(&files, PETS_PATTERN, &c).unwrap_err();
    assert!(matches!(err, Error::UnknownLabel { .. }), "{err}");
}

#[test]
fn bad_arguments_are_errors() {
    let items = vec![PathBuf::from("a_1.jpg")];
    assert!(DataLoader::new(items.clone(), vec![], LoaderKind::Train, &cfg(1)).is_err());
    assert!(DataLoader::new(
        items.clone(),
        vec![0],
        LoaderKind::Train,
        &LoaderConfig {
            batch_size: 0,
            ..cfg(1)
        }
    )
    .is_err());
    assert!(DataLoader::new(
        items,
        vec![0],
        LoaderKind::Train,
        &LoaderConfig {
            item_size: 0,
            ..cfg(1)
        }
    )
    .is_err());
}

#[test]
fn iterators_are_send_static_and_can_be_dropped_early() {
    fn assert_send_static<T: Send + 'static>(_: &T) {}
    let (_tmp, files) = dataset(6);
    let dls = DataLoaders::from_name_re(
        &files,
        PETS_PATTERN,
        &LoaderConfig {
            prefetch: 1,
            ..cfg(2)
        },
    )
    .unwrap();
    let mut it = dls.train.epoch(0);
    assert_send_static(&it);
    let first = it.next().unwrap().unwrap();
    drop(it); // must not hang with the producer blocked on a full channel
              // Consumed on another thread after the loader is gone.
    let it = dls.valid.epoch(0);
    drop(dls);
    let n = std::thread::spawn(move || it.count()).join().unwrap();
    assert_eq!(n, 2);
    assert_eq!(first.len(), 4);
}

#[test]
fn single_item_function_matches_the_loader_for_odd_files() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("wide_1.jpg");
    write_jpeg(&p, &pattern_rgb(4000, 10));
    let item = load_item(&p, 32, mix_data::CropPos::CENTER).unwrap();
    let dl = DataLoader::new(
        vec![p.clone()],
        vec![0],
        LoaderKind::Valid,
        &LoaderConfig {
            item_size: 32,
            ..cfg(1)
        },
    )
    .unwrap();
    let b = collect(dl.epoch(0));
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].images.slice(s![0, .., .., ..]), item);
}

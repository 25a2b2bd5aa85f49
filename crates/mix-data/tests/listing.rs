//! File listing, labelling, vocab and splitting against fastai's rules.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::{label_text, split_case, PETS_PATTERN, PET_BREEDS};
use mix_data::{
    get_image_files, is_image_file, random_split, Error, RegexLabeller, Vocab, IMAGE_EXTENSIONS,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn touch(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, b"x").unwrap();
}

#[test]
fn get_image_files_is_recursive_sorted_case_insensitive_and_skips_hidden() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let keep = [
        "b/z.JPG",
        "a.jpg",
        "b/c/d.PnG",
        "b/y.jpeg",
        "x.webp",
        "t.TIFF",
        "jpg",
        "b/c/e.gif",
    ];
    let drop = [
        ".hidden.jpg",
        ".git/a.jpg",
        "b/.cache/q.png",
        "notes.txt",
        "a.jpg.bak",
        "Makefile",
        "mat.mat",
    ];
    for f in keep.iter().chain(&drop) {
        touch(&d.join(f));
    }
    let got = get_image_files(d).unwrap();
    let mut want: Vec<PathBuf> = keep.iter().map(|f| d.join(f)).collect();
    want.sort();
    assert_eq!(got, want);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "sorted");
}

#[test]
fn get_image_files_follows_symlinks_without_looping() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    touch(&d.join("real/a.png"));
    std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
    std::os::unix::fs::symlink(d, d.join("real/loop")).unwrap();
    let got = get_image_files(d).unwrap();
    // The linked folder is listed under both paths (like os.walk(followlinks=True)); the links
    // back to the root are not followed, so the walk ends.
    assert_eq!(got, vec![d.join("link/a.png"), d.join("real/a.png")]);
}

#[test]
fn get_image_files_missing_folder_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = get_image_files(&missing).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn extension_list_is_pythons_image_mimetypes() {
    // CPython 3.11's mimetypes image/* extensions (checked with the project's venv) plus webp.
    for ext in [
        "jpg", "jpeg", "jpe", "png", "gif", "bmp", "tif", "tiff", "webp", "ico", "svg", "ppm",
    ] {
        assert!(IMAGE_EXTENSIONS.contains(&ext), "{ext}");
        assert!(
            is_image_file(Path::new(&format!("a.{}", ext.to_uppercase()))),
            "{ext}"
        );
    }
    for name in ["a.txt", "a.mat", ".a.jpg", "a.jpg~", "jpgx"] {
        assert!(!is_image_file(Path::new(name)), "{name}");
    }
}

#[test]
fn labeller_handles_real_pet_names() {
    let l = RegexLabeller::new(PETS_PATTERN).unwrap();
    assert_eq!(
        l.label(Path::new(
            "/data/oxford-iiit-pet/images/great_pyrenees_173.jpg"
        ))
        .unwrap(),
        "great_pyrenees"
    );
    assert_eq!(
        l.label(Path::new("images/Abyssinian_1.jpg")).unwrap(),
        "Abyssinian"
    );
    assert_eq!(
        l.label(Path::new("staffordshire_bull_terrier_10.jpg"))
            .unwrap(),
        "staffordshire_bull_terrier"
    );
    // The pattern is searched in the file name only: a folder name with `_<digits>` is ignored.
    assert_eq!(
        l.label(Path::new("run_1/set_2/Bengal_42.jpg")).unwrap(),
        "Bengal"
    );
}

#[test]
fn labeller_gives_the_37_pet_classes_in_fastai_order() {
    let l = RegexLabeller::new(PETS_PATTERN).unwrap();
    let files: Vec<PathBuf> = PET_BREEDS
        .iter()
        .flat_map(|b| (1..=3).map(move |k| PathBuf::from(format!("images/{b}_{}.jpg", k * 57))))
        .collect();
    let labels: Vec<String> = files.iter().map(|f| l.label(f).unwrap()).collect();
    for (f, lab) in files.iter().zip(&labels) {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(&format!("{lab}_")), "{name} -> {lab}");
        assert!(PET_BREEDS.contains(&lab.as_str()));
    }
    let vocab = Vocab::new(&labels);
    assert_eq!(vocab.len(), 37);
    // Python's sorted(): code point order, so capitalised cat breeds come first.
    let mut want: Vec<&str> = PET_BREEDS.to_vec();
    want.sort_by(|a, b| a.chars().map(u32::from).cmp(b.chars().map(u32::from)));
    assert_eq!(vocab.labels(), want);
    assert_eq!(vocab.label(0), "Abyssinian");
    assert_eq!(vocab.label(12), "american_bulldog");
    for (i, lab) in vocab.labels().iter().enumerate() {
        assert_eq!(vocab.index_of(lab), Some(i));
    }
    assert_eq!(vocab.index_of("unicorn"), None);
}

#[test]
fn no_match_is_an_error_naming_file_and_pattern() {
    let l = RegexLabeller::new(PETS_PATTERN).unwrap();
    let err = l.label(Path::new("images/README.jpg")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::NoMatch { .. }));
    assert!(
        msg.contains("README.jpg") && msg.contains(PETS_PATTERN),
        "{msg}"
    );
}

#[test]
fn pattern_without_group_or_invalid_is_an_error() {
    let err = RegexLabeller::new(r"[^/]+_\d+").unwrap_err();
    assert!(matches!(err, Error::Pattern { .. }));
    assert!(err.to_string().contains("capture group"), "{err}");
    assert!(matches!(
        RegexLabeller::new(r"(unclosed"),
        Err(Error::Pattern { .. })
    ));
}

#[test]
fn search_not_full_match_and_optional_group() {
    let l = RegexLabeller::new(r"(\d+)").unwrap();
    assert_eq!(l.label_str("cat_0042_x.png"), Some("0042"));
    // Group 1 not taking part in the match counts as no label.
    let opt = RegexLabeller::new(r"(a)?b").unwrap();
    assert_eq!(opt.label_str("b.png"), None);
    assert!(opt.label(Path::new("b.png")).is_err());
}

#[test]
fn split_follows_fastai_sizes() {
    for (n, pct, want_valid) in [
        (7390usize, 0.2, 1478usize),
        (10, 0.2, 2),
        (9, 0.2, 1),
        (4, 0.2, 0),
        (5, 1.0, 5),
        (5, 0.0, 0),
    ] {
        let s = random_split(n, pct, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!(s.valid.len(), want_valid, "n={n} pct={pct}");
        assert_eq!(s.train.len(), n - want_valid);
    }
    assert!(random_split(3, 1.5, &mut ChaCha8Rng::seed_from_u64(1)).is_err());
    assert!(random_split(3, f64::NAN, &mut ChaCha8Rng::seed_from_u64(1)).is_err());
}

#[test]
fn split_is_deterministic_per_seed_and_differs_across_seeds() {
    let a = random_split(1000, 0.2, &mut ChaCha8Rng::seed_from_u64(42)).unwrap();
    let b = random_split(1000, 0.2, &mut ChaCha8Rng::seed_from_u64(42)).unwrap();
    let c = random_split(1000, 0.2, &mut ChaCha8Rng::seed_from_u64(43)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.valid, c.valid);
    // Shuffled, not a prefix of 0..n.
    assert_ne!(a.valid, (0..200).collect::<Vec<_>>());
}

proptest! {
    #[test]
    fn split_partitions_the_indices((n, pct) in split_case(), seed in any::<u64>()) {
        let s = random_split(n, pct, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
        prop_assert_eq!(s.valid.len(), (pct * n as f64) as usize);
        let all: BTreeSet<usize> = s.train.iter().chain(&s.valid).copied().collect();
        prop_assert_eq!(all.len(), n);
        prop_assert_eq!(all, (0..n).collect::<BTreeSet<_>>());
    }

    #[test]
    fn labeller_recovers_label_from_any_breed_like_name(label in label_text(), k in 1u32..100_000, ext in "(jpg|JPG|png|jpeg)") {
        let l = RegexLabeller::new(PETS_PATTERN).unwrap();
        let path = PathBuf::from(format!("some_1/dir_2/{label}_{k}.{ext}"));
        prop_assert_eq!(l.label(&path).unwrap(), label);
    }

    #[test]
    fn vocab_is_sorted_unique_and_invertible(labels in proptest::collection::vec(label_text(), 0..40)) {
        let v = Vocab::new(&labels);
        prop_assert!(v.labels().windows(2).all(|w| w[0] < w[1]));
        let distinct: BTreeSet<&String> = labels.iter().collect();
        prop_assert_eq!(v.len(), distinct.len());
        for lab in &labels {
            let i = v.index_of(lab).unwrap();
            prop_assert_eq!(v.label(i), lab.as_str());
        }
    }
}

#[test]
fn get_image_files_refuses_links_that_leave_the_listed_folder() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("other-dataset");
    touch(&outside.join("stolen.jpg"));
    touch(&root.join("own/a.jpg"));

    // A folder link, a file link and a chain of two links that ends outside: each is an error
    // naming the link and where it leads.
    let cases: [(&str, PathBuf); 3] = [
        ("up", tmp.path().to_path_buf()),
        ("own/b.jpg", outside.join("stolen.jpg")),
        ("own/hop", root.join("own/up2")),
    ];
    for (name, target) in &cases {
        let link = root.join(name);
        symlink(target, &link).unwrap();
        if *name == "own/hop" {
            // The second link of the chain: relative, climbing two levels out of the root.
            symlink("../../other-dataset", root.join("own/up2")).unwrap();
        }
        let err = get_image_files(&root).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Io { .. }), "{msg}");
        assert!(msg.contains("outside the folder being listed"), "{msg}");
        assert!(
            msg.contains(link.to_str().unwrap())
                || msg.contains(root.join("own/up2").to_str().unwrap()),
            "the message names the link: {msg}"
        );
        assert!(msg.contains(tmp.path().to_str().unwrap()), "{msg}");
        fs::remove_file(&link).unwrap();
        let _ = fs::remove_file(root.join("own/up2"));
        assert_eq!(
            get_image_files(&root).unwrap(),
            vec![root.join("own/a.jpg")]
        );
    }

    // Links the listing would not use anyway are no reason to fail: a hidden folder link and a
    // link that is not named like an image.
    symlink(&outside, root.join(".cache")).unwrap();
    symlink(outside.join("stolen.jpg"), root.join("notes.txt")).unwrap();
    assert_eq!(
        get_image_files(&root).unwrap(),
        vec![root.join("own/a.jpg")]
    );
}

#[test]
fn get_image_files_survives_symlink_loops_and_follows_inside_links() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    touch(&root.join("real/a.png"));
    // Two links pointing at each other, a link to itself and a dangling link resolve to nothing:
    // skipped. A relative link to a sibling folder and a link to the root itself stay inside.
    symlink("b.jpg", root.join("a.jpg")).unwrap();
    symlink("a.jpg", root.join("b.jpg")).unwrap();
    symlink("self", root.join("self")).unwrap();
    symlink("missing", root.join("gone.png")).unwrap();
    symlink("real", root.join("alias")).unwrap();
    symlink("..", root.join("real/parent")).unwrap();
    let started = std::time::Instant::now();
    let got = get_image_files(root).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(got, vec![root.join("alias/a.png"), root.join("real/a.png")]);
}

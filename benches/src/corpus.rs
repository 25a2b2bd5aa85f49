//! The pets-like corpus the speed steps time: an Oxford-IIIT-Pet-shaped tree
//! (`oxford-iiit-pet/images/<Breed>_<n>.jpg`, 37 breeds) made from the repository's own photos in
//! data/sample/images, seeded and cached, so that a fresh clone benchmarks without anything
//! outside it.
//!
//! Each image is a random crop, flip, rescale (longer side 300..500 px, as in the real set) and
//! colour change of one sample photo, saved as JPEG of quality 80..95. The breeds say nothing about
//! the content: the corpus is for loader and epoch speed, not for accuracy.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use image::{DynamicImage, ExtendedColorType, RgbImage};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::epoch;
use crate::runner::project_root;

/// The sample photos the corpus is made from, from the workspace root.
const PHOTOS: &str = "data/sample/images";

/// `mix-bench corpus OUT [--per-breed N] [--seed S]`.
#[derive(Debug, clap::Args)]
pub struct CorpusArgs {
    /// the folder to make the corpus in
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// images per breed, 37 breeds (default: the CUDA epoch's 200).
    #[arg(long, value_name = "N", default_value_t = epoch::CUDA.per_breed, hide_default_value = true)]
    pub per_breed: usize,
    /// the generator's seed (default: the bench's)
    #[arg(long, value_name = "S", default_value_t = epoch::CORPUS_SEED, hide_default_value = true)]
    pub seed: u64,
}

/// Makes the corpus `args` asks for and prints its images folder (the GPU pack's script reads it).
pub fn task(args: &CorpusArgs) -> Result<()> {
    if args.per_breed == 0 {
        bail!("--per-breed 0: expected at least one image per breed");
    }
    let images = ensure(&args.out, &photos_dir()?, args.per_breed, args.seed)?;
    println!("{}", images.display());
    Ok(())
}

/// The folder the sample photos are read from: the build's workspace root when it is there, else
/// the current folder (a copy of the repository on another machine).
fn photos_dir() -> Result<PathBuf> {
    let built = project_root().join(PHOTOS);
    if built.is_dir() {
        return Ok(built);
    }
    let here = std::env::current_dir()
        .context("cannot read the current folder")?
        .join(PHOTOS);
    if here.is_dir() {
        return Ok(here);
    }
    bail!(
        "expected the sample photos in {} or {}, found neither: run from the repository root",
        built.display(),
        here.display()
    )
}

/// The 37 breeds of Oxford-IIIT Pet as its file names spell them (cat breeds capitalised).
pub const BREEDS: [&str; 37] = [
    "Abyssinian",
    "Bengal",
    "Birman",
    "Bombay",
    "British_Shorthair",
    "Egyptian_Mau",
    "Maine_Coon",
    "Persian",
    "Ragdoll",
    "Russian_Blue",
    "Siamese",
    "Sphynx",
    "american_bulldog",
    "american_pit_bull_terrier",
    "basset_hound",
    "beagle",
    "boxer",
    "chihuahua",
    "english_cocker_spaniel",
    "english_setter",
    "german_shorthaired",
    "great_pyrenees",
    "havanese",
    "japanese_chin",
    "keeshond",
    "leonberger",
    "miniature_pinscher",
    "newfoundland",
    "pomeranian",
    "pug",
    "saint_bernard",
    "samoyed",
    "scottish_terrier",
    "shiba_inu",
    "staffordshire_bull_terrier",
    "wheaten_terrier",
    "yorkshire_terrier",
];

/// The longer side of a generated image, in pixels, inclusive (the real set's range).
pub const LONG_SIDE: (u32, u32) = (300, 500);
/// JPEG quality of a generated image, inclusive.
pub const QUALITY: (u8, u8) = (80, 95);

/// What the `complete` marker of a finished corpus holds. A corpus cached under the same name by an
/// older generator (the Python tool this module replaces) has another marker and is made again, so
/// that a run never times files of a different making.
const MARKER: &str = "xtask corpus v1: data/sample/images, ChaCha8\n";

/// How one output image is made from the photos: every random draw, taken before any pixel work so
/// that the images can be rendered in parallel and still depend on the seed only.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    /// File name, `<Breed>_<n>.jpg`.
    name: String,
    /// Index of the source photo.
    photo: usize,
    /// Crop rectangle `(x, y, width, height)` in the photo.
    crop: (u32, u32, u32, u32),
    /// Mirror left to right.
    flip: bool,
    /// Width and height after the rescale.
    size: (u32, u32),
    /// Saturation factor (Pillow's `ImageEnhance.Color`): 0 grey, 1 unchanged.
    colour: f32,
    /// JPEG quality.
    quality: u8,
}

/// Draws the plan of every image, breed by breed, `per_breed` each, numbered from 1.
fn plans(photos: &[RgbImage], per_breed: usize, rng: &mut impl Rng) -> Vec<Plan> {
    let mut out = Vec::with_capacity(BREEDS.len() * per_breed);
    for breed in BREEDS {
        for n in 1..=per_breed {
            let photo = rng.gen_range(0..photos.len());
            let (w, h) = photos[photo].dimensions();
            let cw = rng.gen_range((w / 2).max(1)..=w);
            let ch = rng.gen_range((h / 2).max(1)..=h);
            let x = rng.gen_range(0..=w - cw);
            let y = rng.gen_range(0..=h - ch);
            let flip = rng.gen_bool(0.5);
            let long = rng.gen_range(LONG_SIDE.0..=LONG_SIDE.1);
            let scale = f64::from(long) / f64::from(cw.max(ch));
            // The longer side gets exactly `long`; the shorter one is scaled and rounded down, as
            // the Python tool did.
            let side = |v: u32| {
                if v == cw.max(ch) {
                    long
                } else {
                    ((f64::from(v) * scale) as u32).max(1)
                }
            };
            let size = (side(cw), side(ch));
            let colour = rng.gen_range(0.6f32..1.4);
            let quality = rng.gen_range(QUALITY.0..=QUALITY.1);
            out.push(Plan {
                name: format!("{breed}_{n}.jpg"),
                photo,
                crop: (x, y, cw, ch),
                flip,
                size,
                colour,
                quality,
            });
        }
    }
    out
}

/// Pillow's `ImageEnhance.Color(im).enhance(factor)`: a blend of the image with its grey version
/// (ITU-R 601-2 luma, as Pillow's `L` mode), `grey + factor * (pixel - grey)`, rounded and clamped.
/// Integer arithmetic on the raw bytes, since xtask's own code is built unoptimised.
fn saturate(img: &mut RgbImage, factor: f32) {
    // The factor in 1/1024ths.
    let f = (factor * 1024.0).round() as i32;
    for px in img.as_mut().chunks_exact_mut(3) {
        let (r, g, b) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
        let grey = (r * 299 + g * 587 + b * 114 + 500) / 1000;
        for c in px.iter_mut() {
            let v = grey + ((f * (i32::from(*c) - grey) + 512) >> 10);
            *c = v.clamp(0, 255) as u8;
        }
    }
}

/// The JPEG bytes of one planned image. The crop, flip and rescale go through `DynamicImage`'s
/// methods, which the image crate compiles optimised (its generic functions would be compiled here,
/// unoptimised, and run several times slower); the colour change is done before the rescale, on the
/// smaller image.
fn render(photos: &[RgbImage], plan: &Plan) -> Result<Vec<u8>> {
    let (x, y, w, h) = plan.crop;
    let photo = DynamicImage::ImageRgb8(photos[plan.photo].clone());
    let mut img = photo.crop_imm(x, y, w, h);
    if plan.flip {
        img = img.fliph();
    }
    let mut img = img.into_rgb8();
    saturate(&mut img, plan.colour);
    let img =
        DynamicImage::ImageRgb8(img).resize_exact(plan.size.0, plan.size.1, FilterType::Triangle);
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, plan.quality)
        .encode(
            img.as_bytes(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .with_context(|| format!("cannot encode {} as JPEG", plan.name))?;
    Ok(bytes)
}

/// Writes `per_breed` images of every breed into `images` (which must exist), drawing every random
/// choice from `rng`; the same photos, count and rng state give byte-identical files. The images are
/// rendered on every core, each from its own plan, so the thread count does not change them.
pub fn generate(
    photos: &[RgbImage],
    per_breed: usize,
    rng: &mut impl Rng,
    images: &Path,
    progress: &ProgressBar,
) -> Result<()> {
    if photos.is_empty() {
        bail!("expected at least one source photo for the corpus, found none");
    }
    let plans = plans(photos, per_breed, rng);
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(plans.len().max(1));
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let plans = &plans;
                scope.spawn(move || -> Result<()> {
                    for plan in plans.iter().skip(t).step_by(threads) {
                        let bytes = render(photos, plan)?;
                        let path = images.join(&plan.name);
                        std::fs::write(&path, bytes)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        progress.inc(1);
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a corpus thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// Decodes every image of `folder` (sorted by path, so that the photo indices are stable).
pub fn load_photos(folder: &Path) -> Result<Vec<RgbImage>> {
    let files = mix_data::get_image_files(folder)
        .with_context(|| format!("cannot list the photos in {}", folder.display()))?;
    if files.is_empty() {
        bail!(
            "expected the sample photos in {}, found no image; restore them from git \
             (`git checkout -- data/sample`)",
            folder.display()
        );
    }
    files
        .iter()
        .map(|f| mix_data::decode_rgb(f).with_context(|| format!("cannot decode {}", f.display())))
        .collect()
}

/// The corpus of `per_breed` images per breed for `seed` under `data`, made from `photos_dir` on
/// first use and cached (`pets-like-n<N>-s<S>`); returns its images folder.
pub fn ensure(data: &Path, photos_dir: &Path, per_breed: usize, seed: u64) -> Result<PathBuf> {
    let name = format!("pets-like-n{per_breed}-s{seed}");
    let dir = data.join(&name);
    let images = dir.join("oxford-iiit-pet").join("images");
    let marker = dir.join("complete");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == MARKER) {
        return Ok(images);
    }
    let photos = load_photos(photos_dir)?;
    // Generated beside its final place and renamed, so that an interrupted run leaves no half-made
    // corpus that a later run would time.
    let tmp = data.join(format!("{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    let tmp_images = tmp.join("oxford-iiit-pet").join("images");
    std::fs::create_dir_all(&tmp_images)
        .with_context(|| format!("cannot create {}", tmp_images.display()))?;
    let total = (BREEDS.len() * per_breed) as u64;
    eprintln!(
        "making the pets-like corpus: {total} images from the {} photos of {} into {}",
        photos.len(),
        photos_dir.display(),
        dir.display()
    );
    let progress = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} images {elapsed}") {
        progress.set_style(style);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    generate(&photos, per_breed, &mut rng, &tmp_images, &progress)?;
    progress.finish();
    std::fs::write(tmp.join("complete"), MARKER)
        .with_context(|| format!("cannot write {}", tmp.join("complete").display()))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), dir.display()))?;
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;
    /// The seed notebook's file-name pattern (xtask's `dataset::SEED_PATTERN`).
    const SEED_PATTERN: &str = r"([^/]+)_\d+.*$";
    use std::collections::BTreeSet;

    /// Two small synthetic photos of different shapes: gradients, so that crops and colour changes
    /// change the bytes.
    fn photos() -> Vec<RgbImage> {
        vec![
            RgbImage::from_fn(64, 48, |x, y| {
                image::Rgb([(x * 4) as u8, (y * 5) as u8, 90])
            }),
            RgbImage::from_fn(40, 72, |x, y| {
                image::Rgb([200, (x * 6) as u8, ((x + y) * 2) as u8])
            }),
        ]
    }

    fn make(seed: u64, per_breed: usize) -> (tempfile::TempDir, Vec<(String, Vec<u8>)>) {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        generate(
            &photos(),
            per_breed,
            &mut rng,
            dir.path(),
            &ProgressBar::hidden(),
        )
        .unwrap();
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        files.sort();
        (dir, files)
    }

    #[test]
    fn the_same_seed_gives_byte_identical_pets_named_jpegs_of_the_right_size() {
        let (dir, first) = make(7, 1);
        let (_again_dir, again) = make(7, 1);
        assert_eq!(first.len(), 37);
        assert!(first == again, "a rerun with seed 7 changed some file");
        // Another seed draws other images.
        let draw = |seed| plans(&photos(), 1, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_ne!(draw(7), draw(8));
        // Every name labels with the seed's pattern, and the labels are the 37 breeds.
        let labeller = mix_data::RegexLabeller::new(SEED_PATTERN).unwrap();
        let labels: BTreeSet<&str> = first
            .iter()
            .map(|(name, _)| labeller.label_str(name).unwrap())
            .collect();
        assert_eq!(labels, BREEDS.iter().copied().collect::<BTreeSet<_>>());
        assert!(dir.path().join("great_pyrenees_1.jpg").is_file());
        let mut longs = BTreeSet::new();
        for (name, bytes) in &first {
            assert!(bytes.starts_with(&[0xFF, 0xD8]), "{name} is no JPEG");
            let img = mix_data::decode_rgb(&dir.path().join(name)).unwrap();
            let long = img.width().max(img.height());
            assert!(
                (LONG_SIDE.0..=LONG_SIDE.1).contains(&long),
                "{name}: {}x{}",
                img.width(),
                img.height()
            );
            longs.insert(long);
        }
        // Rescaled to many sizes, not one.
        assert!(longs.len() > 10, "{longs:?}");
    }

    #[test]
    fn names_are_numbered_from_one_per_breed() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let names: Vec<String> = plans(&photos(), 3, &mut rng)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names.len(), 111);
        assert_eq!(
            names[..4],
            [
                "Abyssinian_1.jpg",
                "Abyssinian_2.jpg",
                "Abyssinian_3.jpg",
                "Bengal_1.jpg"
            ]
        );
        assert_eq!(names[110], "yorkshire_terrier_3.jpg");
    }

    #[test]
    fn plans_stay_inside_their_photo_and_draw_qualities_in_range() {
        let photos = photos();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let plans = plans(&photos, 3, &mut rng);
        assert_eq!(plans.len(), 111);
        for p in &plans {
            let (w, h) = photos[p.photo].dimensions();
            let (x, y, cw, ch) = p.crop;
            assert!(
                cw >= w / 2 && ch >= h / 2 && x + cw <= w && y + ch <= h,
                "{p:?}"
            );
            assert!((QUALITY.0..=QUALITY.1).contains(&p.quality), "{p:?}");
            assert!((0.6..1.4).contains(&p.colour), "{p:?}");
        }
        assert!(plans.iter().any(|p| p.flip) && plans.iter().any(|p| !p.flip));
        assert!(plans.iter().any(|p| p.photo == 0) && plans.iter().any(|p| p.photo == 1));
    }

    #[test]
    fn saturation_zero_is_grey_and_one_keeps_the_pixel() {
        let mut img = RgbImage::from_pixel(2, 1, image::Rgb([200, 100, 50]));
        saturate(&mut img, 1.0);
        assert_eq!(img.get_pixel(0, 0).0, [200, 100, 50]);
        saturate(&mut img, 0.0);
        // 0.299 * 200 + 0.587 * 100 + 0.114 * 50 = 124.2.
        assert_eq!(img.get_pixel(1, 0).0, [124, 124, 124]);
    }

    #[test]
    fn the_corpus_is_made_once_from_a_photo_folder_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let photos_dir = dir.path().join("photos");
        std::fs::create_dir_all(&photos_dir).unwrap();
        photos()[0].save(photos_dir.join("a_1.png")).unwrap();
        std::fs::write(photos_dir.join("LICENSES.md"), "cc0").unwrap();
        let data = dir.path().join("data");
        let images = ensure(&data, &photos_dir, 1, 5).unwrap();
        assert_eq!(images, data.join("pets-like-n1-s5/oxford-iiit-pet/images"));
        assert_eq!(std::fs::read_dir(&images).unwrap().count(), 37);
        assert!(!data.join("pets-like-n1-s5.tmp").exists());
        // A cached corpus is returned as it is: a file removed from it stays removed.
        std::fs::remove_file(images.join("pug_1.jpg")).unwrap();
        ensure(&data, &photos_dir, 1, 5).unwrap();
        assert!(!images.join("pug_1.jpg").exists());
        // One with another generator's marker (the Python tool's was empty) is made again.
        std::fs::write(data.join("pets-like-n1-s5/complete"), "").unwrap();
        ensure(&data, &photos_dir, 1, 5).unwrap();
        assert!(images.join("pug_1.jpg").exists());
        assert_eq!(std::fs::read_dir(&images).unwrap().count(), 37);
        let err = ensure(&data, &dir.path().join("none"), 1, 6).unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot list the photos"),
            "{err:#}"
        );
    }
}

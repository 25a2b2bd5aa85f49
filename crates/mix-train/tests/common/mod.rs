//! Running the mix-train binary the way a user does, in a sandbox with its own cache and run folder.

// Each test binary uses a different part of this module, re-exports included.
#![allow(dead_code, unused_imports)]

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use mix_test_support::{sample_images, sha256_hex, Run, SAMPLE_CLASSES};

/// A sandbox (mix-test-support) whose binary is mix-train, with the run folders in `runs/`.
pub struct Sandbox(mix_test_support::Sandbox);

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox(mix_test_support::Sandbox::new(env!(
            "CARGO_BIN_EXE_mix-train"
        )))
    }

    pub fn runs(&self) -> PathBuf {
        self.path().join("runs")
    }

    /// The sandbox's command (private cache, no proxy, one download attempt) without colours;
    /// [`Sandbox::run`] appends `--out <sandbox>/runs`.
    pub fn command(&self) -> Command {
        let mut cmd = self.0.command();
        cmd.env("NO_COLOR", "1");
        cmd
    }

    /// Runs the binary with `args` and `--out <sandbox>/runs` (unless resuming).
    pub fn run(&self, args: &[&str]) -> Run {
        let runs = self.runs();
        let runs = runs.to_str().unwrap();
        let mut all: Vec<&str> = args.to_vec();
        if !args.contains(&"--resume") {
            all.extend(["--out", runs]);
        }
        self.run_with(self.command(), &all)
    }

    /// The run folders made so far.
    pub fn run_dirs(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.runs()) else {
            return Vec::new();
        };
        let mut dirs: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        dirs.sort();
        dirs
    }
}

impl Deref for Sandbox {
    type Target = mix_test_support::Sandbox;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The rows of a CSV file: the header, then the records, split on commas.
pub fn csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (header, rows)
}

/// fastai's one-cycle learning rate at `pos` in [0, 1] for `lr_max` with its defaults (div 25,
/// div_final 1e5, pct_start 0.25, cosine pieces), computed here independently of mix-tch.
pub fn one_cycle_lr(lr_max: f64, pos: f64) -> f64 {
    let cos = |start: f64, end: f64, p: f64| {
        start + (1.0 + (std::f64::consts::PI * (1.0 - p)).cos()) * (end - start) / 2.0
    };
    let pct = 0.25;
    if pos < pct {
        cos(lr_max / 25.0, lr_max, pos / pct)
    } else {
        cos(lr_max, lr_max / 1e5, (pos - pct) / (1.0 - pct))
    }
}

/// A loopback server (mix-test-support) answering every GET with one file, at `url`.
pub struct FileServer {
    pub url: String,
    server: mix_test_support::http::FileServer,
}

impl FileServer {
    pub fn start(name: &str, body: Vec<u8>) -> FileServer {
        let server = mix_test_support::http::FileServer::start(body);
        FileServer {
            url: server.url(name),
            server,
        }
    }

    pub fn count(&self) -> usize {
        self.server.count()
    }
}

/// torchvision-format ResNet18 weights (body names and shapes plus `fc.*`), drawn from `seed`, as
/// the bytes of a `.safetensors` file.
pub fn resnet18_safetensors(seed: u64) -> Vec<u8> {
    use mix_tch::tch::{Device, Kind, Tensor};
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let model = mix_tch::VisionModel::new(1000, Device::Cpu, &mut rng).unwrap();
    let mut named: Vec<(String, Tensor)> = model
        .variables()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("head."))
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    named.push((
        "fc.weight".into(),
        Tensor::zeros([1000, 512], (Kind::Float, Device::Cpu)),
    ));
    named.push((
        "fc.bias".into(),
        Tensor::zeros([1000], (Kind::Float, Device::Cpu)),
    ));
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    Tensor::write_safetensors(&named, &path).unwrap();
    std::fs::read(path).unwrap()
}

/// Images per class of the generated dataset: 24 images, 20 to train on and 4 to validate.
pub const PER_CLASS: usize = 12;

/// Writes a dataset of two classes of 24 px pictures, `cat_<n>.png` dark and `dog_<n>.png` light.
pub fn tiny_dataset(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for n in 0..PER_CLASS {
        for (label, base) in [("cat", 40u8), ("dog", 200u8)] {
            let img = image::RgbImage::from_fn(24, 24, |x, y| {
                let v = base.wrapping_add(((x * 3 + y * 5 + n as u32 * 7) % 40) as u8);
                image::Rgb([v, v / 2, 255 - v])
            });
            img.save(images.join(format!("{label}_{n}.png"))).unwrap();
        }
    }
    images
}

/// The arguments of a new run of `epochs` on `images` (a [`tiny_dataset`]): 5 steps of 4 images an
/// epoch at 16 px.
pub fn run_args(images: &Path, epochs: usize) -> Vec<String> {
    [
        "--dataset",
        images.to_str().unwrap(),
        "--device",
        "cpu",
        "--bs",
        "4",
        "--resize",
        "20",
        "--size",
        "16",
        "--pretrained",
        "none",
        "--epochs",
        &epochs.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

//! Running the mix-train binary the way a user does, in a sandbox with its own cache and run folder.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The sample dataset's images, bundled in the repository.
pub fn sample_images() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/images")
}

/// The classes of the sample dataset, in vocab order.
pub const SAMPLE_CLASSES: [&str; 6] = ["astronaut", "cat", "coffee", "galaxy", "retina", "rocket"];

/// A temporary folder holding a private data cache (`cache/`), an empty fastai home and the run
/// folders (`runs/`).
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

/// What one run of the binary did.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn runs(&self) -> PathBuf {
        self.path().join("runs")
    }

    pub fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// A command for the binary with the sandbox's cache, no fastai cache, no proxy, one download
    /// attempt, and `--out <sandbox>/runs` appended by [`Sandbox::run`].
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mix-train"));
        cmd.current_dir(self.path())
            .env("MIX_DATA_HOME", self.cache())
            .env("FASTAI_HOME", self.path().join("no-fastai"))
            .env("MIX_FETCH_ATTEMPTS", "1")
            .env("NO_COLOR", "1");
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
            cmd.env_remove(var).env_remove(var.to_lowercase());
        }
        cmd
    }

    /// Runs the binary with `args`.
    pub fn run_with(&self, mut cmd: Command, args: &[&str]) -> Run {
        let out: Output = cmd.args(args).output().expect("mix-train starts");
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
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

impl Run {
    /// Panics with both streams unless the run succeeded.
    pub fn assert_ok(&self) -> &Run {
        assert!(
            self.ok,
            "mix-train failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the run failed with `needle` in its error output.
    pub fn assert_fails_with(&self, needle: &str) -> &Run {
        assert!(
            !self.ok,
            "mix-train should have failed\nstdout:\n{}",
            self.stdout
        );
        assert!(
            self.stderr.contains(needle),
            "expected `{needle}` in the error output, found:\n{}",
            self.stderr
        );
        self
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

/// A loopback HTTP server answering every GET with `body` (200, or 206 for a `Range` request),
/// counting the requests. It serves until the test process ends.
pub struct FileServer {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FileServer {
    pub fn start(name: &str, body: Vec<u8>) -> FileServer {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/{name}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut start = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(r) = lower.strip_prefix("range: bytes=") {
                        start = r.trim().trim_end_matches('-').parse().unwrap_or(0);
                    }
                }
                let start = start.min(body.len());
                let part = &body[start..];
                let head = if start > 0 {
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                        part.len(),
                        body.len() - 1,
                        body.len()
                    )
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        part.len()
                    )
                };
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(part);
            }
        });
        FileServer { url, requests }
    }

    pub fn count(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
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

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

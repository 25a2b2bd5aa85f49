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

//! Running one of our binaries as a user does, in a temporary folder with its own data cache.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A temporary folder holding a private data cache (`cache/`) and an empty fastai home, and the binary
/// that runs in it.
pub struct Sandbox {
    /// The folder; removed when the sandbox is dropped.
    pub dir: tempfile::TempDir,
    program: PathBuf,
}

/// What one run of the binary did.
pub struct Run {
    /// Whether it exited with status 0.
    pub ok: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    program: String,
}

impl Sandbox {
    /// A new sandbox for the binary `program` (a test's `env!("CARGO_BIN_EXE_<name>")`).
    pub fn new(program: impl AsRef<Path>) -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
            program: program.as_ref().to_path_buf(),
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The private data cache (`MIX_DATA_HOME`).
    pub fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// The binary in the sandbox folder with the sandbox's cache, no fastai cache, one download attempt
    /// and no proxy, so that nothing outside the sandbox is read or reached.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.current_dir(self.path())
            .env("MIX_DATA_HOME", self.cache())
            .env("FASTAI_HOME", self.path().join("no-fastai"))
            .env("MIX_FETCH_ATTEMPTS", "1");
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
            cmd.env_remove(var).env_remove(var.to_lowercase());
        }
        cmd
    }

    /// Runs `cmd` (usually from [`Sandbox::command`]) with `args`, waiting for it to end.
    pub fn run_with(&self, mut cmd: Command, args: &[&str]) -> Run {
        let out = cmd
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("starting {}: {e}", cmd.get_program().to_string_lossy()));
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            program: Path::new(cmd.get_program())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

impl Run {
    /// Panics with both streams unless the run succeeded.
    pub fn assert_ok(&self) -> &Run {
        assert!(
            self.ok,
            "{} failed\nstdout:\n{}\nstderr:\n{}",
            self.program, self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the run failed with `needle` in its error output.
    pub fn assert_fails_with(&self, needle: &str) -> &Run {
        assert!(
            !self.ok,
            "{} should have failed\nstdout:\n{}",
            self.program, self.stdout
        );
        assert!(
            self.stderr.contains(needle),
            "expected `{needle}` in the error output, found:\n{}",
            self.stderr
        );
        self
    }
}

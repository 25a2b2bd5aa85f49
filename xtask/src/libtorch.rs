//! Finding or installing libtorch 2.11.0, the one tch 0.24.0 is built against.
//!
//! Order: `LIBTORCH` if set; a python whose torch is 2.11.0 when `LIBTORCH_USE_PYTORCH` is set;
//! otherwise a virtual environment in the user's cache where pip installs the PyPI wheels.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::process;

/// The libtorch release tch 0.24.0 needs.
pub const TORCH_VERSION: &str = "2.11.0";
/// What the managed virtual environment holds: torch and torchvision for the oracles, numpy,
/// Pillow and safetensors for fixtures and peer benchmarks; and, where the wheel is the CUDA 13 build
/// (Linux x86-64), the CUDA headers it leaves out (`crt/`, CCCL's `nv/`), which mix-dist's NCCL backend
/// compiles against together with the wheel's own CUDA and NCCL headers.
const REQUIREMENTS: &[&str] = &[
    "torch==2.11.0",
    "torchvision==0.26.0",
    "numpy",
    "pillow",
    "safetensors",
    "nvidia-cuda-crt==13.0.*; platform_system == 'Linux' and platform_machine == 'x86_64'",
    "nvidia-cuda-cccl==13.0.*; platform_system == 'Linux' and platform_machine == 'x86_64'",
];
const STAMP: &str = "mix-setup.stamp";

/// A libtorch we can build and run against.
#[derive(Debug, Clone)]
pub struct Libtorch {
    /// The folder with `include/` and `lib/` (for a wheel, `site-packages/torch`).
    pub root: PathBuf,
    /// A python that imports this torch, when there is one (tests compare against torchvision).
    pub python: Option<PathBuf>,
}

impl Libtorch {
    /// The variables a child cargo process needs.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let lib = self.root.join("lib");
        let old = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
        let ld = if old.is_empty() {
            lib.display().to_string()
        } else if old.split(':').any(|p| Path::new(p) == lib) {
            old
        } else {
            format!("{}:{old}", lib.display())
        };
        let mut vars = vec![
            ("LIBTORCH".to_string(), self.root.display().to_string()),
            ("LD_LIBRARY_PATH".to_string(), ld),
        ];
        if let Some(py) = &self.python {
            vars.push(("MIX_TORCH_PYTHON".to_string(), py.display().to_string()));
        }
        vars
    }

    /// Shell lines for `eval "$(cargo xtask env)"`; the library path is prepended to the
    /// caller's own `LD_LIBRARY_PATH` when the lines are evaluated, not to ours.
    pub fn export_lines(&self) -> String {
        let lib = self.root.join("lib").display().to_string();
        let mut text = format!(
            "export LIBTORCH={}\n",
            shell_quote(&self.root.display().to_string())
        );
        text.push_str(&format!(
            "export LD_LIBRARY_PATH={}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\n",
            shell_quote(&lib)
        ));
        if let Some(py) = &self.python {
            text.push_str(&format!(
                "export MIX_TORCH_PYTHON={}\n",
                shell_quote(&py.display().to_string())
            ));
        }
        text
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Where the managed virtual environment lives.
pub fn venv_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MIX_LIBTORCH_HOME") {
        return Ok(PathBuf::from(dir));
    }
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".cache"),
            None => bail!("neither XDG_CACHE_HOME nor HOME is set: set MIX_LIBTORCH_HOME to a folder for libtorch"),
        },
    };
    Ok(cache.join("mix").join(format!("libtorch-{TORCH_VERSION}")))
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// Finds libtorch without installing anything; the error says to run `cargo xtask setup`.
pub fn find_installed() -> Result<Libtorch> {
    if let Some(found) = from_env()? {
        return Ok(found);
    }
    let venv = venv_dir()?;
    let stamp = venv.join(STAMP);
    let text = std::fs::read_to_string(&stamp).unwrap_or_default();
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        // The stamp names the requirements and where torch went, so that a second run needs no
        // python start-up: it only checks that the libraries are still there.
        (Some(reqs), Some(root))
            if reqs == REQUIREMENTS.join(" ") && check_root(Path::new(root)).is_ok() =>
        {
            Ok(Libtorch {
                root: PathBuf::from(root),
                python: Some(venv_python(&venv)),
            })
        }
        _ => bail!(
            "libtorch {TORCH_VERSION} is not set up in {}: run `cargo xtask setup` \
             (or export LIBTORCH=/path/to/libtorch-{TORCH_VERSION})",
            venv.display()
        ),
    }
}

/// `LIBTORCH` or `LIBTORCH_USE_PYTORCH`, when the user chose one.
fn from_env() -> Result<Option<Libtorch>> {
    if let Some(root) = std::env::var_os("LIBTORCH").filter(|v| !v.is_empty()) {
        let root = PathBuf::from(root);
        check_root(&root).with_context(|| format!("LIBTORCH={}", root.display()))?;
        let python = std::env::var_os("MIX_TORCH_PYTHON").map(PathBuf::from);
        return Ok(Some(Libtorch { root, python }));
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = std::env::var_os("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|| "python3".into());
        return torch_of_python(Path::new(&python))
            .context("LIBTORCH_USE_PYTORCH is set")
            .map(Some);
    }
    Ok(None)
}

/// A libtorch folder must hold the libraries tch links and, when it says, version 2.11.0.
fn check_root(root: &Path) -> Result<()> {
    let lib = root.join("lib");
    if !lib.join("libtorch_cpu.so").exists() && !lib.join("libtorch_cpu.dylib").exists() {
        bail!(
            "{} has no libtorch_cpu library: point LIBTORCH at an unpacked libtorch {TORCH_VERSION} \
             (the folder holding include/ and lib/), or unset it and run `cargo xtask setup`",
            lib.display()
        );
    }
    // A C++ libtorch download records its version in build-version; a wheel in version.py.
    let version = std::fs::read_to_string(root.join("build-version"))
        .ok()
        .or_else(|| {
            let text = std::fs::read_to_string(root.join("version.py")).ok()?;
            let line = text.lines().find(|l| l.starts_with("__version__"))?;
            Some(line.split(['\'', '"']).nth(1)?.to_string())
        });
    if let Some(version) = version {
        if !version.trim().starts_with(TORCH_VERSION) {
            bail!(
                "found libtorch {} in {}, but tch 0.24.0 needs {TORCH_VERSION}: point LIBTORCH at \
                 libtorch {TORCH_VERSION}, or unset it and run `cargo xtask setup`",
                version.trim(),
                root.display()
            );
        }
    }
    Ok(())
}

/// Asks `python` where its torch is and checks its version.
fn torch_of_python(python: &Path) -> Result<Libtorch> {
    let out = process::output(Command::new(python).args([
        "-c",
        "import os, torch; print(torch.__version__); print(os.path.dirname(torch.__file__))",
    ]))
    .with_context(|| {
        format!(
            "{} cannot import torch: install torch=={TORCH_VERSION} for it, or run `cargo xtask setup` \
             without LIBTORCH_USE_PYTORCH",
            python.display()
        )
    })?;
    let mut lines = out.lines();
    let version = lines.next().unwrap_or_default().trim().to_string();
    let root = PathBuf::from(lines.next().unwrap_or_default().trim());
    if !version.starts_with(TORCH_VERSION) {
        bail!(
            "{} has torch {version}, but tch 0.24.0 needs {TORCH_VERSION}: \
             `pip install torch=={TORCH_VERSION}` there, or run `cargo xtask setup` without LIBTORCH_USE_PYTORCH",
            python.display()
        );
    }
    check_root(&root)?;
    Ok(Libtorch {
        root,
        python: Some(python.to_path_buf()),
    })
}

/// Finds libtorch, installing it into the managed virtual environment when needed. Idempotent:
/// once the stamp matches, it only asks the venv's python where torch is.
pub fn setup() -> Result<Libtorch> {
    if let Some(found) = from_env()? {
        eprintln!(
            "using libtorch at {} (from the environment)",
            found.root.display()
        );
        return Ok(found);
    }
    let venv = venv_dir()?;
    if let Ok(found) = find_installed() {
        return Ok(found);
    }
    install(&venv)?;
    find_installed()
}

fn install(venv: &Path) -> Result<()> {
    let python = venv_python(venv);
    if !python.exists() {
        let system = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        eprintln!(
            "creating a virtual environment for libtorch in {}",
            venv.display()
        );
        if let Some(parent) = venv.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let made = Command::new(&system)
            .args(["-m", "venv"])
            .arg(venv)
            .status();
        match made {
            Err(e) => bail!(
                "cannot run `{}` ({e}): install Python 3 with venv and pip (Debian: apt-get install \
                 python3 python3-venv python3-pip), or export LIBTORCH=/path/to/libtorch-{TORCH_VERSION}",
                system.to_string_lossy()
            ),
            Ok(s) if !s.success() => {
                // A half-made venv would be taken for a working one next time.
                let _ = std::fs::remove_dir_all(venv);
                bail!(
                    "`{} -m venv {}` failed: install Python's venv module (Debian: apt-get install \
                     python3-venv), or export LIBTORCH=/path/to/libtorch-{TORCH_VERSION}",
                    system.to_string_lossy(),
                    venv.display()
                )
            }
            Ok(_) => {}
        }
    }
    eprintln!(
        "installing {} into {} (about 3 GB on first run; pip shows its progress)",
        REQUIREMENTS.join(" "),
        venv.display()
    );
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "--disable-pip-version-check"]);
    if std::env::var_os("CI").is_some() {
        // Progress bars in a log are noise; pip still prints one line per package.
        pip.args(["--progress-bar", "off"]);
    }
    pip.args(REQUIREMENTS);
    let status = pip
        .status()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !status.success() {
        bail!(
            "pip could not install {} into {} (is PyPI reachable?): allow access to pypi.org, or export \
             LIBTORCH=/path/to/libtorch-{TORCH_VERSION} (the folder holding include/ and lib/), or set \
             LIBTORCH_USE_PYTORCH=1 with a python3 that has torch=={TORCH_VERSION}",
            REQUIREMENTS.join(" "),
            venv.display()
        );
    }
    // The stamp is written last and atomically: an interrupted install is simply resumed by pip.
    let torch = torch_of_python(&python)?;
    let stamp = venv.join(STAMP);
    let tmp = venv.join(format!("{STAMP}.tmp"));
    let text = format!("{}\n{}\n", REQUIREMENTS.join(" "), torch.root.display());
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &stamp).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_lines_quote_values_and_name_every_variable() {
        let torch = Libtorch {
            root: PathBuf::from("/opt/it's/torch"),
            python: Some(PathBuf::from("/v/bin/python")),
        };
        let text = torch.export_lines();
        assert!(
            text.contains(r"export LIBTORCH='/opt/it'\''s/torch'"),
            "{text}"
        );
        assert!(
            text.contains("export LD_LIBRARY_PATH='/opt/it'\\''s/torch/lib'${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"),
            "{text}"
        );
        assert!(
            text.contains("export MIX_TORCH_PYTHON='/v/bin/python'"),
            "{text}"
        );
    }

    #[test]
    fn a_folder_without_libtorch_is_refused_with_advice() {
        let dir = std::env::temp_dir().join(format!("mix-xtask-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        let err = check_root(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("no libtorch_cpu library"), "{err}");
        assert!(err.contains("cargo xtask setup"), "{err}");
    }

    #[test]
    fn a_wrong_version_is_refused() {
        let dir = std::env::temp_dir().join(format!("mix-xtask-ver-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(dir.join("lib/libtorch_cpu.so"), b"").unwrap();
        std::fs::write(dir.join("build-version"), "2.5.1+cpu\n").unwrap();
        let err = check_root(&dir).unwrap_err().to_string();
        std::fs::write(dir.join("build-version"), "2.11.0+cu130\n").unwrap();
        let ok = check_root(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("found libtorch 2.5.1+cpu"), "{err}");
        assert!(ok.is_ok());
    }
}

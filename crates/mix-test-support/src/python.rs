//! The Python with torch (and fastai) that the oracle tests run.

use std::path::PathBuf;

/// The Python with torch 2.11.0: `MIX_TORCH_PYTHON`, else the venv `cargo xtask setup` makes. Panics when
/// it is missing, saying what to do; `needs` completes "point MIX_TORCH_PYTHON at a Python with ...".
pub fn torch_python(needs: &str) -> PathBuf {
    let path = python_path();
    assert!(
        path.exists(),
        "the torch Python {} is missing: run `cargo xtask setup` (or point MIX_TORCH_PYTHON at a Python \
         with {needs})",
        path.display()
    );
    path
}

/// [`torch_python`] for tests that also need fastai 2.8.12, which `cargo xtask setup` does not install:
/// the message says how to add it.
pub fn fastai_python(needs: &str) -> PathBuf {
    let path = python_path();
    assert!(
        path.exists(),
        "the torch Python {} is missing: run `cargo xtask setup` and `{} -m pip install fastai==2.8.12` \
         (or point MIX_TORCH_PYTHON at a Python with {needs})",
        path.display(),
        path.display()
    );
    path
}

/// `MIX_TORCH_PYTHON`, else the Python in the venv `cargo xtask setup` makes under the user's cache.
fn python_path() -> PathBuf {
    std::env::var_os("MIX_TORCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
                });
            cache.join("mix/libtorch-2.11.0/bin/python")
        })
}

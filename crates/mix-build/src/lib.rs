//! Build-script helper for the crates that link libtorch: finds the lib folder torch-sys linked and gives
//! the package's binaries and tests an rpath to it.
//!
//! The rpath lets a binary run without `LD_LIBRARY_PATH`, also after `cargo install`. It has to be given
//! by each package that builds binaries: a build script's `cargo:rustc-link-arg` reaches only its own
//! package's targets, unlike `cargo:rustc-link-lib`, which reaches every dependent. So the logic lives
//! here once and each `build.rs` is a call to [`link_libtorch`]. (Keeping `libtorch_cuda.so` in the
//! binaries is mix-tch's job and needs no build script downstream; see mix-tch's `csrc/cuda_anchor.cpp`.)

use std::path::PathBuf;

/// The libtorch lib folder: `DEP_TCH_LIBTORCH_LIB`, which torch-sys (`links = "tch"`) gives the build
/// scripts of the packages that depend on it directly, else `$LIBTORCH/lib`. `None` when neither is set;
/// torch-sys then fails with its own message about finding libtorch.
pub fn libtorch_lib() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    std::env::var_os("DEP_TCH_LIBTORCH_LIB")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("LIBTORCH").map(|l| PathBuf::from(l).join("lib")))
}

/// Prints the build-script lines that give this package's binaries, tests, benches and examples an
/// rpath to the libtorch lib folder (on Linux), and that set `MIX_LIBTORCH_LIB` to that folder at compile
/// time for the link tests. Returns the folder, `None` as for [`libtorch_lib`].
pub fn link_libtorch() -> Option<PathBuf> {
    let lib = libtorch_lib()?;
    println!("cargo:rustc-env=MIX_LIBTORCH_LIB={}", lib.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
    Some(lib)
}

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

/// The include folders and compiler flags torch-sys compiles its own C++ with, for the build scripts
/// that compile a C++ shim against the same libtorch (mix-tch, mix-dist): they hand them to `cc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorchCxx {
    /// `<libtorch>/include` and `<libtorch>/include/torch/csrc/api/include`.
    pub includes: Vec<PathBuf>,
    /// The language standard and, off MSVC, the C++ ABI libtorch was built with.
    pub flags: Vec<String>,
}

/// [`TorchCxx`] for the libtorch whose lib folder is `lib`. The headers sit next to the lib folder
/// (`<libtorch>/include`) unless `LIBTORCH_INCLUDE` names their parent, as for torch-sys.
pub fn torch_cxx(lib: &std::path::Path) -> TorchCxx {
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let root = std::env::var_os("LIBTORCH_INCLUDE")
        .map(PathBuf::from)
        .or_else(|| lib.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_else(|| lib.to_path_buf());
    let include = root.join("include");
    let flags = if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("msvc") {
        vec!["/std:c++17".to_owned()]
    } else {
        // torch-sys's flags: the C++ ABI libtorch was built with (1 unless LIBTORCH_CXX11_ABI says 0).
        let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
        vec![
            "-std=c++17".to_owned(),
            format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"),
            "-DGLOG_USE_GLOG_EXPORT".to_owned(),
        ]
    };
    TorchCxx {
        includes: vec![include.clone(), include.join("torch/csrc/api/include")],
        flags,
    }
}

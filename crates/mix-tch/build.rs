//! Links libtorch so that binaries built from this crate find CUDA when the libtorch has it.
//!
//! rustc links with `--as-needed`, so `libtorch_cuda.so`, whose symbols nothing references directly (its
//! kernels register themselves when it loads), is dropped from the binary and libtorch reports no CUDA
//! (tch issues #980, #907, #177). As torch-sys's own comments suggest, we pass `--no-as-needed` before
//! `-ltorch_cuda -ltorch`, plus an rpath to the libtorch lib folder so the binary runs without
//! `LD_LIBRARY_PATH`. `rustc-link-arg` reaches this crate's tests, benches, examples and binaries only; a
//! binary in another crate that links mix-tch needs the same lines in its own build script.
//!
//! It also compiles `csrc/shim.cpp`, the few libtorch calls tch does not expose (see `src/ffi.rs`), with
//! the flags and include folders torch-sys compiles its own C++ with, against the same libtorch.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    // torch-sys (links = "tch") exports the lib folder it resolved; LIBTORCH is the fallback.
    let lib = std::env::var_os("DEP_TCH_LIBTORCH_LIB")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("LIBTORCH").map(|l| PathBuf::from(l).join("lib")));
    let Some(lib) = lib else {
        // torch-sys fails with its own message when it finds no libtorch; nothing to add here.
        return;
    };
    compile_shim(&lib);
    // Tests compare the linked libraries against this folder.
    println!("cargo:rustc-env=MIX_TCH_LIBTORCH_LIB={}", lib.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-L{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-ltorch_cuda");
    }
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}

/// Compiles `csrc/shim.cpp` into a static library that cargo links into this crate. The headers sit next to
/// the lib folder (`<libtorch>/include`) unless `LIBTORCH_INCLUDE` names their parent, as for torch-sys.
fn compile_shim(lib: &Path) {
    let root = std::env::var_os("LIBTORCH_INCLUDE")
        .map(PathBuf::from)
        .or_else(|| lib.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| lib.to_path_buf());
    let include = root.join("include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .file("csrc/shim.cpp");
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("msvc") {
        build.flag("/std:c++17");
    } else {
        // torch-sys's flags: the C++ ABI libtorch was built with (1 unless LIBTORCH_CXX11_ABI says 0).
        let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
        build
            .flag("-std=c++17")
            .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
            .flag("-DGLOG_USE_GLOG_EXPORT");
    }
    build.compile("mix_tch_shim");
}

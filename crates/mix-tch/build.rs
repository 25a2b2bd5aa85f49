//! Compiles mix-tch's C++ (the libtorch calls tch does not expose, and the CUDA anchor) and links libtorch.
//!
//! `csrc/shim.cpp` holds the few libtorch calls tch does not expose (see `src/ffi.rs`); it is compiled with
//! the flags and include folders torch-sys compiles its own C++ with, against the same libtorch.
//!
//! `csrc/cuda_anchor.cpp`, compiled only when the libtorch has `libtorch_cuda.so`, keeps that library in
//! every binary that depends on mix-tch, so that libtorch sees CUDA on a GPU machine (tch issues #980,
//! #907, #177; the file says how). It is linked whole (`+whole-archive`), and `cargo:rustc-link-lib`
//! reaches dependents, so binaries in other packages need no build script for CUDA.
//!
//! The rpath to the libtorch lib folder, which `cargo:rustc-link-arg` can give only to this package's own
//! tests and benches, comes from mix-build, which mix-train's build script calls too.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/cuda_anchor.cpp");
    let Some(lib) = mix_build::link_libtorch() else {
        // torch-sys fails with its own message when it finds no libtorch; nothing to add here.
        return;
    };
    cxx_build(&lib)
        .file("csrc/shim.cpp")
        .compile("mix_tch_shim");
    let gnu_like = std::env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("msvc");
    if gnu_like && lib.join("libtorch_cuda.so").exists() {
        // cc's own link lines would link the archive normally, and the linker takes nothing from an
        // archive that nobody references: give them here, whole-archive, followed by the library the
        // anchor refers to.
        let mut anchor = cxx_build(&lib);
        anchor.file("csrc/cuda_anchor.cpp").cargo_metadata(false);
        anchor.compile("mix_tch_cuda_anchor");
        let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
        println!("cargo:rustc-link-search=native={out}");
        println!("cargo:rustc-link-lib=static:+whole-archive=mix_tch_cuda_anchor");
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
    }
}

/// A C++ build with the flags and include folders torch-sys compiles its own C++ with. The headers sit
/// next to the lib folder (`<libtorch>/include`) unless `LIBTORCH_INCLUDE` names their parent, as for
/// torch-sys.
fn cxx_build(lib: &Path) -> cc::Build {
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
        .include(include.join("torch/csrc/api/include"));
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
    build
}

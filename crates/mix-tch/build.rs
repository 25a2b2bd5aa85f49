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

use std::path::Path;

fn main() {
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

/// A C++ build with the flags and include folders torch-sys compiles its own C++ with (mix-build's
/// [`mix_build::torch_cxx`]).
fn cxx_build(lib: &Path) -> cc::Build {
    let torch = mix_build::torch_cxx(lib);
    let mut build = cc::Build::new();
    build.cpp(true).pic(true).warnings(false);
    for dir in &torch.includes {
        build.include(dir);
    }
    for flag in &torch.flags {
        build.flag(flag);
    }
    build
}

//! Links libtorch so that binaries built from this crate find CUDA when the libtorch has it.
//!
//! rustc links with `--as-needed`, so `libtorch_cuda.so`, whose symbols nothing references directly (its
//! kernels register themselves when it loads), is dropped from the binary and libtorch reports no CUDA
//! (tch issues #980, #907, #177). As torch-sys's own comments suggest, we pass `--no-as-needed` before
//! `-ltorch_cuda -ltorch`, plus an rpath to the libtorch lib folder so the binary runs without
//! `LD_LIBRARY_PATH`. `rustc-link-arg` reaches this crate's tests, benches, examples and binaries only; a
//! binary in another crate that links mix-tch needs the same lines in its own build script.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    // torch-sys (links = "tch") exports the lib folder it resolved; LIBTORCH is the fallback.
    let lib = std::env::var_os("DEP_TCH_LIBTORCH_LIB")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("LIBTORCH").map(|l| PathBuf::from(l).join("lib")));
    let Some(lib) = lib else {
        // torch-sys fails with its own message when it finds no libtorch; nothing to add here.
        return;
    };
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

//! Links libtorch so that the mix-train binary finds CUDA when the libtorch has it.
//!
//! The same lines as mix-tch's build script, which cannot do it for us: rustc links with
//! `--as-needed` and drops `libtorch_cuda.so` (nothing references its symbols; its kernels register
//! when it loads), and a build script's `rustc-link-arg` reaches only its own crate's binaries and
//! tests (tch issues #980, #907, #177). Also an rpath to the libtorch lib folder, so the binary runs
//! without `LD_LIBRARY_PATH`.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    // torch-sys (links = "tch") exports the lib folder it resolved to its direct dependents;
    // LIBTORCH is the fallback.
    let lib = std::env::var_os("DEP_TCH_LIBTORCH_LIB")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("LIBTORCH").map(|l| PathBuf::from(l).join("lib")));
    let Some(lib) = lib else {
        // torch-sys fails with its own message when it finds no libtorch.
        return;
    };
    // The link test compares the binary's libraries against this folder.
    println!("cargo:rustc-env=MIX_TRAIN_LIBTORCH_LIB={}", lib.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg-bins=-L{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg-bins=-ltorch_cuda");
    }
    println!("cargo:rustc-link-arg-bins=-ltorch");
    println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{}", lib.display());
}

//! Compiles mix-dist's C++ shim (libtorch's c10d: TCPStore, ProcessGroupGloo, ProcessGroupNCCL, DDP's
//! Reducer) against the libtorch torch-sys linked, and gives this package's tests an rpath to it.
//!
//! The PyPI torch wheel exports Gloo's process group from `libtorch_cpu.so` but ships no Gloo headers,
//! which `ProcessGroupGloo.hpp` includes: the few it needs are vendored in `third_party/gloo` (see its
//! README). The NCCL backend (`csrc/nccl.cpp`) is compiled in when the libtorch has CUDA and the CUDA
//! runtime, CCCL and NCCL headers are found: the wheel's `nvidia/nccl` and `nvidia/cu13` packages, plus
//! `nvidia-cuda-crt` and `nvidia-cuda-cccl` (which `cargo xtask setup` installs), or `CUDA_HOME`.
//! Without them it is compiled to say so when NCCL is asked for.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-changed=third_party");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let Some(lib) = mix_build::link_libtorch() else {
        // torch-sys fails with its own message when it finds no libtorch; nothing to add here.
        return;
    };
    let torch = mix_build::torch_cxx(&lib);
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .define("USE_C10D_GLOO", None)
        .include("third_party/gloo")
        .file("csrc/c10d.cpp")
        .file("csrc/nccl.cpp");
    for dir in &torch.includes {
        build.include(dir);
    }
    for flag in &torch.flags {
        build.flag(flag);
    }
    match nccl_includes(&lib) {
        Some(dirs) => {
            build
                .define("MIX_DIST_NCCL", None)
                .define("USE_C10D_NCCL", None)
                .define("USE_CUDA", None);
            for dir in dirs {
                build.include(dir);
            }
            println!("cargo:rustc-cfg=mix_dist_nccl");
        }
        None => {
            // Not a warning: a CPU-only libtorch is a supported setup, and the error at run time says
            // what to install when NCCL is asked for.
        }
    }
    println!("cargo:rustc-check-cfg=cfg(mix_dist_nccl)");
    build.compile("mix_dist_shim");
}

/// The include folders the NCCL backend needs, when this libtorch has CUDA and every header is found.
fn nccl_includes(lib: &Path) -> Option<Vec<PathBuf>> {
    if !lib.join("libtorch_cuda.so").exists() {
        return None;
    }
    // torch/lib -> torch -> site-packages, where the wheel's nvidia packages live.
    let site = lib.parent()?.parent()?;
    let mut roots = vec![
        site.join("nvidia/cu13/include"),
        site.join("nvidia/cu13/include/cccl"),
        site.join("nvidia/nccl/include"),
    ];
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        roots.push(PathBuf::from(home).join("include"));
    }
    let needed = [
        "nccl.h",
        "cuda_runtime_api.h",
        "crt/host_config.h",
        "nv/target",
    ];
    let found: Vec<PathBuf> = roots
        .into_iter()
        .filter(|root| needed.iter().any(|h| root.join(h).exists()))
        .collect();
    needed
        .iter()
        .all(|h| found.iter().any(|root| root.join(h).exists()))
        .then_some(found)
}

//! The link check: a binary finds libtorch, and libtorch_cuda when the libtorch has it, by itself.

use std::path::Path;
use std::process::Command;

/// Panics unless `exe` links `libtorch_cpu.so` and, when `lib` (the libtorch lib folder it was built
/// against) has `libtorch_cuda.so`, that too, and finds both without `LD_LIBRARY_PATH`, through its rpath.
/// Without libtorch_cuda a binary reports no CUDA on a GPU machine (tch issues #980, #907, #177); without
/// the rpath it does not start outside `cargo run`.
pub fn assert_links_libtorch(exe: &Path, lib: &Path) {
    let out = Command::new("ldd")
        .arg(exe)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("running ldd (install libc-bin)");
    assert!(
        out.status.success(),
        "ldd {} failed: {}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .map(str::to_owned)
    };
    let mut wanted = vec!["libtorch_cpu.so"];
    if lib.join("libtorch_cuda.so").exists() {
        wanted.push("libtorch_cuda.so");
    }
    for name in wanted {
        let found = line(name).unwrap_or_else(|| {
            panic!(
                "{} has {name} but {} does not link it:\n{text}",
                lib.display(),
                exe.display()
            )
        });
        assert!(
            !found.contains("not found"),
            "{} does not find {name} without LD_LIBRARY_PATH (its rpath should name {}):\n{text}",
            exe.display(),
            lib.display()
        );
    }
}

//! The mix-train binary links libtorch_cuda whenever the libtorch it was built against has it, so
//! that `--device cuda` works on a GPU machine (tch issues #980, #907, #177).

use std::path::Path;
use std::process::Command;

#[test]
fn the_binary_links_libtorch_cuda_when_libtorch_has_it() {
    // Set by build.rs from the libtorch torch-sys linked.
    let lib = Path::new(env!("MIX_TRAIN_LIBTORCH_LIB"));
    let out = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_mix-train"))
        .output()
        .expect("running ldd (install libc-bin)");
    assert!(
        out.status.success(),
        "ldd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .map(str::to_owned)
    };
    let cpu =
        line("libtorch_cpu.so").unwrap_or_else(|| panic!("libtorch_cpu.so not linked:\n{text}"));
    assert!(
        !cpu.contains("not found"),
        "libtorch_cpu.so not found at run time:\n{text}"
    );
    if lib.join("libtorch_cuda.so").exists() {
        let cuda = line("libtorch_cuda.so").unwrap_or_else(|| {
            panic!(
                "{} has libtorch_cuda.so but mix-train does not link it:\n{text}",
                lib.display()
            )
        });
        assert!(
            !cuda.contains("not found"),
            "libtorch_cuda.so not found at run time:\n{text}"
        );
    }
}

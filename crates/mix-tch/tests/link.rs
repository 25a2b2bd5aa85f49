//! The test binary itself links libtorch_cuda whenever the libtorch it was built against has it, so a
//! binary built here finds CUDA on a GPU machine (tch issues #980, #907, #177).

use std::path::Path;
use std::process::Command;

#[test]
fn test_binary_links_libtorch_cuda_when_libtorch_has_it() {
    // The folder build.rs linked against, recorded at build time.
    let lib = Path::new(env!("MIX_TCH_LIBTORCH_LIB"));
    let exe = std::env::current_exe().expect("the path of this test binary");
    let out = Command::new("ldd")
        .arg(&exe)
        .output()
        .expect("running ldd (install binutils/libc-bin)");
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
                "{} has libtorch_cuda.so but the binary does not link it:\n{text}",
                lib.display()
            )
        });
        assert!(
            !cuda.contains("not found"),
            "libtorch_cuda.so not found at run time:\n{text}"
        );
    }
}

#[test]
fn gpu_machine_sees_cuda() {
    // The failure this guards against: a binary that dropped libtorch_cuda reports no CUDA on a GPU machine.
    let has_gpu = Path::new("/dev/nvidiactl").exists() && Path::new("/dev/nvidia0").exists();
    assert_eq!(
        mix_tch::tch::Cuda::is_available(),
        has_gpu,
        "NVIDIA device files present: {has_gpu}, but libtorch reports CUDA available: {}",
        mix_tch::tch::Cuda::is_available()
    );
}

//! A binary that depends on mix-tch links libtorch_cuda whenever the libtorch it was built against has it,
//! with no build script of its own, so that it finds CUDA on a GPU machine (tch issues #980, #907, #177).

use std::path::Path;

#[test]
fn test_binary_links_libtorch_cuda_when_libtorch_has_it() {
    // This test binary uses nothing of mix-tch but its re-export of tch: the link must not depend on
    // which of mix-tch's functions a binary calls.
    let exe = std::env::current_exe().expect("the path of this test binary");
    // The folder mix-tch's build script linked against, recorded at build time.
    mix_test_support::assert_links_libtorch(&exe, Path::new(env!("MIX_LIBTORCH_LIB")));
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

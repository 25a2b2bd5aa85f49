//! The mix-train binary links libtorch_cuda whenever the libtorch it was built against has it, so that
//! `--device cuda` works on a GPU machine (tch issues #980, #907, #177), and finds libtorch through its
//! rpath, so that it starts without `LD_LIBRARY_PATH` (after `cargo install` too).

use std::path::Path;

#[test]
fn the_binary_links_libtorch_cuda_and_finds_libtorch_alone() {
    // Set by build.rs (mix-build) from the libtorch torch-sys linked.
    mix_test_support::assert_links_libtorch(
        Path::new(env!("CARGO_BIN_EXE_mix-train")),
        Path::new(env!("MIX_LIBTORCH_LIB")),
    );
}

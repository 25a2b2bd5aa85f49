//! Gives the mix-train binary an rpath to the libtorch lib folder, so that it runs without
//! `LD_LIBRARY_PATH`, also after `cargo install` (see mix-build; libtorch_cuda comes with mix-tch).

fn main() {
    mix_build::link_libtorch();
}

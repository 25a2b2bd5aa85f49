// Keeps libtorch_cuda.so among the libraries of every binary that links mix-tch, when libtorch has it.
//
// rustc links with --as-needed, and nothing calls into libtorch_cuda.so directly (its kernels and hooks
// register themselves when it loads), so the linker drops it and libtorch reports no CUDA (tch issues
// #980, #907, #177). This file references one of its symbols from a load-time constructor: the
// constructor's section is always kept, so the reference is live in every binary, and build.rs links
// this object whole into mix-tch, so every binary that depends on mix-tch carries it without a build
// script of its own (the approach of burn-tch's cuda_hack/dummy_cuda_dependency.cpp). build.rs compiles
// it only when the libtorch lib folder has libtorch_cuda.so. The constructor only takes an address: it
// does not initialise CUDA.

namespace at {
namespace cuda {
int warp_size();
} // namespace cuda
} // namespace at

namespace {

// Volatile, so that the compiler keeps the store and with it the reference.
void *volatile cuda_anchor = nullptr;

__attribute__((constructor)) void keep_libtorch_cuda() {
  cuda_anchor = reinterpret_cast<void *>(&at::cuda::warp_size);
}

} // namespace

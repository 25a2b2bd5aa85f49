// mix-dist's NCCL backend: c10d's ProcessGroupNCCL for CUDA tensors. build.rs compiles this file with
// MIX_DIST_NCCL defined when the libtorch it links has CUDA (libtorch_cuda.so) and the CUDA runtime and
// NCCL headers are found (the PyPI wheel ships them in nvidia/cu13/include and nvidia/nccl/include);
// otherwise the function says why this build has no NCCL.

#include "shim.h"

#ifdef MIX_DIST_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>

extern "C" char *mix_dist_nccl_backend(MixStore *s, int rank, int world, int64_t timeout_ms,
                                       c10d::Backend **out) {
  return mix_dist::protect([&] {
#ifdef MIX_DIST_NCCL
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = std::chrono::milliseconds(timeout_ms);
    auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(s->store, rank, world, opts);
    *out = static_cast<c10d::Backend *>(nccl.release());
#else
    (void)s;
    (void)rank;
    (void)world;
    (void)timeout_ms;
    *out = nullptr;
    TORCH_CHECK(false, "this build of mix-dist has no NCCL backend (it was compiled against a libtorch "
                       "without CUDA or without the NCCL headers); rebuild against the CUDA build of "
                       "libtorch 2.11.0, or train on the CPU with the Gloo backend");
#endif
  });
}

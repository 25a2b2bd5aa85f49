// The pieces mix-dist's two C++ files share: the tensor handle, exception-to-message conversion, and the
// store handle the NCCL backend needs.

#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

// The same type torch-sys's torch_api.h calls `tensor`: a tch `Tensor` owns one heap `at::Tensor`.
typedef at::Tensor *tensor;

namespace mix_dist {

inline char *error_copy(const char *message) {
  // strdup's memory is released with free() in mix_dist_free_error.
  char *copy = strdup(message);
  return copy != nullptr ? copy : strdup("out of memory while reporting a c10d error");
}

// Runs `body`, turning any exception into an owned message for Rust.
template <typename F> char *protect(F body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error &e) {
    return error_copy(e.what_without_backtrace());
  } catch (const std::exception &e) {
    return error_copy(e.what());
  } catch (...) {
    return error_copy("unknown C++ exception in mix-dist's shim");
  }
}

inline std::vector<at::Tensor> gather(const tensor *ptrs, size_t n, const char *what) {
  TORCH_CHECK(n == 0 || ptrs != nullptr, what, ": a null array of ", n, " tensors");
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    TORCH_CHECK(ptrs[i] != nullptr && ptrs[i]->defined(), what, ": expected a defined tensor at ", i,
                ", found an undefined one");
    out.push_back(*ptrs[i]);
  }
  return out;
}

} // namespace mix_dist

// A store handle and a group handle as Rust holds them.
struct MixStore {
  c10::intrusive_ptr<c10d::Store> store;
};

// Defined in nccl.cpp: a ProcessGroupNCCL (returned as a new reference to a c10d::Backend) or an error
// saying why there is none (a libtorch without CUDA, or no NCCL headers when mix-dist was built).
extern "C" char *mix_dist_nccl_backend(MixStore *s, int rank, int world, int64_t timeout_ms,
                                       c10d::Backend **out);

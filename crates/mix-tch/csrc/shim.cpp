// mix-tch's C++ shim: libtorch operations that tch 0.24 does not expose (the fused and multi-tensor Adam
// step, the CUDA autocast dtype, the bf16 capability of the CUDA device).
//
// Every exported function catches every C++ exception and returns it as a malloc'd message (nullptr on
// success) that the caller frees with mix_shim_free_error, so that no exception ever unwinds into Rust.
// Per-operator headers keep the compile time small compared with <ATen/ATen.h> or <torch/torch.h>.

#include <ATen/core/Tensor.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_foreach_addcdiv.h>
#include <ATen/ops/_foreach_div.h>
#include <ATen/ops/_foreach_lerp.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_sqrt.h>
#include <ATen/ops/_fused_adamw.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

// The same type torch-sys's torch_api.h calls `tensor`: a tch `Tensor` owns one heap `at::Tensor`.
typedef at::Tensor *tensor;

namespace {

char *error_copy(const char *message) {
  // strdup's memory is released with free() in mix_shim_free_error.
  char *copy = strdup(message);
  return copy != nullptr ? copy : strdup("out of memory while reporting a libtorch error");
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
    return error_copy("unknown C++ exception in mix-tch's shim");
  }
}

std::vector<at::Tensor> gather(const tensor *ptrs, size_t n, const char *what) {
  TORCH_CHECK(n == 0 || ptrs != nullptr, "adam step: ", what, " is a null array of ", n, " tensors");
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    TORCH_CHECK(ptrs[i] != nullptr && ptrs[i]->defined(), "adam step: expected a defined tensor as ",
                what, "[", i, "], found an undefined one");
    out.push_back(*ptrs[i]);
  }
  return out;
}

// The fused kernels walk each tensor's memory linearly, so they are only correct when a parameter, its
// gradient and both moments are dense with one and the same layout: the same strides in every dimension
// longer than 1 (a dimension of size 1 never moves the walk, so its stride is free: a 1x1 convolution's
// channels_last weight and a contiguous gradient of it lie the same way in memory).
bool same_dense_layout(const at::Tensor &a, const at::Tensor &b) {
  if (!a.is_non_overlapping_and_dense() || !b.is_non_overlapping_and_dense() || a.sizes() != b.sizes()) {
    return false;
  }
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (a.size(d) > 1 && a.stride(d) != b.stride(d)) {
      return false;
    }
  }
  return true;
}

} // namespace

extern "C" {

void mix_shim_free_error(char *message) { free(message); }

// One Adam step over `n` parameters that share the learning rate and weight decay, fastai's formula:
// p *= 1 - lr*wd; m = lerp(m, g, 1-beta1); v = lerp(v, g^2, 1-beta2);
// p -= lr/(1-beta1^t) * m / (sqrt(v/(1-beta2^t)) + eps), with t the step count after this step.
// `state_steps` are float scalar tensors on the parameters' device, incremented here; `step_counts` are the
// same counts after the increment, on the host, for the multi-tensor path (no device read-back).
// `*fused` tells whether libtorch's fused AdamW kernel ran (otherwise the _foreach_ ops did).
char *mix_shim_adam_step(const tensor *params, size_t n_params, const tensor *grads, size_t n_grads,
                         const tensor *exp_avgs, size_t n_exp_avgs, const tensor *exp_avg_sqs,
                         size_t n_exp_avg_sqs, const tensor *state_steps, size_t n_state_steps,
                         const int64_t *step_counts, size_t n_step_counts, double lr, double beta1,
                         double beta2, double weight_decay, double eps, int *fused) {
  return protect([&] {
    TORCH_CHECK(fused != nullptr, "adam step: expected a place for the fused flag, found null");
    *fused = 0;
    TORCH_CHECK(n_grads == n_params && n_exp_avgs == n_params && n_exp_avg_sqs == n_params &&
                    n_state_steps == n_params && n_step_counts == n_params,
                "adam step: expected one gradient, two moments and one step per parameter (", n_params,
                " parameters), found ", n_grads, " gradients, ", n_exp_avgs, " first moments, ",
                n_exp_avg_sqs, " second moments, ", n_state_steps, " step tensors and ", n_step_counts,
                " step counts");
    if (n_params == 0) {
      return;
    }
    TORCH_CHECK(step_counts != nullptr, "adam step: expected step counts, found null");
    auto p = gather(params, n_params, "params");
    auto g = gather(grads, n_grads, "grads");
    auto m = gather(exp_avgs, n_exp_avgs, "exp_avgs");
    auto v = gather(exp_avg_sqs, n_exp_avg_sqs, "exp_avg_sqs");
    auto s = gather(state_steps, n_state_steps, "state_steps");
    const auto device = p[0].device();
    bool dense = true;
    for (size_t i = 0; i < n_params; ++i) {
      TORCH_CHECK(g[i].sizes() == p[i].sizes() && m[i].sizes() == p[i].sizes() &&
                      v[i].sizes() == p[i].sizes(),
                  "adam step: expected the gradient and moments of parameter ", i, " to have its shape ",
                  p[i].sizes(), ", found ", g[i].sizes(), ", ", m[i].sizes(), " and ", v[i].sizes());
      TORCH_CHECK(g[i].scalar_type() == p[i].scalar_type() && m[i].scalar_type() == p[i].scalar_type() &&
                      v[i].scalar_type() == p[i].scalar_type(),
                  "adam step: expected the gradient and moments of parameter ", i, " to have its dtype ",
                  p[i].scalar_type(), ", found ", g[i].scalar_type(), ", ", m[i].scalar_type(), " and ",
                  v[i].scalar_type());
      TORCH_CHECK(p[i].device() == device && g[i].device() == device && m[i].device() == device &&
                      v[i].device() == device && s[i].device() == device,
                  "adam step: expected every tensor of parameter ", i, " on ", device,
                  "; put one bucket's tensors on one device");
      TORCH_CHECK(s[i].numel() == 1 && s[i].scalar_type() == at::kFloat,
                  "adam step: expected step tensor ", i, " to be one float32 value, found ", s[i].numel(),
                  " values of ", s[i].scalar_type());
      TORCH_CHECK(step_counts[i] >= 1, "adam step: expected step counts from 1 on, found ",
                  step_counts[i]);
      dense = dense && same_dense_layout(p[i], g[i]) && same_dense_layout(p[i], m[i]) &&
              same_dense_layout(p[i], v[i]);
    }
    at::_foreach_add_(s, at::Scalar(1.0));
    const bool fused_device = device.is_cpu() || device.is_cuda();
    const bool floating = at::isFloatingType(p[0].scalar_type());
    if (dense && fused_device && floating) {
      // torch's AdamW: denom = sqrt(v)/sqrt(1-beta2^t) + eps, the same number as fastai's
      // sqrt(v/(1-beta2^t)) + eps; its decoupled decay p *= 1 - lr*wd is fastai's true_wd.
      at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                        /*maximize=*/false);
      *fused = 1;
      return;
    }
    // The multi-tensor path repeats the reference loop's operations one for one.
    if (weight_decay != 0.0) {
      at::_foreach_mul_(p, at::Scalar(1.0 - lr * weight_decay));
    }
    at::_foreach_lerp_(m, g, at::Scalar(1.0 - beta1));
    auto g2 = at::_foreach_mul(g, g);
    at::_foreach_lerp_(v, g2, at::Scalar(1.0 - beta2));
    std::vector<at::Scalar> debias2;
    std::vector<at::Scalar> step_size;
    debias2.reserve(n_params);
    step_size.reserve(n_params);
    for (size_t i = 0; i < n_params; ++i) {
      const double t = static_cast<double>(step_counts[i]);
      debias2.emplace_back(1.0 - std::pow(beta2, t));
      step_size.emplace_back(-lr / (1.0 - std::pow(beta1, t)));
    }
    auto denom = at::_foreach_div(v, debias2);
    at::_foreach_sqrt_(denom);
    at::_foreach_add_(denom, at::Scalar(eps));
    auto scaled = at::_foreach_mul(m, step_size);
    at::_foreach_addcdiv_(p, scaled, denom, at::Scalar(1.0));
  });
}

// Sets the dtype CUDA autocast casts to: 0 for bfloat16, 1 for float16.
char *mix_shim_set_autocast_dtype_cuda(int dtype) {
  return protect([&] {
    TORCH_CHECK(dtype == 0 || dtype == 1, "autocast dtype: expected 0 (bfloat16) or 1 (float16), found ",
                dtype);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype == 0 ? at::kBFloat16 : at::kHalf);
  });
}

// Reads back the dtype CUDA autocast casts to into `*dtype`: 0 for bfloat16, 1 for float16, 2 otherwise.
char *mix_shim_autocast_dtype_cuda(int *dtype) {
  return protect([&] {
    TORCH_CHECK(dtype != nullptr, "autocast dtype: expected a place for the answer, found null");
    const auto kind = at::autocast::get_autocast_dtype(at::kCUDA);
    *dtype = kind == at::kBFloat16 ? 0 : (kind == at::kHalf ? 1 : 2);
  });
}

// Whether the current CUDA device computes in bfloat16 (cuDNN 8 bf16 convolutions, compute capability 8.0
// or newer); false when libtorch has no CUDA or sees no device.
char *mix_shim_cuda_supports_bf16(int *supported) {
  return protect([&] {
    TORCH_CHECK(supported != nullptr, "bf16 query: expected a place for the answer, found null");
    *supported = 0;
    const auto &hooks = at::detail::getCUDAHooks();
    if (hooks.hasCUDA() && hooks.getNumGPUs() > 0) {
      *supported = hooks.supportsBFloat16ConvolutionWithCuDNNv8() ? 1 : 0;
    }
  });
}

} // extern "C"

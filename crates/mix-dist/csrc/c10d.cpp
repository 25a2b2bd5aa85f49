// mix-dist's C++ shim: libtorch's distributed engine (c10d) behind a C interface for Rust. The TCPStore
// rendezvous, a ProcessGroup with the Gloo backend (CPU tensors) or the NCCL one (CUDA tensors, see
// nccl.cpp), its all-reduce, broadcast and barrier, and DDP's Reducer (bucketed gradient all-reduce that
// overlaps the backward pass through autograd hooks).
//
// Every exported function catches every C++ exception and returns it as a malloc'd message (nullptr on
// success) that the caller frees with mix_dist_free_error, so that no exception ever unwinds into Rust.

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <c10/util/Exception.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/distributed/c10d/GroupRegistry.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "shim.h"

using mix_dist::gather;
using mix_dist::protect;

struct MixGroup {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::chrono::milliseconds timeout;
  // The name c10d's functional collectives find the group by (SyncBatchNorm's differentiable gather).
  std::string name;
};

struct MixReducer {
  std::unique_ptr<c10d::Reducer> reducer;
};


extern "C" {

void mix_dist_free_error(char *message) { free(message); }

// Every key goes under `prefix` (c10d's PrefixStore), Gloo's included, so that a restarted job (torchrun
// keeps its agent's store across restarts) never reads the keys of an earlier attempt.
char *mix_dist_store_new(const char *host, uint16_t port, int is_server, int world, int64_t timeout_ms,
                         const char *prefix, MixStore **out) {
  return protect([&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server != 0;
    opts.numWorkers = static_cast<size_t>(world);
    // The rendezvous of mix-dist counts and names the ranks itself (group.rs), with its own message.
    opts.waitWorkers = false;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    c10::intrusive_ptr<c10d::Store> store = tcp;
    if (prefix != nullptr && prefix[0] != '\0') {
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    }
    *out = new MixStore{store};
  });
}

void mix_dist_store_free(MixStore *s) { delete s; }

char *mix_dist_store_set(MixStore *s, const char *key, const uint8_t *value, size_t n) {
  return protect([&] { s->store->set(std::string(key), std::vector<uint8_t>(value, value + n)); });
}

// `present` is 1 when the key exists, 0 when not; the value is copied out only when present.
char *mix_dist_store_try_get(MixStore *s, const char *key, int *present, uint8_t **value, size_t *n) {
  return protect([&] {
    *present = 0;
    *value = nullptr;
    *n = 0;
    if (!s->store->check({std::string(key)})) {
      return;
    }
    auto v = s->store->get(std::string(key));
    *present = 1;
    *n = v.size();
    *value = static_cast<uint8_t *>(malloc(v.size() == 0 ? 1 : v.size()));
    TORCH_CHECK(*value != nullptr, "out of memory copying a store value");
    if (!v.empty()) {
      memcpy(*value, v.data(), v.size());
    }
  });
}

void mix_dist_free_bytes(uint8_t *value) { free(value); }

char *mix_dist_store_add(MixStore *s, const char *key, int64_t delta, int64_t *out) {
  return protect([&] { *out = s->store->add(std::string(key), delta); });
}

// Sets `key` to `value` unless it already holds something; `won` is 1 when this call set it.
char *mix_dist_store_claim(MixStore *s, const char *key, const uint8_t *value, size_t n, int *won) {
  return protect([&] {
    std::vector<uint8_t> desired(value, value + n);
    auto now = s->store->compareSet(std::string(key), std::vector<uint8_t>(), desired);
    *won = now == desired ? 1 : 0;
  });
}

// backend: 0 Gloo (CPU tensors), 1 NCCL (CUDA tensors). `loopback` makes Gloo listen on 127.0.0.1 (for
// a single-machine job whose MASTER_ADDR is a loopback address); otherwise Gloo's default device (the
// address this host's name resolves to, or GLOO_SOCKET_IFNAME's interface).
char *mix_dist_group_new(MixStore *s, int rank, int world, int backend, int loopback, int64_t timeout_ms,
                         MixGroup **out) {
  return protect([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto pg = c10::make_intrusive<c10d::ProcessGroup>(s->store, rank, world);
    if (backend == 0) {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      const char *ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname != nullptr && ifname[0] != '\0') {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (loopback != 0) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(s->store, rank, world, opts);
      pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
      pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    } else {
      c10d::Backend *nccl = nullptr;
      char *err = mix_dist_nccl_backend(s, rank, world, timeout_ms, &nccl);
      if (err != nullptr) {
        std::string message(err);
        free(err);
        TORCH_CHECK(false, message);
      }
      auto backend_ptr = c10::intrusive_ptr<c10d::Backend>::reclaim(nccl);
      pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, backend_ptr);
      pg->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
    }
    // One name per group of this process, registered for the functional collectives.
    static std::atomic<int> groups{0};
    std::string name = "mix-" + std::to_string(groups.fetch_add(1));
    pg->setGroupName(name);
    c10d::register_process_group(name, pg);
    *out = new MixGroup{pg, timeout, name};
  });
}

void mix_dist_group_free(MixGroup *g) {
  try {
    c10d::unregister_process_group(g->name);
  } catch (...) {
  }
  delete g;
}

// Gathers `input` from every rank into `world` stacked copies (rank order) along dimension 0, as a
// differentiable operation: its backward pass reduce-scatters (sums) the gradient back to each rank.
// c10d's `_c10d_functional_autograd::all_gather_into_tensor`, the op behind PyTorch's
// `all_gather_tensor_autograd`; the result is waited for before it is handed back.
char *mix_dist_all_gather_autograd(MixGroup *g, tensor input, tensor *out) {
  return protect([&] {
    TORCH_CHECK(input != nullptr && input->defined(), "all_gather: expected a defined tensor");
    static auto gather =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("_c10d_functional_autograd::all_gather_into_tensor", "")
            .typed<at::Tensor(const at::Tensor &, int64_t, const std::string &)>();
    static auto wait = c10::Dispatcher::singleton()
                           .findSchemaOrThrow("_c10d_functional::wait_tensor", "")
                           .typed<at::Tensor(const at::Tensor &)>();
    at::Tensor gathered = gather.call(input->contiguous(), g->pg->getSize(), g->name);
    {
      // wait_tensor only waits (it returns its argument): below autograd, the result keeps the
      // gather's gradient function.
      at::AutoDispatchBelowADInplaceOrView below;
      wait.call(gathered);
    }
    *out = new at::Tensor(gathered);
  });
}

// Sums `tensors` (same dtype and device) across ranks in place, as one flat all-reduce.
char *mix_dist_all_reduce_sum(MixGroup *g, const tensor *ptrs, size_t n) {
  return protect([&] {
    auto ts = gather(ptrs, n, "all_reduce");
    if (ts.empty()) {
      return;
    }
    std::vector<at::Tensor> flat_parts;
    flat_parts.reserve(ts.size());
    for (auto &t : ts) {
      flat_parts.push_back(t.reshape({-1}));
    }
    std::vector<at::Tensor> flat{at::cat(flat_parts)};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = g->timeout;
    g->pg->allreduce(flat, opts)->wait(g->timeout);
    int64_t at = 0;
    for (auto &t : ts) {
      int64_t k = t.numel();
      t.copy_(flat[0].narrow(0, at, k).view(t.sizes()));
      at += k;
    }
  });
}

// Replaces `tensors` on every rank by rank `root`'s, one broadcast per tensor (parameters and buffers
// differ in dtype, so they are not flattened together).
char *mix_dist_broadcast(MixGroup *g, const tensor *ptrs, size_t n, int root) {
  return protect([&] {
    auto ts = gather(ptrs, n, "broadcast");
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = g->timeout;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (auto &t : ts) {
      // The collective needs a contiguous tensor; the result is copied back into non-contiguous ones.
      std::vector<at::Tensor> one{t.is_contiguous() ? t : t.contiguous()};
      g->pg->broadcast(one, opts)->wait(g->timeout);
      if (!t.is_same(one[0])) {
        t.copy_(one[0]);
      }
    }
  });
}

char *mix_dist_barrier(MixGroup *g) {
  return protect([&] {
    c10d::BarrierOptions opts;
    opts.timeout = g->timeout;
    g->pg->barrier(opts)->wait(g->timeout);
  });
}

// DDP's Reducer over `params` (the parameters that require gradients, in the model's order), as
// torch.nn.parallel.DistributedDataParallel builds it with find_unused_parameters=False: one bucket for
// the first iteration, rebuilt in the order gradients arrive (first bucket `first_cap` bytes, then
// `cap`) after it.
char *mix_dist_reducer_new(MixGroup *g, const tensor *ptrs, size_t n, int64_t cap, int64_t first_cap,
                           MixReducer **out) {
  return protect([&] {
    auto params = gather(ptrs, n, "reducer");
    TORCH_CHECK(!params.empty(), "reducer: expected at least one parameter that requires a gradient");
    std::vector<bool> sparse(params.size(), false);
    std::vector<size_t> limits{std::numeric_limits<size_t>::max()};
    auto assignment = c10d::compute_bucket_assignment_by_size(params, limits, sparse);
    auto buckets = std::get<0>(assignment);
    std::reverse(buckets.begin(), buckets.end());
    std::unordered_map<size_t, std::string> names;
    auto reducer = std::make_unique<c10d::Reducer>(params, buckets, g->pg, sparse, cap,
                                                   /*find_unused_parameters=*/false,
                                                   /*gradient_as_bucket_view=*/false, names, first_cap,
                                                   /*skip_all_reduce_unused_params=*/false,
                                                   /*use_python_reducer=*/false, std::vector<int64_t>());
    *out = new MixReducer{std::move(reducer)};
  });
}

// ~Reducer may throw (it is noexcept(false)); nothing can be done about it while tearing down.
void mix_dist_reducer_free(MixReducer *r) {
  try {
    delete r;
  } catch (...) {
  }
}

// DDP's pre-forward: start timing, and rebuild the buckets in gradient order after the first iteration.
char *mix_dist_reducer_before_forward(MixReducer *r) {
  return protect([&] {
    r->reducer->prepare_for_forward();
    r->reducer->rebuild_buckets();
  });
}

// DDP's post-forward: the next backward all-reduces the gradients, bucket by bucket, as they are ready.
char *mix_dist_reducer_before_backward(MixReducer *r) {
  return protect([&] { r->reducer->prepare_for_backward(std::vector<at::Tensor>()); });
}

} // extern "C"

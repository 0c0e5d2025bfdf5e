#pragma once
// Shared by the GPU benchmarks: the weights a step reads, fast random weights for the presets, device memory in use,
// the GPU's name, medians. Header-only: each bench/*.cpp is its own program.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "base/bf16.h"
#include "base/rng.h"
#include "tensor/device_memory.h"
#include "model/params.h"
#include "model/transformer.h"

#ifdef R1_HAVE_CUDA
#include "device/cuda_check.h"
#include "kernels/cuda/cuda_context.h"
#include "device/cuda_device.h"
#endif

namespace r1::bench {

// Weights of layer l that enter a matmul when `experts` of its routed experts run: attention (q, k, v,
// o; MLA: q or q_a and q_b, kv_a, kv_b, o), and the MLP (gate, up, down; a mixture-of-experts layer:
// the router, the shared experts and `experts` routed ones).
inline double layer_matmul_params(const model::ModelConfig& c, int l, double experts) {
  const double C = c.hidden_size;
  double attn;
  if (c.is_mla()) {
    const double NH = c.num_attention_heads, QR = c.mla.q_lora_rank, KVR = c.mla.kv_lora_rank;
    const double QK = c.mla.qk_nope_head_dim + c.mla.qk_rope_head_dim;
    const double q = QR > 0 ? C * QR + QR * NH * QK : C * NH * QK;
    attn = q + C * (KVR + c.mla.qk_rope_head_dim) + KVR * NH * (c.mla.qk_nope_head_dim + c.mla.v_head_dim) +
           NH * c.mla.v_head_dim * C;
  } else {
    const double q = double(c.q_dim()), kv = double(c.kv_dim());
    attn = C * q + 2 * C * kv + q * C;
  }
  if (!c.is_moe_layer(l)) return attn + 3 * C * c.intermediate_size;
  const double I = c.moe.moe_intermediate_size, shared = c.is_mla() ? c.moe.n_shared_experts : 0;
  return attn + C * c.moe.num_experts + 3 * C * I * (shared + experts);
}

// Weights that enter a matmul per token: every layer with its num_experts_per_tok active experts,
// plus the lm_head (V x C, counted even when tied to the embedding table). The FLOPs of a token are
// 2x this (6x in training) plus attention's.
inline int64_t matmul_params(const model::ModelConfig& c) {
  double n = double(c.vocab_size) * c.hidden_size;
  for (int l = 0; l < c.num_hidden_layers; ++l) n += layer_matmul_params(c, l, c.moe.num_experts_per_tok);
  return int64_t(n);
}

// Weights a decode step of `batch` sequences reads: as matmul_params, but a mixture-of-experts layer
// reads every expert that one of the batch's tokens is routed to: E (1 - (1 - K / E)^batch) of them
// expected under uniform routing (all 128 of Qwen3-30B-A3B's at batch 64).
inline int64_t decode_weight_params(const model::ModelConfig& c, int64_t batch) {
  const double E = c.moe.num_experts, K = c.moe.num_experts_per_tok;
  const double touched = E > 0 ? E * (1 - std::pow(1 - K / E, double(batch))) : 0.0;
  double n = double(c.vocab_size) * c.hidden_size;
  for (int l = 0; l < c.num_hidden_layers; ++l) n += layer_matmul_params(c, l, touched);
  return int64_t(n);
}

// Transformer::init_random draws normals on one host thread (half a minute for 1.5B). Speed does
// not depend on the distribution, so: uniform values of the same std, ones for norms, zeros for
// biases, drawn in parallel (one Philox stream per 1M-value chunk). One parameter at a time goes
// through host memory, so a 32B model (131 GB as f32) initialises on a host with less.
inline void init_uniform(model::Transformer& m, uint64_t seed, float std = 0.02f) {
  constexpr int64_t kChunk = int64_t(1) << 20;
  const float half_width = std * std::sqrt(3.0f);  // U(-a, a) has std a / sqrt(3)
  int64_t first_chunk = 0;                         // the stream of a chunk: its index in the model
  // The bf16 compute copy is rounded in the same parallel loop (one host thread rounding a 30B
  // model's weights takes about a minute).
  const bool bf16 = m.params().flat.dtype == DType::BF16;
  std::vector<float> host;
  std::vector<uint16_t> rounded;
  for (const model::ParamSpec& s : m.specs()) {
    host.resize(size_t(s.numel()));
    if (bf16) rounded.resize(size_t(s.numel()));
    const bool norm = s.name.find("norm") != std::string::npos, bias = s.shape.size() == 1 && !norm;
    const int64_t chunks = (s.numel() + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(dynamic)
    for (int64_t k = 0; k < chunks; ++k) {
      Rng rng(seed, uint64_t(first_chunk + k));
      const int64_t begin = k * kChunk, end = std::min(s.numel(), begin + kChunk);
      for (int64_t j = begin; j < end; ++j) {
        host[size_t(j)] = norm ? 1.0f : bias ? 0.0f : half_width * (2 * rng.uniform() - 1);
        if (bf16) rounded[size_t(j)] = f32_to_bf16(host[size_t(j)]);
      }
    }
    first_chunk += chunks;
    if (m.separate_master()) copy_from_host(m.master().flat.rows(s.offset, s.offset + s.numel()), host.data());
    const Tensor compute = m.params().flat.rows(s.offset, s.offset + s.numel());
    if (bf16) copy_from_host(compute, rounded.data());
    else copy_from_host_f32(compute, host.data());
  }
}

#ifdef R1_HAVE_CUDA
// Device memory in use (total - free, as every process sees it), MiB.
inline double device_used_mib() {
  size_t free = 0, total = 0;
  CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return double(total - free) / (1 << 20);
}
inline void synchronize() { cuda::synchronize(); }
inline std::string gpu_name() { return cuda::cuda_device_description(); }
#else
inline double device_used_mib() { return 0; }
inline void synchronize() {}
inline std::string gpu_name() { return "none"; }
#endif

// The dense presets the decode benchmarks run by default (issue 25's shapes).
inline const std::vector<std::string> kDecodeShapes = {"qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b", "llama-3.1-8b"};

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// A tensor of `dt` in the arena holding uniform values in [-scale, scale) (seeded).
inline Tensor random_tensor(Arena& a, DType dt, std::initializer_list<int64_t> dims, uint64_t seed, float scale) {
  Tensor t = a.alloc(dt, dims);
  std::vector<float> host(size_t(t.numel()));
  Rng rng(seed);
  for (float& x : host) x = scale * (2 * rng.uniform() - 1);
  copy_from_host_f32(t, host.data());
  return t;
}

// Device-to-device copy bandwidth (read + write bytes over time), the rooflines' denominator.
inline double measured_bandwidth() {
#ifdef R1_HAVE_CUDA
  const size_t bytes = size_t(2) << 30;
  void *a = nullptr, *b = nullptr;
  CUDA_CHECK(cudaMalloc(&a, bytes));
  CUDA_CHECK(cudaMalloc(&b, bytes));
  cudaStream_t s = cuda::context().stream;
  CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s));
  cuda::synchronize();
  std::vector<double> bw;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s));
    cuda::synchronize();
    bw.push_back(2.0 * double(bytes) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  CUDA_CHECK(cudaFree(a));
  CUDA_CHECK(cudaFree(b));
  return median(bw);
#else
  return 0;
#endif
}

// A benchmark's main: runs `run`; on an exception it still prints one JSON line (`id` plus "error"),
// so the summary shows the failure in its row, and the message on stderr; returns 1 then.
template <class Run>
int run_reporting_errors(const char* program, nlohmann::json id, Run&& run) {
  try {
    return run();
  } catch (const std::exception& e) {
    id["error"] = e.what();
    std::printf("%s\n", id.dump().c_str());
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace r1::bench

#pragma once
// A model on the CPU and its twin on the GPU with the same bf16-rounded weights, so comparisons
// measure bf16 compute only; random packed batches; and the gradient comparison the CUDA model
// tests share.
#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/bf16.h"
#include "base/rng.h"
#include "model/transformer.h"
#include "tensor/device_memory.h"

namespace r1::test {

// Random HF-style weights rounded to bf16, so both devices compute with the same numbers.
inline std::vector<float> bf16_weights(const r1::model::ModelConfig& c, uint64_t seed, float std) {
  r1::model::Transformer tmp(c);
  tmp.init_random(seed, std);
  std::vector<float> w = tmp.weights_host();
  for (float& x : w) x = r1::bf16_to_f32(r1::f32_to_bf16(x));
  return w;
}

struct Pair {
  r1::model::Transformer cpu, gpu;
};

// Both models of config c with the weights w; the GPU's computes in `gpu_compute` (bf16 by default;
// f32 checks the GPU code path without bf16's rounding).
inline Pair twin_models(const r1::model::ModelConfig& c, const std::vector<float>& w,
                        std::optional<r1::DType> gpu_compute = std::nullopt) {
  Pair p{r1::model::Transformer(c, r1::Device::CPU),
         r1::model::Transformer(c, r1::Device::CUDA, true, gpu_compute)};
  p.cpu.set_weights(w.data());
  p.gpu.set_weights(w.data());
  return p;
}
inline Pair twin_models(const r1::model::ModelConfig& c, uint64_t seed, float std = 0.2f) {
  return twin_models(c, bf16_weights(c, seed, std));
}
// The twins of a CPU model (its weights rounded to bf16).
inline Pair twin_models(const r1::model::Transformer& m, std::optional<r1::DType> gpu_compute = std::nullopt) {
  std::vector<float> w = m.weights_host();
  for (float& x : w) x = r1::bf16_to_f32(r1::f32_to_bf16(x));
  return twin_models(m.config(), w, gpu_compute);
}

inline r1::model::Batch random_batch(uint64_t seed, int vocab, std::vector<int> lens) {
  r1::Rng rng(seed);
  std::vector<std::vector<int32_t>> seqs;
  for (int len : lens) {
    seqs.emplace_back();
    for (int i = 0; i < len; ++i) seqs.back().push_back(int32_t(rng.next_u32() % uint32_t(vocab)));
  }
  return r1::model::pack_sequences(seqs);
}

inline std::vector<float> mean_loss_dlogp(const r1::model::Batch& b) {
  int64_t n = 0;
  for (int32_t t : b.targets) n += t >= 0;
  std::vector<float> d(b.targets.size());
  for (size_t t = 0; t < d.size(); ++t) d[t] = b.targets[t] >= 0 ? -1.0f / float(n) : 0.0f;
  return d;
}

// The GPU's accumulated gradients against the CPU's: each parameter's relative L2 error, with a
// floor at 1e-3 of the whole gradient's norm (a gradient that is nearly zero in exact arithmetic is
// all rounding noise on either device), and all parameters together.
struct GradErrors {
  std::map<std::string, double> per_param;
  double worst = 0, all = 0;
};
inline GradErrors grad_errors(const Pair& p) {
  const std::vector<float> gc = r1::to_host_f32(p.cpu.grads().flat), gg = r1::to_host_f32(p.gpu.grads().flat);
  double total = 0;
  for (float g : gc) total += double(g) * g;
  const double floor = 1e-3 * std::sqrt(total);
  GradErrors e;
  double num_all = 0;
  for (const r1::model::ParamSpec& s : p.cpu.specs()) {
    double num = 0, den = 0;
    for (int64_t i = s.offset; i < s.offset + s.numel(); ++i) {
      num += (double(gg[size_t(i)]) - gc[size_t(i)]) * (double(gg[size_t(i)]) - gc[size_t(i)]);
      den += double(gc[size_t(i)]) * gc[size_t(i)];
    }
    num_all += num;
    const double err = std::sqrt(num) / std::max(std::sqrt(den), floor);
    e.per_param[s.name] = err;
    e.worst = std::max(e.worst, err);
  }
  e.all = total > 0 ? std::sqrt(num_all / total) : 0.0;
  return e;
}

}  // namespace r1::test

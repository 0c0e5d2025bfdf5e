#pragma once
// Test models of the mixture-of-experts architectures (qwen3_moe, deepseek_v3) and the check that
// decoding through the KV cache gives the training forward's log-probs, on either device.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "base/rng.h"
#include "model/kv_cache.h"
#include "model/train_state.h"
#include "model/transformer.h"
#include "tensor/device_memory.h"

namespace r1::test {

// A tiny random model of `preset` on the CPU, its e_score_correction_bias given values (init zeroes
// it) so that the choice really uses it, and its router logits spread so that each choice is
// decided by a clear margin (a finite-difference step, or bf16 rounding, must not flip one):
// router_gain scales the router's weights (1: init's spread).
inline r1::model::Transformer tiny_moe(const std::string& preset, uint64_t seed = 11, float router_gain = 10.0f) {
  r1::model::Transformer m(r1::model::preset_config(preset));
  m.init_random(seed, 0.2f);
  float* w = m.params().flat.f32();
  for (const auto& s : m.specs()) {
    if (s.name.ends_with("e_score_correction_bias")) {
      r1::Rng rng(seed, 99);
      for (int64_t i = 0; i < s.numel(); ++i) w[s.offset + i] = 0.05f * rng.normal();
    }
    if (s.name.ends_with("mlp.gate.weight"))
      for (int64_t i = 0; i < s.numel(); ++i) w[s.offset + i] *= router_gain;
  }
  return m;
}

inline std::vector<int32_t> random_ids(uint64_t seed, int n, int vocab) {
  r1::Rng rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& x : ids) x = int32_t(rng.next_u32() % uint32_t(vocab));
  return ids;
}

// |decode log-prob - training log-prob| at each position of one random sequence, fed as one prefill
// of the whole sequence (slot 1), and as a prefill of a third, a chunk of three tokens over the
// cached rows, then single-token decode steps (slot 0). For MLA the prefill writes the latent cache
// and the chunk and the steps attend in the absorbed form. The training forward replays the routes
// of the whole-sequence prefill (the same experts as the router's on the CPU; on CUDA, bf16 may
// break a near-tie differently between the two paths, and the gap would then measure the routing).
struct CachedGap {
  std::vector<double> gap;  // per (feed, position)
  std::vector<std::string> where;
  double max() const { return gap.empty() ? 0.0 : *std::max_element(gap.begin(), gap.end()); }
  double mean() const {
    double s = 0;
    for (double g : gap) s += g;
    return gap.empty() ? 0.0 : s / double(gap.size());
  }
};

inline CachedGap cached_forward_gap(const model::Transformer& m) {
  const int V = m.config().vocab_size, n = 15;
  const std::vector<int32_t> seq = random_ids(8, n, V);
  model::KVCache cache(m, 2, 32);
  Arena arena(0, m.device());
  struct Fed {
    int first, count;
    std::vector<float> logits;
  };
  std::vector<Fed> fed;
  model::ExpertRoutes whole;
  auto feed = [&](int first, int count, int32_t slot) {
    std::vector<int32_t> ids, slots, pos, rows;
    for (int i = first; i < first + count; ++i) {
      ids.push_back(seq[size_t(i)]);
      slots.push_back(slot);
      pos.push_back(i);
      rows.push_back(i - first);
    }
    arena.reset();
    model::ExpertRoutes routes;
    const Tensor z = model::forward_cached(m, cache, ids, slots, pos, rows, arena, DType::F32, &routes);
    if (slot == 1) whole = routes;
    fed.push_back({first, count, to_host_f32(z)});
  };
  feed(0, n, 1);
  const int third = n / 3;
  feed(0, third, 0);
  feed(third, 3, 0);
  for (int i = third + 3; i < n; ++i) feed(i, 1, 0);

  model::Batch batch = model::pack_sequences({seq});
  batch.replay = whole;
  model::TrainState st;
  st.forward(m, batch, 1.0f, model::Backward::None);
  const std::vector<float> want = st.logp_host();
  CachedGap g;
  for (size_t f = 0; f < fed.size(); ++f) {
    for (int i = fed[f].first; i < fed[f].first + fed[f].count && i + 1 < n; ++i) {
      const float* r = fed[f].logits.data() + int64_t(i - fed[f].first) * V;
      double mx = r[0], s = 0;
      for (int v = 1; v < V; ++v) mx = std::max(mx, double(r[v]));
      for (int v = 0; v < V; ++v) s += std::exp(double(r[v]) - mx);
      const double logp = double(r[seq[size_t(i) + 1]]) - mx - std::log(s);
      g.gap.push_back(std::abs(logp - double(want[size_t(i)])));
      g.where.push_back("position " + std::to_string(i) + " fed in [" + std::to_string(fed[f].first) + ", " +
                        std::to_string(fed[f].first + fed[f].count) + ")" + (f == 0 ? " (whole)" : ""));
    }
  }
  return g;
}

}  // namespace r1::test

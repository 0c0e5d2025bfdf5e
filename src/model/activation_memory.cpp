#include "model/activation_memory.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "device/cuda_device.h"

namespace r1::model {

namespace {

// Bytes as the arenas hand them out: every tensor rounded up to 64.
struct Tally {
  size_t bytes = 0;
  void add(int64_t elems, size_t elem_size) { bytes += (size_t(elems) * elem_size + 63) / 64 * 64; }
};

// What the blocks keep when saving, tensor by tensor (blocks/*.cpp: keep, and cheap unless
// recomputed). e: the compute dtype's size; statistics (rstd, lse) are f32.
void norm_saved(Tally& t, int64_t T, int64_t C, size_t e, bool recompute) {
  t.add(T, 4);                   // rstd
  if (!recompute) t.add(T * C, e);  // out
}

void attention_saved(Tally& t, const ModelConfig& c, int64_t T, size_t e) {
  const int64_t Q = c.q_dim(), KV = c.kv_dim(), NH = c.num_attention_heads, NKV = c.num_key_value_heads;
  t.add(T * Q, e);  // q, k, v as projected
  t.add(T * KV, e);
  t.add(T * KV, e);
  if (c.qk_norm) {  // the normed q and k beside their inputs, and the norms' rstd
    t.add(T * Q, e);
    t.add(T * KV, e);
    t.add(T * NH, 4);
    t.add(T * NKV, 4);
  }
  t.add(T * Q, e);   // att
  t.add(T * NH, 4);  // lse
}

void mlp_saved(Tally& t, const ModelConfig& c, int64_t T, size_t e, bool recompute) {
  const int64_t I = c.intermediate_size;
  t.add(T * I, e);  // gate
  t.add(T * I, e);  // up
  if (!recompute) t.add(T * I, e);  // act
}

}  // namespace

ActivationSetup activation_setup(const Transformer& m, bool recompute, bool adapters) {
  ActivationSetup s;
  s.compute = m.compute_dtype();
  s.recompute = recompute;
  if (!adapters || !m.has_lora()) return s;
  for (size_t l = 0; l < m.params().layers.size(); ++l) {
    const LayerWeights& W = m.params().layers[l];
    s.adapter_ranks.emplace_back();
    visit_layer_linears(W, m.config(), int(l), [&](const Linear& lin, const auto&, int64_t, int64_t) {
      if (!lin.lora_a.empty()) s.adapter_ranks.back().push_back(lin.lora_a.shape[0]);
    });
  }
  return s;
}

size_t layer_saved_bytes(const ModelConfig& c, int l, const ActivationSetup& s, int64_t T) {
  const size_t e = dtype_size(s.compute);
  const int64_t C = c.hidden_size;
  Tally t;
  norm_saved(t, T, C, e, s.recompute);  // ln1
  attention_saved(t, c, T, e);
  t.add(T * C, e);  // x_mid
  norm_saved(t, T, C, e, s.recompute);  // ln2
  mlp_saved(t, c, T, e, s.recompute);
  if (size_t(l) < s.adapter_ranks.size())  // each adapter's h = dropout(x) A^T: (T, r)
    for (int64_t r : s.adapter_ranks[size_t(l)]) t.add(T * r, e);
  return t.bytes;
}

ActivationEstimate estimate_activations(const ModelConfig& c, const ActivationSetup& s, int64_t T, int64_t B) {
  const size_t e = dtype_size(s.compute);
  const int64_t C = c.hidden_size, L = c.num_hidden_layers;
  Tally t;
  for (int k = 0; k < 3; ++k) t.add(T, 4);  // ids, positions, targets
  t.add(B + 1, 4);                          // cu_seqlens
  for (int64_t k = 0; k <= L; ++k) t.add(T * C, e);  // the embedding's output and each layer's
  t.add(T * C, e);                          // lnf
  for (int k = 0; k < 4; ++k) t.add(T, 4);  // lnf's rstd, logp, lse, entropy
  t.add(T, 4);                              // the backward's dlogp
  t.add(T * C, e);                          // dlnf
  t.add(T * C, e);                          // dres
  ActivationEstimate est;
  est.checkpointed = t.bytes;
  est.saving = t.bytes;
  for (int l = 0; l < L; ++l) {
    const size_t layer = layer_saved_bytes(c, l, s, T);
    est.saving += layer;
    est.layer = std::max(est.layer, layer);
  }
  return est;
}

size_t free_memory(Device device) {
  if (device == Device::CUDA) return cuda::memory_info().free;
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream fields(line.substr(13));
    size_t kib = 0;
    fields >> kib;
    return kib * 1024;
  }
  return 0;  // unknown: Auto then checkpoints (the safe side)
}

bool checkpointing_needed(const ActivationEstimate& e, size_t budget) { return e.saving + e.layer > budget; }

}  // namespace r1::model

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
// recomputed). e: the compute dtype's size; statistics (rstd, lse, routing weights) are f32.
void norm_saved(Tally& t, int64_t T, int64_t C, size_t e, bool recompute) {
  t.add(T, 4);                      // rstd
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

void mla_saved(Tally& t, const ModelConfig& c, int64_t T, size_t e) {
  const MlaConfig& m = c.mla;
  const int64_t NH = c.num_attention_heads, QK = m.qk_head_dim(), DV = m.v_head_dim, KVR = m.kv_lora_rank;
  t.add(T * NH * QK, e);    // q
  if (m.q_lora_rank > 0) {  // the low-rank query, normed, its rstd
    t.add(T * m.q_lora_rank, e);
    t.add(T * m.q_lora_rank, e);
    t.add(T, 4);
  }
  t.add(T * (KVR + m.qk_rope_head_dim), e);  // the latent with the rope key
  t.add(T * KVR, e);                         // its latent part, normed, rstd
  t.add(T * KVR, e);
  t.add(T, 4);
  t.add(T * NH * QK, e);  // k
  t.add(T * NH * DV, e);  // v
  t.add(T * NH * DV, e);  // att
  t.add(T * NH, 4);       // lse
}

// A SwiGLU of width I over `rows` rows (a dense MLP's tokens, or the experts' grouped rows): gate,
// up, and the product unless recomputed.
void swiglu_saved(Tally& t, int64_t rows, int64_t I, size_t e, bool recompute) {
  for (int k = 0; k < (recompute ? 2 : 3); ++k) t.add(rows * I, e);
}

void moe_saved(Tally& t, const ModelConfig& c, int64_t T, size_t e, bool recompute) {
  const int64_t E = c.moe.num_experts, K = c.moe.num_experts_per_tok, R = T * K, C = c.hidden_size;
  t.add(T * E, e);  // router logits
  t.add(T * K, 4);  // chosen experts, their weights
  t.add(T * K, 4);
  t.add(R, 4);  // the assignments grouped by expert: order, tokens, and each expert's first row
  t.add(R, 4);
  t.add(E + 1, 4);
  t.add(R * C, e);  // the experts' inputs and outputs, grouped
  t.add(R * C, e);
  swiglu_saved(t, R, c.moe.moe_intermediate_size, e, recompute);
  if (c.is_mla() && c.moe.n_shared_experts > 0)
    swiglu_saved(t, T, int64_t(c.moe.n_shared_experts) * c.moe.moe_intermediate_size, e, recompute);
}

}  // namespace

ActivationSetup activation_setup(const Transformer& m, bool recompute, bool adapters) {
  ActivationSetup s;
  s.compute = m.compute_dtype();
  s.recompute = recompute;
  if (!adapters || !m.has_lora()) return s;
  for (size_t l = 0; l < m.params().layers.size(); ++l) {
    s.adapters.emplace_back();
    LayerWeights W = m.params().layers[l];  // views; the visit may size the experts' list
    visit_layer_linears(
        W, m.config(), int(l), [&](const Linear& lin, const std::string& name, int64_t, int64_t) {
          if (lin.lora_a.empty()) return;
          // The experts' adapters of one kind run as one grouped linear over all routed rows: count
          // expert 0's for them all.
          const bool expert = name.rfind("mlp.experts.", 0) == 0;
          if (expert && name.rfind("mlp.experts.0.", 0) != 0) return;
          s.adapters.back().push_back({lin.lora_a.shape[0], expert});
        });
  }
  return s;
}

size_t layer_saved_bytes(const ModelConfig& c, int l, const ActivationSetup& s, int64_t T) {
  const size_t e = dtype_size(s.compute);
  const int64_t C = c.hidden_size;
  Tally t;
  norm_saved(t, T, C, e, s.recompute);  // ln1
  if (c.is_mla()) {
    mla_saved(t, c, T, e);
  } else {
    attention_saved(t, c, T, e);
  }
  t.add(T * C, e);                      // x_mid
  norm_saved(t, T, C, e, s.recompute);  // ln2
  if (c.is_moe_layer(l)) {
    moe_saved(t, c, T, e, s.recompute);
  } else {
    swiglu_saved(t, T, c.intermediate_size, e, s.recompute);
  }
  if (size_t(l) < s.adapters.size()) {  // each adapter's h = dropout(x) A^T: (rows, r)
    const int64_t R = T * c.moe.num_experts_per_tok;
    for (const AdapterShape& a : s.adapters[size_t(l)]) t.add((a.expert ? R : T) * a.rank, e);
  }
  return t.bytes;
}

ActivationEstimate estimate_activations(const ModelConfig& c, const ActivationSetup& s, int64_t T,
                                        int64_t B) {
  const size_t e = dtype_size(s.compute);
  const int64_t C = c.hidden_size, L = c.num_hidden_layers;
  Tally t;
  for (int k = 0; k < 3; ++k) t.add(T, 4);           // ids, positions, targets
  t.add(B + 1, 4);                                   // cu_seqlens
  for (int64_t k = 0; k <= L; ++k) t.add(T * C, e);  // the embedding's output and each layer's
  t.add(T * C, e);                                   // lnf
  for (int k = 0; k < 4; ++k) t.add(T, 4);           // lnf's rstd, logp, lse, entropy
  t.add(T, 4);                                       // the backward's dlogp
  t.add(T * C, e);                                   // dlnf
  t.add(T * C, e);                                   // dres
  ActivationEstimate est;
  est.saving = t.bytes;
  for (int l = 0; l < L; ++l)  // checkpointing: each MoE layer's experts, replayed by its recomputation
    if (c.is_moe_layer(l)) t.add(T * c.moe.num_experts_per_tok, 4);
  est.checkpointed = t.bytes;
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

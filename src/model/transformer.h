#pragma once
// The decoder-only transformer (Qwen2/2.5, Llama 3, Qwen3), llm.c style: an explicit forward that
// saves what the backward needs, an explicit backward to every parameter, and a cached forward for
// generation. Architectures differ by ModelConfig data only.
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/params.h"
#include "tensor/tensor.h"

namespace r1::model {

// A packed batch: B sequences concatenated, sequence b owning tokens [cu_seqlens[b], cu_seqlens[b+1]).
struct Batch {
  std::vector<int32_t> ids;         // (T)
  std::vector<int32_t> positions;   // (T) position within its sequence
  std::vector<int32_t> cu_seqlens;  // (B + 1)
  std::vector<int32_t> targets;     // (T) next token within the sequence, -1 at each sequence end
  int64_t tokens() const { return int64_t(ids.size()); }
  int64_t sequences() const { return int64_t(cu_seqlens.size()) - 1; }
};
// Packs sequences into a Batch with positions 0..len-1 and next-token targets.
Batch pack_sequences(const std::vector<std::vector<int32_t>>& seqs);

class Transformer {
 public:
  // A model with uninitialised weights of the given architecture (see init_random / load_model).
  explicit Transformer(ModelConfig cfg);
  Transformer(Transformer&&) = default;

  const ModelConfig& config() const { return cfg_; }
  const std::vector<ParamSpec>& specs() const { return specs_; }
  Params& params() { return params_; }
  const Params& params() const { return params_; }
  Params& grads() { return grads_; }
  void zero_grads();
  // HF initialisation: normal(0, std) for matrices and embeddings, ones for norms, zeros for biases.
  void init_random(uint64_t seed, float std = 0.02f);
  const Tensor& rope_inv_freq() const { return inv_freq_t_; }

 private:
  ModelConfig cfg_;
  std::vector<ParamSpec> specs_;
  Buffer weights_, gradients_;
  Params params_, grads_;
  std::vector<float> inv_freq_;
  Tensor inv_freq_t_;
};

// What the training forward saves for the backward, per layer, for T tokens.
struct LayerActivations {
  Tensor x_in, ln1, ln1_rstd;     // (T, C), (T, C), (T)
  Tensor q_pre, k_pre, q_rstd, k_rstd;  // qwen3 q/k norm inputs (T, NH|NKV, HD) and rstd
  Tensor q, k, v;                 // after bias, norm and RoPE: (T, NH, HD), (T, NKV, HD) x2
  Tensor att, lse;                // (T, NH, HD), (T, NH)
  Tensor x_mid, ln2, ln2_rstd;    // (T, C), (T, C), (T)
  Tensor gate, up, act;           // (T, I) x3
};

// Forward/backward state for one packed batch; memory comes from an arena reused across steps.
class TrainState {
 public:
  // Runs the forward over `batch` and returns logp (T): log p(targets[t] | tokens <= t) at the
  // given temperature (0 at sequence ends). entropy (T) is filled too.
  Tensor forward(const Transformer& m, const Batch& batch, float temperature = 1.0f);
  // Backward from dlogp (T) = d loss / d logp; accumulates into m.grads().
  void backward(Transformer& m, const std::vector<float>& dlogp);
  const Tensor& logp() const { return logp_; }
  const Tensor& entropy() const { return entropy_; }
  int64_t vocab_chunk = 4096;

 private:
  Arena arena_, scratch_;
  const Batch* batch_ = nullptr;
  float temperature_ = 1.0f;
  Tensor ids_, pos_, cu_, targets_;
  std::vector<LayerActivations> acts_;
  Tensor x_final, lnf, lnf_rstd, logp_, lse_, entropy_;
};

// Key/value cache for generation: per layer (S slots, L rows, NKV, HD) f32.
struct KVCache {
  KVCache(const ModelConfig& c, int64_t slots, int64_t max_len);
  int64_t slots, max_len;
  std::vector<Buffer> k, v;
  std::vector<Tensor> k_t, v_t;
};

// Cached forward for generation: token t (ids[t]) is at row pos[t] of cache slot slots[t]; its keys
// and values are written into the cache and it attends to rows [0, pos[t]] of its slot. Returns
// logits (R, V) for the rows listed in `logit_rows` (e.g. each prompt's last token), in `arena`.
Tensor forward_cached(const Transformer& m, KVCache& cache, const std::vector<int32_t>& ids,
                      const std::vector<int32_t>& slots, const std::vector<int32_t>& pos,
                      const std::vector<int32_t>& logit_rows, Arena& arena);

}  // namespace r1::model

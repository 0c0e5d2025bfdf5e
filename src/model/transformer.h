#pragma once
// The decoder-only transformer (Qwen2/2.5, Llama 3, Qwen3), llm.c style: an explicit forward that
// saves what the backward needs, an explicit backward to every parameter, and a cached forward for
// generation. Architectures differ by ModelConfig data only. One code path serves both devices.
//
// ---- Devices and precision ------------------------------------------------------------------
//   CPU  : everything f32. params() are the weights the optimizer updates; master() is the same.
//   CUDA : params() are the bf16 compute weights on the GPU (what every forward reads), master()
//          the fp32 weights AdamW updates, grads() fp32; all three are flat buffers of one layout
//          (params.h). A non-trainable model (reference models) keeps only the bf16 params().
//          Activations and activation gradients are bf16; per-row statistics (rstd, lse, logp,
//          entropy) stay f32. AdamW moments are fp32 on the device (train/optimizer.h).
//
// ---- Typical use (bench/bench_train_gpu.cpp, src/cli/cmd_logprobs.cpp, the trainers) ---------
//   model::Transformer m(cfg, Device::CUDA);         // or load_model(dir, Device::CUDA)
//   m.init_random(seed);                             // on the host, then uploaded
//   train::AdamW opt(train::param_slices(m), adamw_cfg, m.device());
//   model::TrainState st;                            // reuse across steps: its arenas keep their peak
//   st.forward(m, batch);                            // logp (T) on the model's device
//   std::vector<float> logp = st.logp_host();        // host copy for the loss
//   m.zero_grads(); st.backward(m, dlogp_host);      // accumulates into m.grads()
//   auto clip = train::clip_grad_norm(m.grads().flat, 1.0);      // global norm on the device
//   train::optimizer_step(opt, m, lr, clip.scale);   // master update + bf16 params in one pass
//   model::copy_weights(reference, m);               // reference refresh, any devices
//   model::save_model(m, dir);                       // downloads to the host
// Generation: KVCache cache(m, slots, len); Arena a(0, m.device());
//   forward_cached(m, cache, ...) returns logits on the model's device; to_host_f32() reads them.
#include <cstdint>
#include <functional>
#include <optional>
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
  // A model of the given architecture with zero weights (see init_random / load_model) on `device`.
  // trainable = false: no gradients and, on CUDA, no fp32 master copy (a frozen reference model).
  // compute: the dtype every forward computes in; by default f32 on CPU and bf16 on CUDA (f32 on
  // CUDA is the reference precision for comparing the GPU path with the CPU one).
  explicit Transformer(ModelConfig cfg, Device device = Device::CPU, bool trainable = true,
                       std::optional<DType> compute = std::nullopt);
  Transformer(Transformer&&) = default;

  const ModelConfig& config() const { return cfg_; }
  const std::vector<ParamSpec>& specs() const { return specs_; }
  Device device() const { return device_; }
  DType compute_dtype() const { return params_.flat.dtype; }  // by default F32 on CPU, BF16 on CUDA
  bool trainable() const { return trainable_; }
  // The weights every forward computes with (compute dtype, on device()).
  Params& params() { return params_; }
  const Params& params() const { return params_; }
  // The fp32 weights the optimizer updates: params() when they are f32, else a separate copy
  // (empty views when not trainable). After changing them directly, call refresh_compute_weights().
  Params& master() { return compute_dtype() == DType::F32 ? params_ : master_; }
  const Params& master() const { return compute_dtype() == DType::F32 ? params_ : master_; }
  // Whether master() is a separate fp32 copy whose updates must be rounded into params().
  bool separate_master() const { return trainable_ && compute_dtype() != DType::F32; }
  // fp32 gradients of master()'s layout (empty views when not trainable).
  Params& grads() { return grads_; }
  const Params& grads() const { return grads_; }
  void zero_grads();

  // HF initialisation: normal(0, std) for matrices and embeddings, ones for norms, zeros for biases.
  // Drawn on the host (the same numbers on every device), then uploaded.
  void init_random(uint64_t seed, float std = 0.02f);
  // All weights as host f32, in the flat layout: the master copy if there is one, else params().
  std::vector<float> weights_host() const;
  // Sets every weight from host f32 in the flat layout (master and, rounded, the compute weights).
  void set_weights(const float* host_flat);
  // Rounds master() into params() after master() was written directly (CUDA; nothing on CPU).
  void refresh_compute_weights();
  const Tensor& rope_inv_freq() const { return inv_freq_t_; }  // f32 on device()

 private:
  ModelConfig cfg_;
  std::vector<ParamSpec> specs_;
  Device device_;
  bool trainable_;
  Buffer weights_, master_weights_, gradients_, inv_freq_dev_;
  Params params_, master_, grads_;
  std::vector<float> inv_freq_;
  Tensor inv_freq_t_;
};

// dst's weights become src's (same architecture; any devices and dtypes). Device to device where
// both are on CUDA (bf16 copied as is), through the host otherwise. For reference refreshes.
void copy_weights(Transformer& dst, const Transformer& src);

// A sequence classifier (reward model) on `device` with `cfg` (num_labels > 0; lm's architecture
// otherwise) whose backbone is lm's weights and whose score head is drawn from normal(0, std) with
// the stream init_random(seed) would use. lm's lm_head is not used.
Transformer classifier_from(const Transformer& lm, const ModelConfig& cfg, uint64_t seed, Device device,
                            float std = 0.02f);

// What the training forward saves for the backward, per layer, for T tokens. With recompute on,
// ln1, ln2 and act stay empty: the backward recomputes them from x_in, x_mid, gate and up.
struct LayerActivations {
  Tensor x_in, ln1, ln1_rstd;     // (T, C), (T, C), (T)
  Tensor q_pre, k_pre, q_rstd, k_rstd;  // qwen3 q/k norm inputs (T, NH|NKV, HD) and rstd
  Tensor q, k, v;                 // after bias, norm and RoPE: (T, NH, HD), (T, NKV, HD) x2
  Tensor att, lse;                // (T, NH, HD), (T, NH)
  Tensor x_mid, ln2, ln2_rstd;    // (T, C), (T, C), (T)
  Tensor gate, up, act;           // (T, I) x3
};

// Whether the backward recomputes the cheap activations (the two RMSNorm outputs and the SwiGLU
// output: about a third of the activation memory) instead of saving them. Exact: the recomputed
// values are bitwise those of the forward. Auto: on for CUDA, off on CPU.
enum class Recompute : uint8_t { Auto, Off, On };

// Forward/backward state for one packed batch; memory comes from arenas on the model's device,
// reused across steps (they grow to the peak once).
class TrainState {
 public:
  // Runs the forward over `batch` and returns logp (T) f32 on the model's device: log p(targets[t] |
  // tokens <= t) at the given temperature (0 at sequence ends). entropy (T) is filled too. A
  // trainable model's forward saves what backward needs; a non-trainable one keeps only one layer
  // at a time (inference memory).
  Tensor forward(const Transformer& m, const Batch& batch, float temperature = 1.0f);
  // Backward from dlogp (T) = d loss / d logp (host); accumulates into m.grads(). m must be the
  // (trainable) model of the last forward.
  void backward(Transformer& m, const std::vector<float>& dlogp);
  // The forward of a sequence classifier (reward model, config num_labels > 0): scores (T,
  // num_labels) f32 on the host, the score head applied to every token's final-norm hidden state.
  // A sequence's reward is the score at its last token. Saves what score_backward needs.
  std::vector<float> score_forward(const Transformer& m, const Batch& batch);
  // Backward from dscore (T, num_labels) = d loss / d score (host); accumulates into m.grads().
  void score_backward(Transformer& m, const std::vector<float>& dscore);
  const Tensor& logp() const { return logp_; }        // on the model's device
  const Tensor& entropy() const { return entropy_; }  // on the model's device
  std::vector<float> logp_host() const;
  std::vector<float> entropy_host() const;
  // Bytes the activation arena peaked at (forward's saved activations and backward's gradients).
  size_t activation_bytes() const { return arena_.peak(); }
  // Frees the arenas (they grow back on the next forward), e.g. to leave GPU memory to rollouts.
  void release();
  int64_t vocab_chunk = 4096;
  Recompute recompute = Recompute::Auto;
  // When set, the backwards call it with decreasing offsets into the flat gradient buffer: the
  // gradients at offsets >= the argument are final for this backward (their kernels are queued).
  // Data parallelism all-reduces them while the layers below are still being computed.
  std::function<void(int64_t)> on_grads_final;

 private:
  // The layers and the final norm, shared by both heads: fills lnf (T, C).
  void forward_trunk(const Transformer& m, const Batch& batch);
  // From dlnf (T, C) down to the embedding.
  void backward_trunk(Transformer& m, const Tensor& dlnf);
  enum class Head : uint8_t { LogProbs, Score };

  Arena arena_, scratch_;
  const Transformer* model_ = nullptr;
  const Batch* batch_ = nullptr;
  float temperature_ = 1.0f;
  bool saved_ = false, recompute_ = false;
  Tensor ids_, pos_, cu_, targets_;
  std::vector<LayerActivations> acts_;
  Tensor x_final, lnf, lnf_rstd, logp_, lse_, entropy_;
  Head head_ = Head::LogProbs;
  Tensor score_w_;  // (NP, C): the score head padded with zero rows (see score_forward)
};

// Key/value cache for generation: per layer (S slots, L rows, NKV, HD) in the compute dtype.
struct KVCache {
  KVCache(const ModelConfig& c, int64_t slots, int64_t max_len, Device device = Device::CPU,
          DType dtype = DType::F32);
  // On the model's device, in its compute dtype.
  KVCache(const Transformer& m, int64_t slots, int64_t max_len);
  // Copies rows [0, rows) of slot src into slot dst in every layer (a shared prompt prefix).
  void copy_prefix(int64_t src, int64_t dst, int64_t rows);
  int64_t slots, max_len;
  Device device;
  DType dtype;
  std::vector<Buffer> k, v;
  std::vector<Tensor> k_t, v_t;
};

// Cached forward for generation: token t (ids[t]) is at row pos[t] of cache slot slots[t]; its keys
// and values are written into the cache and it attends to rows [0, pos[t]] of its slot. Returns
// logits (R, V) for the rows listed in `logit_rows` (e.g. each prompt's last token), in `arena`,
// which must be on the model's device: in the compute dtype by default, or f32 (read them with
// to_host_f32, tensor/device_memory.h). A batch of whole prompts from position 0 (a fresh prefill)
// runs the packed training attention over its own tokens.
Tensor forward_cached(const Transformer& m, KVCache& cache, const std::vector<int32_t>& ids,
                      const std::vector<int32_t>& slots, const std::vector<int32_t>& pos,
                      const std::vector<int32_t>& logit_rows, Arena& arena,
                      std::optional<DType> logits_dtype = std::nullopt);

// The same forward from inputs already on the model's device (i32), unchecked: the decode step that
// CUDA graphs capture. logit_rows empty: logits for every token. cu_seqlens (B + 1), when given,
// says the tokens are B whole prompts from position 0 (packed attention).
// attention_workspace (f32, optional): the decode attention's split scratch
// (ops::attention_cached_workspace); taken from the arena when not given.
struct CachedInputs {
  Tensor ids, slots, pos, logit_rows, cu_seqlens, attention_workspace;
};
Tensor forward_cached(const Transformer& m, KVCache& cache, const CachedInputs& in, Arena& arena,
                      DType logits_dtype);

}  // namespace r1::model

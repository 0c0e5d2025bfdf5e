#pragma once
// The decoder-only transformer (Qwen2/2.5, Llama 3, Qwen3), llm.c style: an explicit forward that
// saves what the backward needs, an explicit backward to every parameter, and a cached forward for
// generation, composed from the blocks in blocks/ (each layer kind written once) by the plan in
// layer_plan.h. Architectures differ by ModelConfig data only. One code path serves both devices.
// The training forward/backward is TrainState (train_state.h), generation forward_cached over a
// KVCache (kv_cache.h).
//
// ---- Devices and precision ------------------------------------------------------------------
//   CPU  : everything f32. params() are the weights the optimizer updates; master() is the same.
//   CUDA : params() are the bf16 compute weights on the GPU (what every forward reads), master()
//          the fp32 weights AdamW updates, grads() fp32; all three are flat buffers of one layout
//          (params.h). A non-trainable model (reference models) keeps only the bf16 params().
//          master() may live in pinned host memory instead (MasterPlace::Host) for an optimizer that
//          runs on the CPU: the GPU then holds the bf16 weights and the gradients only.
//          Activations and activation gradients are bf16; per-row statistics (rstd, lse, logp,
//          entropy) stay f32. AdamW moments are fp32 on the device (optim/optimizer.h).
//
// ---- Typical use (bench/bench_train_gpu.cpp, src/cli/cmd_logprobs.cpp, the trainers) ---------
//   model::Transformer m(cfg, Device::CUDA);         // or load_model(dir, Device::CUDA)
//   m.init_random(seed);                             // on the host, then uploaded
//   optim::AdamW opt(optim::param_slices(m), adamw_cfg, m.device());
//   model::TrainState st;                            // reuse across steps: its arenas keep their peak
//   st.forward(m, batch);                            // logp (T) on the model's device
//   std::vector<float> logp = st.logp_host();        // host copy for the loss
//   m.zero_grads(); st.backward(m, dlogp_host);      // accumulates into m.grads()
//   auto clip = optim::clip_grad_norm(m.grads().flat, 1.0);      // global norm on the device
//   optim::optimizer_step(opt, m, lr, clip.scale);   // master update + bf16 params in one pass
//   model::copy_weights(reference, m);               // reference refresh, any devices
//   model::save_model(m, dir);                       // downloads to the host
// Generation: KVCache cache(m, slots, len); Arena a(0, m.device());
//   forward_cached(m, cache, ...) returns logits on the model's device; to_host_f32() reads them.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/expert_routes.h"
#include "model/layer_plan.h"
#include "model/lora.h"
#include "model/params.h"
#include "model/random_init.h"
#include "tensor/tensor.h"

namespace r1::model {

// The lm head's vocabulary chunk: the rows of the head one product covers when log-probs are taken
// (TrainState::vocab_chunk) and when a sampler forms the trainer's logits (CachedInputs), so the two
// meet the same products.
inline constexpr int64_t kVocabChunk = 4096;

// A packed batch: B sequences concatenated, sequence b owning tokens [cu_seqlens[b], cu_seqlens[b+1]).
struct Batch {
  std::vector<int32_t> ids;         // (T)
  std::vector<int32_t> positions;   // (T) position within its sequence
  std::vector<int32_t> cu_seqlens;  // (B + 1)
  std::vector<int32_t> targets;     // (T) next token within the sequence, -1 at each sequence end
  // Routing replay (mixture-of-experts models): the experts each token is sent to instead of the
  // router's choice (rows of -1 are routed); empty: every token is routed.
  ExpertRoutes replay;
  int64_t tokens() const { return int64_t(ids.size()); }
  int64_t sequences() const { return int64_t(cu_seqlens.size()) - 1; }
};
// Packs sequences into a Batch with positions 0..len-1 and next-token targets.
Batch pack_sequences(const std::vector<std::vector<int32_t>>& seqs);

// Where a trainable model keeps its separate fp32 master copy: beside the compute weights on their
// device, or in pinned host memory, where an offloaded optimizer updates it (optim/optimizer.h).
enum class MasterPlace : uint8_t { Device, Host };

class Transformer {
 public:
  // A model of the given architecture with zero weights (see init_random / load_model) on `device`.
  // trainable = false: no gradients and, on CUDA, no fp32 master copy (a frozen reference model).
  // compute: the dtype every forward computes in; by default f32 on CPU and bf16 on CUDA (f32 on
  // CUDA is the reference precision for comparing the GPU path with the CPU one).
  // master: where a separate fp32 master copy lives (see MasterPlace).
  // allocate = false: no weight, master or gradient buffer at all, as after release_weights(): a
  // model that is sharded from the start (optim::ShardedWeights fills each rank's shard from a
  // WeightSource), so no rank ever holds the whole weights.
  explicit Transformer(ModelConfig cfg, Device device = Device::CPU, bool trainable = true,
                       std::optional<DType> compute = std::nullopt, MasterPlace master = MasterPlace::Device,
                       bool allocate = true);
  Transformer(Transformer&&) = default;

  const ModelConfig& config() const { return cfg_; }
  const std::vector<ParamSpec>& specs() const { return plan_.specs; }
  // The blocks of each layer and where each layer's parameters lie in the flat buffers.
  const ModelPlan& plan() const { return plan_; }
  Device device() const { return device_; }
  DType compute_dtype() const { return params_.flat.dtype; }  // by default F32 on CPU, BF16 on CUDA
  // Whether training can update it: all weights, or with LoRA the adapters.
  bool trainable() const { return trainable_ || has_lora(); }
  // The weights every forward computes with (compute dtype, on device()).
  Params& params() { return params_; }
  const Params& params() const { return params_; }
  // The fp32 weights the optimizer updates: params() when they are f32, else a separate copy
  // (empty views when not trainable). After changing them directly, call refresh_compute_weights().
  Params& master() { return compute_dtype() == DType::F32 ? params_ : master_; }
  const Params& master() const { return compute_dtype() == DType::F32 ? params_ : master_; }
  // Whether master() is a separate fp32 copy whose updates must be rounded into params().
  bool separate_master() const { return trainable_ && compute_dtype() != DType::F32; }
  // Moves a separate master copy to `place` (nothing without one, or when it is there already).
  void place_master(MasterPlace place);
  // The fp32 weights when they are host memory, to be read or written in place (a CPU model's
  // params(), or a master copy kept on the host; call refresh_compute_weights() after writing);
  // null otherwise.
  float* host_weights();
  const float* host_weights() const;
  // fp32 gradients of what training updates: master()'s layout, or with LoRA only the adapters'
  // views (the layers' Linear lora_a/lora_b; the frozen base's views are empty).
  // After release_grads(), the non-const grads() allocates the buffer again, zeroed.
  Params& grads();
  const Params& grads() const { return grads_; }
  void zero_grads();
  // Frees the full-model gradient buffer (not LoRA's adapters'): ZeRO-2 keeps only its shard of
  // the gradients between steps. The next grads() or zero_grads() brings it back zeroed.
  void release_grads();
  bool grads_released() const { return trainable_ && gradients_.size() == 0; }
  // Gradients by unit (parallel.shard: full, optim/sharded_weights.h): frees the gradient buffer for
  // good; grads() keeps its views with their shapes pointing at nothing, and neither grads() nor
  // zero_grads() allocates, until a unit's gradient buffer is bound to them for its backward.
  void unbind_grads();
  bool grads_unbound() const { return grads_unbound_; }
  int64_t grad_bytes() const { return int64_t(gradients_.size() + adapter_grads_.size()); }

  // What an optimizer updates: three flat buffers of one layout (specs): the fp32 weights, their
  // gradients, and the compute copy each update is rounded into (empty when the fp32 weights are
  // the compute weights). The whole model, or with LoRA only its adapters. grads is empty while
  // release_grads() has the buffer freed.
  struct Trainable {
    const std::vector<ParamSpec>* specs = nullptr;
    Tensor master, grads, compute;
  };
  Trainable trainable_weights();

  // LoRA (model/lora.h): adapters on the linears `lora` targets, A drawn from `seed`, B zero; the
  // base is frozen from then on (its fp32 copy and gradients are dropped) and training updates the
  // adapters only. Once per model; not for sequence classifiers.
  void add_lora(const LoraConfig& lora, uint64_t seed);
  bool has_lora() const { return lora_.enabled(); }
  const LoraConfig& lora() const { return lora_; }
  const std::vector<ParamSpec>& adapter_specs() const { return adapter_specs_; }
  // The adapters as host f32 in their flat layout, and back (the fp32 copy and the compute copy).
  std::vector<float> adapter_host() const;
  void set_adapter(const float* host_flat);

  // HF initialisation: normal(0, std) for matrices and embeddings, ones for norms, zeros for biases.
  // Drawn on the host (the same numbers on every device), then uploaded.
  void init_random(uint64_t seed, float std = kInitStd);
  // Fully sharded training (optim/sharded_weights.h): frees the weight buffer (and a separate fp32
  // master copy's); params() (and master()) keep their views with their shapes pointing at nothing
  // (and an empty flat) until a unit of gathered weights is bound to them. restore_weights()
  // allocates the compute weights again (zeroed) and binds every view to them, and with `master`
  // the master copy too (where it was: the device, or pinned host memory); without it a separate master stays released (master()'s
  // views point at nothing: what reads the whole weights only, such as rollouts, needs none).
  // Whole-model reads (weights_host, set_weights) fail while released.
  void release_weights();
  void restore_weights(bool master = true);
  bool master_released() const { return separate_master() && master_weights_.size() == 0; }
  bool weights_released() const { return weights_.size() == 0 && plan_.total > 0; }
  // All weights as host f32, in the flat layout: the master copy if there is one, else params().
  std::vector<float> weights_host() const;
  // Sets every weight from host f32 in the flat layout (master and, rounded, the compute weights).
  void set_weights(const float* host_flat);
  // Rounds the trainable fp32 weights into their compute copy after they were written directly
  // (CUDA; nothing on CPU): on the device, or from a host master copy in chunks.
  void refresh_compute_weights();
  const Tensor& rope_inv_freq() const { return inv_freq_t_; }  // f32 on device()

 private:
  void allocate_grads();  // the full-model gradient buffer, zeroed, and grads()' views into it
  void init_rope();       // the rotary frequencies, on the model's device
  void check_weights_held(const char* what) const;
  ModelConfig cfg_;
  ModelPlan plan_;
  Device device_;
  bool trainable_;
  bool grads_unbound_ = false;
  Buffer weights_, master_weights_, gradients_, inv_freq_dev_;
  Device master_device_ = Device::CPU;  // where a released master copy comes back (release_weights)
  Params params_, master_, grads_;
  LoraConfig lora_;
  std::vector<ParamSpec> adapter_specs_;
  Buffer adapter_weights_, adapter_master_, adapter_grads_;  // compute dtype, f32 (CUDA), f32
  Tensor adapter_flat_, adapter_master_flat_;
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

}  // namespace r1::model

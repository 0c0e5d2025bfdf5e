#pragma once
// The training forward and backward of a Transformer over a packed Batch: the layers' blocks
// (blocks/decoder_layer.h) in order, saving what the backward reads (or, checkpointing, only each
// layer's input), then the log-prob head (or a classifier's score head); the backward in reverse,
// accumulating into the model's gradients.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/blocks/decoder_layer.h"
#include "model/transformer.h"
#include "model/weight_units.h"
#include "tensor/tensor.h"

namespace r1::model {

// Whether the backward recomputes the cheap activations (the two RMSNorm outputs and the SwiGLU
// output: about a third of the activation memory) instead of saving them. Exact: the recomputed
// values are bitwise those of the forward. Auto: on for CUDA, off on CPU.
enum class Recompute : uint8_t { Auto, Off, On };

// Activation checkpointing per layer: the forward keeps only each layer's input, and the backward
// runs the layer's forward again from it before going back through the layer. Exact: the same ops
// on the same input give bitwise the values a saving forward keeps (LoRA dropout masks included:
// they follow the seed, the step, the batch and the adapter, never a call count). Costs one more
// forward of the layers; keeps L + 1 (T, C) tensors and one layer's activations instead of every
// layer's (activation_memory.h). Auto: on for a forward whose saved activations would not fit the
// memory free for them (checkpointing_needed).
enum class Checkpointing : uint8_t { Auto, Off, On };
// "auto" | "on" | "off"; anything else fails naming `what` (a recipe key).
Checkpointing parse_checkpointing(const std::string& s, const std::string& what);

// Whether a backward follows the forward. None (reference log-probs, evaluation, scoring) saves
// nothing whatever the model, keeps one layer's memory at a time and draws no dropout masks.
enum class Backward : uint8_t { Follows, None };

// Forward/backward state for one packed batch; memory comes from arenas on the model's device,
// reused across steps (they grow to the peak once).
class TrainState {
 public:
  // Runs the forward over `batch` and returns logp (T) f32 on the model's device: log p(targets[t] |
  // tokens <= t) at the given temperature (0 at sequence ends). entropy (T) is filled too. A
  // trainable model's forward saves what backward needs unless `then` is Backward::None; a
  // non-trainable one keeps only one layer at a time (inference memory).
  Tensor forward(const Transformer& m, const Batch& batch, float temperature = 1.0f,
                 Backward then = Backward::Follows);
  // Backward from dlogp (T) = d loss / d logp (host); accumulates into m.grads(). m must be the
  // (trainable) model of the last forward.
  void backward(Transformer& m, const std::vector<float>& dlogp);
  // The forward of a sequence classifier (reward model, config num_labels > 0): scores (T,
  // num_labels) f32 on the host, the score head applied to every token's final-norm hidden state.
  // A sequence's reward is the score at its last token. Saves what score_backward needs.
  std::vector<float> score_forward(const Transformer& m, const Batch& batch, Backward then = Backward::Follows);
  // Backward from dscore (T, num_labels) = d loss / d score (host); accumulates into m.grads().
  void score_backward(Transformer& m, const std::vector<float>& dscore);
  const Tensor& logp() const { return logp_; }        // on the model's device
  const Tensor& entropy() const { return entropy_; }  // on the model's device
  std::vector<float> logp_host() const;
  std::vector<float> entropy_host() const;
  // Load balance of the last forward: per layer, the tokens routed to each expert (E entries for a
  // mixture-of-experts layer, empty for a dense one).
  const std::vector<std::vector<int64_t>>& expert_counts() const { return expert_counts_; }
  // Routing replay in the last forward (Batch::replay), summed over the MoE layers: tokens routed
  // (T per layer), replayed, and replayed to experts that are not the router's own choice.
  struct ReplayCounts {
    int64_t routed = 0, replayed = 0, replaced = 0;
  };
  const ReplayCounts& replay_counts() const { return replay_counts_; }
  // Bytes the activation arena peaked at (forward's saved activations and backward's gradients;
  // checkpointing, the layers' inputs).
  size_t activation_bytes() const { return arena_.peak(); }
  // Bytes the checkpointing backward's arena for the one recomputed layer peaked at (0 without).
  size_t recomputed_layer_bytes() const { return layer_.peak(); }
  // Bytes the per-layer temporaries peaked at.
  size_t scratch_bytes() const { return scratch_.peak(); }
  // All three: what the training passes held at most.
  size_t peak_bytes() const { return arena_.peak() + layer_.peak() + scratch_.peak(); }
  // Whether the last forward checkpointed (saved only the layers' inputs).
  bool checkpointed() const { return checkpoint_; }
  // Frees the arenas (they grow back on the next forward), e.g. to leave GPU memory to rollouts.
  void release();
  int64_t vocab_chunk = kVocabChunk;
  Recompute recompute = Recompute::Auto;
  Checkpointing checkpointing = Checkpointing::Auto;
  // The bytes Auto lets a forward's activations take; 0: 90% of the device's free memory plus
  // what this state's arenas already hold (checkpointing_needed). A forward that would not fit
  // even checkpointed fails before computing, naming the sizes (on the CPU only with a budget set:
  // host memory can swap).
  size_t memory_budget = 0;
  // LoRA (model/lora.h): whether the adapters take part (off: the base model, e.g. the KL
  // reference with no second copy), and which dropout masks a training forward draws: fixed by
  // (dropout_seed, dropout_step, the batch's tokens), so a trainer that sets the step resumes exactly.
  // `dropout` false: no dropout masks in any pass (evaluation, as PEFT's model.eval()).
  bool adapters = true, dropout = true;
  uint64_t dropout_seed = 0, dropout_step = 0;
  // When set, the backwards call it with decreasing offsets into the flat gradient buffer: the
  // gradients at offsets >= the argument are final for this backward (their kernels are queued).
  // Data parallelism all-reduces them while the layers below are still being computed.
  std::function<void(int64_t)> on_grads_final;
  // When set, the passes acquire each unit of weights (embedding, layer, head) just before using
  // it and release it right after (model/weight_units.h): a rank holding a shard of the weights
  // gathers them unit by unit. Null: the model's weights are read directly.
  WeightUnits* weight_units = nullptr;
  // The acquires and releases of one pass (a forward, and a backward unless `then` is None or the
  // model is not trainable) without computing anything: a rank with fewer micro-batches than
  // another takes part in the others' gathers with it. Nothing without weight_units.
  void idle_pass(const Transformer& m, Backward then = Backward::Follows);

 private:
  // weight_units' acquire (with the prefetch hint of the unit after it) and release, if set.
  void acquire(WeightUnit u, WeightUnit next);
  void release(WeightUnit u);
  // weight_units' begin_grads and end_grads, if set.
  void begin_grads(WeightUnit u);
  void end_grads(WeightUnit u);
  // The layers and the final norm, shared by both heads: fills lnf (T, C).
  void forward_trunk(const Transformer& m, const Batch& batch, Backward then);
  // Whether this forward (saved_ set, the batch known) checkpoints.
  bool wants_checkpoint(const Transformer& m) const;
  // From dlnf (T, C) down to the embedding.
  void backward_trunk(Transformer& m, const Tensor& dlnf);
  // Layer l's forward again from its saved input, keeping in s (in layer_) what its backward reads.
  void recompute_layer(const Transformer& m, int l, LayerSaved& s);
  // What the blocks see of this pass (after forward_trunk has set the batch): saving into `saved`
  // (null: nothing), temporaries in scratch_.
  Pass pass(const Transformer& m, Arena* saved);
  // Batch::replay on the device: per layer (T, K) i32, empty for dense layers (all, without a replay).
  std::vector<Tensor> upload_replay(const ModelConfig& c, const ExpertRoutes& r, int64_t T);
  // Checkpointing: layer l's experts as the forward chose them (T, K), kept in replay_ for the
  // recomputation (over the batch's replay, which they contain).
  void keep_forward_routes(int l, const std::vector<int32_t>& chosen, int64_t T, int64_t K);
  enum class Head : uint8_t { LogProbs, Score };

  // arena_: what lives across layers (saved activations, or the layers' inputs when checkpointing,
  // and the gradients that run down the layers); layer_: the one recomputed layer's activations;
  // scratch_: one layer's temporaries, rewound for every layer.
  Arena arena_, layer_, scratch_;
  const Transformer* model_ = nullptr;
  const Batch* batch_ = nullptr;
  float temperature_ = 1.0f;
  bool saved_ = false, recompute_ = false, checkpoint_ = false;
  Tensor ids_, pos_, cu_, targets_;
  std::vector<LayerSaved> acts_;  // per layer (blocks/decoder_layer.h); checkpointing, only x_in
  std::vector<std::vector<int64_t>> expert_counts_;
  // Per layer (T, K) i32: Batch::replay for the forward; checkpointing, then the experts the
  // forward used, which the recomputation replays.
  std::vector<Tensor> replay_;
  ReplayCounts replay_counts_;
  Tensor x_final, lnf, lnf_rstd, logp_, lse_, entropy_;
  Head head_ = Head::LogProbs;
  Tensor score_w_;  // (NP, C): the score head padded with zero rows (see score_forward)
};

}  // namespace r1::model

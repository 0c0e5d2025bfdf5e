#pragma once
// The training forward and backward of a Transformer over a packed Batch: the layers' blocks
// (blocks/decoder_layer.h) in order, saving what the backward reads, then the log-prob head (or a
// classifier's score head); the backward in reverse, accumulating into the model's gradients.
#include <cstdint>
#include <functional>
#include <vector>

#include "model/blocks/decoder_layer.h"
#include "model/transformer.h"
#include "tensor/tensor.h"

namespace r1::model {

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
  // Load balance of the last forward: per layer, the tokens routed to each expert (E entries for a
  // mixture-of-experts layer, empty for a dense one).
  const std::vector<std::vector<int64_t>>& expert_counts() const { return expert_counts_; }
  // Routing replay in the last forward (Batch::replay), summed over the MoE layers: tokens routed
  // (T per layer), replayed, and replayed to experts that are not the router's own choice.
  struct ReplayCounts {
    int64_t routed = 0, replayed = 0, replaced = 0;
  };
  const ReplayCounts& replay_counts() const { return replay_counts_; }
  // Bytes the activation arena peaked at (forward's saved activations and backward's gradients).
  size_t activation_bytes() const { return arena_.peak(); }
  // Frees the arenas (they grow back on the next forward), e.g. to leave GPU memory to rollouts.
  void release();
  int64_t vocab_chunk = 4096;
  Recompute recompute = Recompute::Auto;
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

 private:
  // The layers and the final norm, shared by both heads: fills lnf (T, C).
  void forward_trunk(const Transformer& m, const Batch& batch);
  // From dlnf (T, C) down to the embedding.
  void backward_trunk(Transformer& m, const Tensor& dlnf);
  // Batch::replay on the device: per layer (T, K) i32, empty for dense layers (all, without a replay).
  std::vector<Tensor> upload_replay(const ModelConfig& c, const ExpertRoutes& r, int64_t T);
  // What the blocks see of this pass (after forward_trunk has set the batch).
  Pass pass(const Transformer& m);
  enum class Head : uint8_t { LogProbs, Score };

  Arena arena_, scratch_;
  const Transformer* model_ = nullptr;
  const Batch* batch_ = nullptr;
  float temperature_ = 1.0f;
  bool saved_ = false, recompute_ = false;
  Tensor ids_, pos_, cu_, targets_;
  std::vector<LayerSaved> acts_;  // per layer (blocks/decoder_layer.h)
  std::vector<std::vector<int64_t>> expert_counts_;
  ReplayCounts replay_counts_;
  Tensor x_final, lnf, lnf_rstd, logp_, lse_, entropy_;
  Head head_ = Head::LogProbs;
  Tensor score_w_;  // (NP, C): the score head padded with zero rows (see score_forward)
};

}  // namespace r1::model

#pragma once
// Batch-invariant forward numerics (recipe key rollout.exact_logprobs). While the mode is on, every
// op of a forward pass computes a row's result in an order fixed by that row alone: never by how
// many rows share the call (a decode step's batch, a prefill, a training micro-batch), where the row
// sits among them, or which of those calls it is. A token's logits are then the same bits whether
// the sampler decoded it alone, in a batch, or the trainer scored it, and the sampler's log-probs
// are the trainer's (ops::lm_head_logits, ops::logprobs_of_logits).
//
// What it changes. CPU: the forward GEMMs (linear_forward and the experts' and the lm head's
// products) take one fixed block shape whatever the rows (kernels/cpu/gemm.cpp's sgemm_rows); every
// other forward op already reduces per row in one order (attention: one routine for packed and
// cached keys). CUDA: the forward's cuBLASLt plans sum K in one pass (no split-K, no workspace)
// with one algorithm per product for every M, the bias epilogue's use decided at the same reference
// rows (cuda/gemm.cpp), RMSNorm keeps one partition
// of a row whatever its alignment, and the decode attention runs the training forward's key tiles
// and tile code (cuda/decode_exact.cu); the experts' grouped GEMM and the other ops are per-row
// already. Attention outside bf16 at the tensor-core head dims, and MLA's absorbed decode, fail
// while the mode is on. Backward ops are unaffected: only the forward's bits have to agree.
//
// Process-wide, like the ops' stream: a GRPO run sets it once before it builds its engine.
namespace r1::ops {

bool batch_invariant();
void set_batch_invariant(bool on);

// Sets the mode for a scope and restores the one before.
class BatchInvariantScope {
 public:
  explicit BatchInvariantScope(bool on) : before_(batch_invariant()) { set_batch_invariant(on); }
  ~BatchInvariantScope() { set_batch_invariant(before_); }
  BatchInvariantScope(const BatchInvariantScope&) = delete;
  BatchInvariantScope& operator=(const BatchInvariantScope&) = delete;

 private:
  bool before_;
};

}  // namespace r1::ops

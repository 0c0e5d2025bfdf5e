#pragma once
// Supervised fine-tuning step: next-token cross-entropy on the loss-masked tokens of each sequence
// (a completion, or a conversation's assistant turns; the rest is context), averaged over all of
// them in the batch, with gradient accumulation over packed micro-batches of a token budget.
#include <cstdint>
#include <vector>

#include "data/sft_data.h"
#include "model/transformer.h"
#include "model/train_state.h"
#include "dist/comm.h"
#include "optim/data_parallel.h"

namespace r1::train {

// tokens plus a per-token loss mask (data/sft_data.h builds them from rows).
using SftSequence = data::SftSequence;

// The prompt/completion form, the loss on the completion: the same step as its SftSequence
// (data::prompt_completion_sequence).
struct SftExample {
  std::vector<int32_t> prompt, completion;
};

struct SftStepResult {
  double loss = 0;            // mean cross-entropy per loss token
  int64_t tokens = 0;         // loss tokens
  int64_t packed_tokens = 0;  // all tokens through the forward and backward
  int64_t micro_batches = 0, checkpointed = 0;  // this rank's, and those whose forward checkpointed
  int64_t idle_passes = 0;  // parallel.shard full, all ranks': passes run only to join others' gathers
  double grad_norm = 0;
  bool skipped = false;  // non-finite gradients: no update
};

// One optimizer step over `batch`: a loss token k of a sequence contributes -log p(token k) from
// row k-1; micro-batches are token-balanced within micro_batch_tokens (train/micro_batches.h; a
// longer sequence alone).
// Data-parallel: every rank passes the whole batch and trains on its contiguous share of it; the
// loss, tokens and packed_tokens are the whole batch's.
SftStepResult sft_step(model::Transformer& m, model::TrainState& state, optim::DataParallel& opt,
                       const std::vector<SftSequence>& batch, double lr, double max_grad_norm,
                       int64_t micro_batch_tokens = 8192);
SftStepResult sft_step(model::Transformer& m, model::TrainState& state, optim::DataParallel& opt,
                       const std::vector<SftExample>& batch, double lr, double max_grad_norm,
                       int64_t micro_batch_tokens = 8192);

// The same loss without gradients or an update (held-out loss): mean cross-entropy per loss token.
struct SftLoss {
  double loss = 0;
  int64_t tokens = 0;
};
// With `ranks` (a host comm), each rank evaluates its share of `data` and all get the whole result.
SftLoss sft_loss(const model::Transformer& m, model::TrainState& state, const std::vector<SftSequence>& data,
                 int64_t micro_batch_tokens = 8192, dist::Comm* ranks = nullptr);

}  // namespace r1::train

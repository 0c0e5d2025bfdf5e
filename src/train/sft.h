#pragma once
// Supervised fine-tuning step: next-token cross-entropy on completion tokens only (the prompt is
// context), averaged over all completion tokens of the batch, with gradient accumulation over
// micro-batches of a token budget.
#include <cstdint>
#include <vector>

#include "model/transformer.h"
#include "train/optimizer.h"

namespace r1::train {

struct SftExample {
  std::vector<int32_t> prompt, completion;
};

struct SftStepResult {
  double loss = 0;        // mean cross-entropy per completion token
  int64_t tokens = 0;     // completion tokens
  double grad_norm = 0;
  bool skipped = false;   // non-finite gradients: no update
};

SftStepResult sft_step(model::Transformer& m, model::TrainState& state, AdamW& opt,
                       const std::vector<SftExample>& batch, double lr, double max_grad_norm,
                       int64_t micro_batch_tokens = 8192);

}  // namespace r1::train

#pragma once
// Reward-model training step: the Bradley–Terry loss −log σ(r_chosen − r_rejected) over preference
// pairs, each reward the score head's output at the last token (EOS) of prompt + response, averaged
// over the pairs of a batch, with gradient accumulation over micro-batches of whole pairs.
#include <cstdint>
#include <vector>

#include "model/transformer.h"
#include "model/train_state.h"
#include "optim/data_parallel.h"
#include "optim/optimizer.h"

namespace r1::train {

// One preference: the same prompt answered twice, each sequence whole (prompt + response + EOS).
struct PreferencePair {
  std::vector<int32_t> chosen, rejected;
};

struct RmStats {
  double loss = 0;      // mean −log σ(margin) over pairs
  double accuracy = 0;  // share of pairs with r_chosen > r_rejected
  double margin = 0;    // mean r_chosen − r_rejected
  int64_t pairs = 0, tokens = 0;
  int64_t micro_batches = 0, checkpointed = 0;  // forwards, and those that checkpointed
};

struct RmStepResult : RmStats {
  double grad_norm = 0;
  bool skipped = false;  // non-finite gradients: no update
};

// −log σ(margin), computed without overflow for margins of either sign.
double bradley_terry_loss(double margin);

// The loss over `pairs` and, with `backward`, its gradient accumulated into m.grads() (the caller
// zeroes them). Pairs are packed into token-balanced forward passes of at most micro_batch_tokens
// (train/micro_batches.h; a longer pair alone). Without `backward` the forwards save nothing.
RmStats rm_loss(model::Transformer& m, model::TrainState& state, const std::vector<PreferencePair>& pairs,
                int64_t micro_batch_tokens, bool backward);

// One optimizer step on a batch of pairs: gradients of the mean loss, clipped to max_grad_norm.
RmStepResult rm_step(model::Transformer& m, model::TrainState& state, optim::DataParallel& opt,
                     const std::vector<PreferencePair>& batch, double lr, double max_grad_norm,
                     int64_t micro_batch_tokens = 8192);

}  // namespace r1::train

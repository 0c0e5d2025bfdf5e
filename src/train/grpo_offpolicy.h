#pragma once
// The sampler is not the trainer. Its log-probs come from the decode path (other kernels, other
// batch shapes, bf16 on the GPU), so using them as pi_old makes the first update's ratio differ
// from 1 and clips tokens for no reason. Two remedies, as the Python stacks ship them:
//   grpo.old_logprobs: trainer   pi_old is recomputed with the trainer's own forward, through the
//                                update's micro-batches, before the first update (one extra
//                                forward pass; the ratio of the first mini-batch is then exactly 1
//                                on the CPU).
//   grpo.is_correction: tis|mis  and the sampler/trainer mismatch is corrected per token with
//                                w = pi_old_trainer / pi_sampler: truncated importance sampling
//                                multiplies the token's policy-gradient term by min(w, is_cap);
//                                masked importance sampling drops tokens with w outside
//                                [1 / is_cap, is_cap] (weight 0; the reduction's counts stay).
// The gap |log pi_sampler - log pi_trainer| is measured whenever the trainer recomputes.
#include <cstdint>
#include <string>
#include <vector>

#include "model/train_state.h"
#include "model/transformer.h"
#include "train/grpo_update.h"

namespace r1::train {

// Fills Sequence::old_logp of every training sequence with the policy's log-probs, through the
// plan's micro-batches (the update's own packing, so the first forward of the update repeats it);
// with `replay`, the sampler's experts (routing replay, as the update).
void trainer_old_logprobs(const model::Transformer& policy, model::TrainState& state,
                          const std::vector<MiniBatch>& plan, float temperature, bool replay = false);

// The gap between the sampler's and the trainer's log-probs of the training sequences, and with a
// correction each token's weight in Sequence::is_weight.
SamplerGap correct_sampler_mismatch(std::vector<Group>& kept, IsCorrection correction, double cap);

}  // namespace r1::train

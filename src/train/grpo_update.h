#pragma once
// The later phases of a GRPO step, on the kept groups:
//   reference   the frozen model's log-probs of every completion (KL in the loss, or in the reward)
//   advantages  group-relative: (r - mean) / (std + eps), or r - mean (Dr. GRPO)
//   update      ppo_epochs passes, each cut into mini-batches (one optimizer step each), each
//               accumulated over micro-batches within a token budget
// The reference runs before the advantages because a KL penalty in the reward changes them.
#include <cstdint>
#include <vector>

#include "base/progress.h"
#include "dist/comm.h"
#include "model/train_state.h"
#include "model/transformer.h"
#include "optim/data_parallel.h"
#include "train/grpo_config.h"
#include "train/grpo_loss.h"
#include "train/grpo_rollouts.h"

namespace r1::train {

// ---- the batch's plan ----

// A training sequence and the group whose prompt it completes.
struct SeqRef {
  const Group* group = nullptr;
  Sequence* seq = nullptr;
};

// Sequences packed into one forward and backward.
using MicroBatch = std::vector<SeqRef>;

// One optimizer step's share of the batch.
struct MiniBatch {
  std::vector<MicroBatch> micro;  // this rank's training sequences, within the token budget each
  ReductionScale scale;           // the counts the loss divides by, over the whole (global) mini-batch
};

// Packs the sequences (prompt + completion each); comp_row[i] is the logp row of sequence i's
// first completion token (a row predicts the next token). With `replay` the batch carries the
// experts the sampler chose (Completion::routes; routing replay), which every sequence must have.
model::Batch pack(const MicroBatch& seqs, std::vector<int64_t>& comp_row, bool replay = false);

// Token-balanced micro-batches of at most `budget` tokens each (train/micro_batches.h; a longer
// sequence goes alone), the sequences of each in their order in `seqs`.
std::vector<MicroBatch> micro_batches(const std::vector<SeqRef>& seqs, int64_t budget);

// Cuts the step's training sequences (those in the loss) into mini_batches mini-batches of
// consecutive sequences, the same cut on every rank: `kept` are this rank's groups (with their
// Group::kept_index among all ranks' total_groups); their lengths are agreed over `host`.
std::vector<MiniBatch> plan_mini_batches(std::vector<Group>& kept, int64_t total_groups, int group_size,
                                         int mini_batches, int64_t micro_batch_tokens, dist::Comm& host);

// ---- reference ----

// Fills Sequence::ref_logp with the reference model's log-probs: the training sequences through the
// update's own micro-batches (so where the reference equals the policy, the KL is exactly 0), and
// with `masked_too` the sequences outside the loss as well (a KL penalty in the reward needs them).
// With `replay`, the sampler's experts (routing replay).
void reference_logprobs(const model::Transformer& ref, model::TrainState& state,
                        const std::vector<MiniBatch>& plan, std::vector<Group>& kept, bool masked_too,
                        int64_t micro_batch_tokens, float temperature, bool replay = false);

// KL in the reward: reward -= kl_coef * sum_t (logp_old - logp_ref) (k1 over the completion, with
// the sampler's log-probs). Returns the sum of the per-sequence KLs.
double apply_kl_penalty(std::vector<Group>& kept, double kl_coef);

// ---- advantages ----

void assign_advantages(std::vector<Group>& kept, bool scale_by_std);

// ---- update ----

// What the forwards' mixture-of-experts layers did: per layer the tokens sent to each expert
// (empty for a dense layer), and routing replay's token-layer counts (model::TrainState).
struct RouteStats {
  std::vector<std::vector<int64_t>> expert_counts;
  int64_t routed = 0, replayed = 0, replaced = 0;
  // Zero counts in the layout of c's model, so every rank reduces the same lengths.
  static RouteStats zero(const model::ModelConfig& c);
  void add(const model::TrainState& state);  // the last forward's
  void add(const RouteStats& o);
};

// |log pi_sampler - log pi_trainer| over the model's tokens compared (grpo_offpolicy.h, and the
// first update's mini-batch when pi_old is the sampler's).
struct SamplerGap {
  double max_abs = 0, sum_abs = 0;  // |log pi_sampler - log pi_trainer| over the model's tokens
  double weight_sum = 0;            // the correction weights given (1 without a correction)
  int64_t tokens = 0, masked = 0;   // tokens compared; tokens MIS dropped or TIS truncated
};

struct MiniBatchStats {
  double loss = 0, clipped = 0, kl_sum = 0, entropy_sum = 0;
  // With want_entropy (the first pass): |trainer - sampler| log-prob of the model tokens whose pi_old
  // is the sampler's (the ratio's own terms).
  SamplerGap gap;
  int64_t tokens = 0;
  int64_t checkpointed = 0;  // micro-batches whose forward kept only the layers' inputs
  bool finite = true;
  RouteStats routes;
};

// Forward, GRPO loss and backward of every micro-batch of `mb`, accumulating into the policy's
// gradients (not zeroed here). The ratio's denominator is the sampler's log-probs. With `dp`, it is
// armed before the last backward (its all-reduce overlaps that backward). With want_entropy the
// token entropies are summed. With `replay` the forwards use the sampler's experts.
MiniBatchStats accumulate_gradients(model::Transformer& policy, model::TrainState& state, const MiniBatch& mb,
                                    const GrpoLossConfig& loss, float temperature, bool want_entropy,
                                    optim::DataParallel* dp = nullptr, bool replay = false,
                                    Progress* progress = nullptr);  // advanced by one per micro-batch

struct UpdateStats {
  double loss_sum = 0, clipped = 0, kl_sum = 0, loss_tokens = 0, entropy_sum = 0, entropy_tokens = 0;
  std::vector<double> epoch_loss;  // each pass's loss (sum over its mini-batches)
  int64_t updates = 0, skipped = 0;
  double grad_norm_sum = 0;  // over the updates taken (pre-clipping global norms)
  double clipped_first = 0, tokens_first = 0;  // the first mini-batch of the first pass (pi = pi_old there)
  SamplerGap gap_first;                         // ... and its sampler/trainer gap (MiniBatchStats::gap)
  int64_t micro_batches = 0, checkpointed = 0;  // forwards and backwards, and those that checkpointed
  RouteStats routes;                            // the first pass's forwards
};

// ppo_epochs passes over `plan`, one optimizer step per mini-batch. A non-finite loss or gradient
// skips its update; `bad_steps` counts them in a row, and the run stops at cfg.max_bad_steps.
UpdateStats update_policy(model::Transformer& policy, model::TrainState& state, optim::DataParallel& dp,
                          const std::vector<MiniBatch>& plan, const GrpoConfig& cfg, double lr, int64_t step,
                          int& bad_steps);

}  // namespace r1::train

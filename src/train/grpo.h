#pragma once
// GRPO training. One step follows one batch through named phases:
//   sample -> score -> filter/refill   (grpo_rollouts.h: rollouts of the drawn prompts, rewards,
//                                       dynamic sampling round after round until the batch is full)
//   reference -> advantages -> update  (grpo_update.h: reference log-probs, group-relative
//                                       advantages, ppo_epochs x mini_batches optimizer steps)
//   record                             (grpo_stats.h: StepStats, and their metrics.jsonl names)
// Rollout and training use the same Transformer (one copy of the weights, same kernels).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/problem.h"
#include "kernels/invariance.h"
#include "model/train_state.h"
#include "model/transformer.h"
#include "optim/data_parallel.h"
#include "reward/reward.h"
#include "text/codec.h"
#include "train/grpo_config.h"
#include "train/grpo_loss.h"
#include "train/grpo_rollouts.h"
#include "train/grpo_stats.h"
#include "train/grpo_update.h"

namespace r1::train {

// One problem's completions and their scores, for samples/ files.
struct ScoredCompletion {
  int64_t problem_id;
  std::string prompt, completion;
  double reward;
  nlohmann::json details;
  nlohmann::json turns;  // multi-turn: [{"role": "model" | "observation", "text"}...]; null otherwise
};

class GrpoTrainer {
 public:
  // `render_prompt` turns a question into the prompt text (chat template or R1-Zero template).
  GrpoTrainer(model::Transformer& policy, const text::Codec& codec, const reward::Reward& reward,
              std::vector<data::Problem> train_set,
              std::function<std::string(const data::Problem&)> render_prompt, GrpoConfig cfg,
              int64_t total_steps);

  // Runs step `step` (0-based); the scored completions go to last_samples().
  StepStats step(int64_t step);
  const std::vector<ScoredCompletion>& last_samples() const { return samples_; }
  optim::DataParallel& optimizer() { return dp_; }
  // Data position, for exact resume: problems already drawn and the epoch's shuffle.
  int64_t cursor() const { return cursor_; }
  void set_cursor(int64_t c) { cursor_ = c; }
  // The rollout engine (built with the trainer; its stats() count every step's rollouts).
  const rollout::Engine& engine() const { return *engine_; }
  // Multi-turn rollouts: every completion an episode of `env` (it must outlive the trainer); null:
  // single-turn completions.
  void set_environment(const env::Environment* env);
  // The frozen reference model when it is a second copy (null without a KL term, and with LoRA,
  // whose reference is the policy with its adapters off); checkpoints save and restore it.
  model::Transformer* reference() { return ref_.get(); }
  bool has_reference() const { return ref_ != nullptr || base_reference_; }
  // Partial rollouts (train/grpo_partial.h): the groups in flight between steps, oldest first (part
  // of a checkpoint's state, for exact resume).
  const std::vector<Group>& in_flight() const { return in_flight_; }
  // Restores them from a checkpoint (in_flight_from_json): their prompt texts are rendered and the
  // finished sequences' texts decoded again.
  void set_in_flight(std::vector<Group> groups);

 private:
  // The step's batch: this rank's kept groups, and the counts every rank agrees on.
  struct Collected {
    std::vector<Group> kept;
    GroupCounts counts;
  };
  std::vector<int64_t> next_prompts(int64_t n);
  // sample -> score -> filter, round after round, until prompts_per_step groups are kept or the
  // round budget is spent.
  Collected collect(int64_t step, StepSums& sums);
  // With partial rollouts: one budgeted rollout of the groups in flight (topped up with new prompts),
  // then the finished groups, oldest first, up to prompts_per_step.
  Collected collect_partial(int64_t step, StepSums& sums);
  // One round's sample and score phases on this rank's draws; the scored texts are added to `texts`.
  std::vector<Group> sample_and_score(const std::vector<PromptDraw>& draws, uint64_t seed,
                                      std::vector<int64_t>& too_long, StepSums& sums,
                                      std::vector<std::string>& texts);
  void keep_samples(const std::vector<Group>& groups);

  model::Transformer& policy_;
  const text::Codec& codec_;
  const reward::Reward& reward_;
  std::vector<data::Problem> train_;
  std::function<std::string(const data::Problem&)> render_;
  GrpoConfig cfg_;
  ops::BatchInvariantScope invariant_;  // rollout.exact_logprobs: on for the trainer's life, before the engine
  int64_t total_steps_;
  optim::DataParallel dp_;
  std::unique_ptr<model::Transformer> ref_;
  bool base_reference_ = false;  // LoRA: the reference is policy_ with the adapters off
  model::TrainState state_, ref_state_;
  int64_t cursor_ = 0;
  int bad_steps_ = 0;
  std::vector<ScoredCompletion> samples_;
  const env::Environment* env_ = nullptr;
  std::vector<Group> in_flight_;  // partial rollouts: drawn, not trained on yet
  // The rollout engine of the whole run: its KV cache pool, captured decode steps and plans are
  // built once (it reads the policy's weights in place, so updates need no copy).
  std::unique_ptr<rollout::Engine> engine_;
};

}  // namespace r1::train

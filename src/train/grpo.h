#pragma once
// GRPO training: one step = a batch of prompts -> G completions each from the rollout engine ->
// rule rewards -> group-relative advantages -> policy updates on the packed completions -> metrics.
// Rollout and training use the same Transformer (one copy of the weights, same kernels).
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/problem.h"
#include "model/transformer.h"
#include "model/train_state.h"
#include "reward/reward.h"
#include "rollout/engine.h"
#include "text/codec.h"
#include "train/grpo_loss.h"
#include "optim/data_parallel.h"
#include "optim/optimizer.h"

namespace r1::train {

struct GrpoConfig {
  // Sampling
  int prompts_per_step = 8;
  int group_size = 8;  // G
  int max_prompt_tokens = 512;
  int max_completion_tokens = 256;
  float temperature = 1.0f, top_p = 1.0f;
  int top_k = 0;
  int rollout_batch = 64;  // sequences decoded together
  // Advantages and loss
  bool scale_advantage_by_std = true;  // false: Dr. GRPO
  GrpoLossConfig loss;
  bool kl_in_reward = false;      // subtract kl_coef * sum_t KL_t (k1) from each reward instead
  int ref_refresh_steps = 0;      // copy the policy into the reference every N steps (0: never)
  // Updates
  int ppo_epochs = 1;             // mu: passes over each rollout batch
  int mini_batches = 1;           // optimizer steps per pass
  int micro_batch_tokens = 8192;  // gradient accumulation by token budget
  double lr = 1e-6, max_grad_norm = 1.0;
  optim::LrSchedule schedule;            // lr/total steps are filled from the fields above when left default
  optim::AdamWConfig adamw;
  // Data shaping
  bool dynamic_sampling = false;  // drop groups whose rewards are all equal and sample more prompts
  int dynamic_sampling_max_rounds = 4;
  bool mask_truncated = false;    // completions cut by the length limit get no loss (overlong filtering)
  int overlong_buffer = 0;        // DAPO soft overlong punishment over the last N tokens (0: off)
  double overlong_penalty = 1.0;
  int max_bad_steps = 3;          // consecutive non-finite updates before the run stops
  uint64_t seed = 1;
  // Data parallelism over the ranks of an mpirun launch (one rank: a plain single process).
  // prompts_per_step is the global batch; each rank rolls out prompts_per_step / ranks groups.
  optim::DataParallelConfig parallel;
};

// Metrics of one step (one JSON line in metrics.jsonl).
using StepMetrics = std::map<std::string, double>;

// One problem's completions and their scores, for samples/ files.
struct ScoredCompletion {
  int64_t problem_id;
  std::string prompt, completion;
  double reward;
  nlohmann::json details;
};

class GrpoTrainer {
 public:
  // `render_prompt` turns a question into the prompt text (chat template or R1-Zero template).
  GrpoTrainer(model::Transformer& policy, const text::Codec& codec, const reward::Reward& reward,
              std::vector<data::Problem> train_set, std::function<std::string(const data::Problem&)> render_prompt,
              GrpoConfig cfg, int64_t total_steps);

  // Runs step `step` (0-based) and returns its metrics; the scored completions go to last_samples().
  StepMetrics step(int64_t step);
  const std::vector<ScoredCompletion>& last_samples() const { return samples_; }
  optim::DataParallel& optimizer() { return dp_; }
  // Data position, for exact resume: problems already drawn and the epoch's shuffle.
  int64_t cursor() const { return cursor_; }
  void set_cursor(int64_t c) { cursor_ = c; }
  // The frozen reference model (null without a KL term); checkpoints save and restore it.
  model::Transformer* reference() { return ref_.get(); }

 private:
  std::vector<int64_t> next_prompts(int64_t n);

  model::Transformer& policy_;
  const text::Codec& codec_;
  const reward::Reward& reward_;
  std::vector<data::Problem> train_;
  std::function<std::string(const data::Problem&)> render_;
  GrpoConfig cfg_;
  int64_t total_steps_;
  optim::DataParallel dp_;
  std::unique_ptr<model::Transformer> ref_;
  model::TrainState state_, ref_state_;
  int64_t cursor_ = 0;
  int bad_steps_ = 0;
  std::vector<ScoredCompletion> samples_;
};


}  // namespace r1::train

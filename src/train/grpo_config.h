#pragma once
// Every setting of a GRPO run (the recipe's `grpo` section and the `train` keys GRPO reads), and
// their validation: each error names the recipe key, its value and the allowed range.
#include <cstdint>
#include <string>

#include "model/train_state.h"
#include "optim/data_parallel.h"
#include "optim/optimizer.h"
#include "rollout/engine.h"
#include "train/grpo_loss.h"

namespace r1::train {

// pi_old in the ratio, and the correction of the sampler/trainer mismatch (train/grpo_offpolicy.h).
enum class OldLogprobs { Sampler, Trainer };
enum class IsCorrection { None, Tis, Mis };
OldLogprobs parse_old_logprobs(const std::string& s);    // "sampler" | "trainer"
IsCorrection parse_is_correction(const std::string& s);  // "none" | "tis" | "mis"
bool parse_sampler_logprobs(const std::string& s);       // "tempered" (false) | "sampled" (true)

// Mixture-of-experts models in RL (recipe keys train.moe.*; train/grpo_moe.h).
struct MoeRlConfig {
  // Routing replay: the training forwards (pi_old, reference, update) send each token to the experts
  // the sampler chose for it, with the router's weights over those experts (its gradient flows as usual).
  bool routing_replay = false;
  // DeepSeek-V3's auxiliary-loss-free balancing after every step: each MoE layer's
  // e_score_correction_bias[e] += speed * sign(mean load - load of e). 0: off (R1's RL kept it off).
  double bias_update_speed = 0.0;
  // The sampler/trainer log-prob gap, with and without replay, measured every N steps (0: never):
  // two extra forwards over the step's batch.
  int logp_gap_every = 1;
};

struct GrpoConfig {
  // Sampling
  int prompts_per_step = 8;
  int group_size = 8;  // G
  int max_prompt_tokens = 512;
  int max_completion_tokens = 256;
  float temperature = 1.0f, top_p = 1.0f;
  int top_k = 0;
  int rollout_batch = 64;  // sequences decoded together
  // The rollout engine's paged KV cache (recipe section `rollout`; rollout::EngineConfig): this share
  // of the device's free memory when the trainer is built, or kv_cache_tokens tokens when > 0;
  // blocks of kv_block_size tokens. Half by default: on CUDA the pool's memory goes back to the
  // training step between rollouts, but what the step keeps through them (weights, optimizer,
  // reference; LoRA moments come at the first update) must fit beside the pool.
  double kv_memory_fraction = 0.5;
  int64_t kv_cache_tokens = 0;
  int kv_block_size = 16;
  // Benchmarking (vLLM's ignore_eos): no stop token ends a completion, every one runs to
  // max_completion_tokens; a sampled EOS stays in the text as an ordinary token. For measuring a
  // step at its full length with a random model, which stops after a few hundred tokens otherwise.
  bool ignore_eos = false;
  // Multi-turn rollouts with an environment (GrpoTrainer::set_environment; recipe keys env.*):
  // observations per episode, and tool calls running at once while the engine decodes.
  int max_turns = 4, tool_threads = 4;
  // No idle tail (train/grpo_partial.h). Partial rollouts: each step decodes at most
  // partial_rollout_tokens new tokens per sequence; an unfinished sequence is carried into the next
  // step's rollout, and only groups whose G samples all finished are scored and trained on
  // (0: off, every completion runs to its end within its step). Over-provisioning: this many
  // prompts beyond prompts_per_step are kept in flight; a step trains on the first
  // prompts_per_step groups to finish (oldest first) and carries the others (needs partial rollouts).
  int partial_rollout_tokens = 0;
  int overprovision_prompts = 0;
  // Advantages and loss
  bool scale_advantage_by_std = true;  // false: Dr. GRPO
  GrpoLossConfig loss;                 // loss.norm_constant 0: max_completion_tokens (Dr. GRPO's choice)
  bool kl_in_reward = false;           // subtract kl_coef * sum_t KL_t (k1) from each reward instead
  int ref_refresh_steps = 0;           // copy the policy into the reference every N steps (0: never)
  // Updates
  int ppo_epochs = 1;             // mu: passes over each rollout batch
  int mini_batches = 1;           // optimizer steps per pass
  int micro_batch_tokens = 8192;  // gradient accumulation by token budget (token-balanced micro-batches)
  // Per-layer activation checkpointing of the update's forwards (train.activation_checkpointing).
  model::Checkpointing checkpointing = model::Checkpointing::Auto;
  double lr = 1e-6, max_grad_norm = 1.0;
  optim::LrSchedule schedule;  // lr/total steps are filled from the fields above when left default
  optim::AdamWConfig adamw;
  // Data shaping. Dynamic sampling (DAPO): groups whose `dynamic_sampling_filter` values are all
  // equal (every sample right, or every one wrong) teach nothing and are dropped; more prompts are
  // drawn, round after round, until the step has prompts_per_step groups or
  // dynamic_sampling_max_rounds rounds were spent (then the step trains on what it has, and warns).
  bool dynamic_sampling = false;
  int dynamic_sampling_max_rounds = 4;
  // What decides: a part of the reward by its name in reward.spec ("math": accuracy, as DAPO), or
  // "reward" for the whole reward after overlong shaping.
  std::string dynamic_sampling_filter = "math";
  bool mask_truncated = false;  // completions cut by the length limit get no loss (overlong filtering)
  int overlong_buffer = 0;      // DAPO soft overlong punishment over the last N tokens (0: off)
  double overlong_penalty = 1.0;
  int max_bad_steps = 3;  // consecutive non-finite updates before the run stops
  // The ratio's denominator and the sampler/trainer mismatch (train/grpo_offpolicy.h).
  OldLogprobs old_logprobs = OldLogprobs::Sampler;
  IsCorrection is_correction = IsCorrection::None;
  double is_cap = 2.0;
  // grpo.sampler_logprobs: what the sampler reports per token (rollout::SamplingParams::
  // sampled_logprobs). tempered (false): log softmax(logits / T), what the trainer recomputes.
  // sampled (true): the distribution actually drawn from, renormalised over top-k/top-p's kept
  // tokens, so is_correction weighs by the true behaviour policy; needs old_logprobs: trainer
  // (as pi_old it would put the truncation into every ratio) and no partial rollouts (whose older
  // tokens keep the sampler's log-probs as pi_old).
  bool sampled_logprobs = false;
  // rollout.exact_logprobs: the sampler's log-probs are the trainer's, bit for bit (the forward is
  // batch-invariant while the trainer lives: kernels/invariance.h; rollout::GenerateParams::
  // exact_logprobs), so with old_logprobs: sampler the first update's ratios are exactly 1.
  bool exact_logprobs = false;
  uint64_t seed = 1;
  MoeRlConfig moe;
  // Data parallelism over the ranks of an mpirun launch (one rank: a plain single process).
  // prompts_per_step is the global batch; each rank rolls out prompts_per_step / ranks groups.
  optim::DataParallelConfig parallel;
};

// Checks every numeric setting and the relations between them; errors name the recipe key
// ("grpo.clip_high must be >= 0, got -0.1").
void validate(const GrpoConfig& c);
// A prompt and completion of the longest lengths must fit the model's positions (the trainer's
// forward refuses a position past max_position_embeddings): fails naming the keys, before any compute.
void validate_for_model(const GrpoConfig& c, const model::ModelConfig& mc);

// The rollout engine's settings (batch, lengths, KV cache pool).
rollout::EngineConfig engine_config(const GrpoConfig& c);

// The loss settings the update uses: the KL term only when it is in the loss, Dr. GRPO's divisor
// resolved (norm_constant 0 means max_completion_tokens; any other value is used as given).
GrpoLossConfig update_loss_config(const GrpoConfig& c);

}  // namespace r1::train

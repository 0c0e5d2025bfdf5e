#pragma once
// The record phase of a GRPO step: what each rank adds up (StepSums), reduced over the ranks, and
// the step's statistics (StepStats) with their names in metrics.jsonl (step_metrics).
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "dist/comm.h"
#include "run/metrics.h"
#include "train/grpo_moe.h"
#include "train/grpo_offpolicy.h"
#include "train/grpo_rollouts.h"
#include "train/grpo_update.h"

namespace r1::train {

// What one rank adds up during a step.
struct StepSums {
  ScoreSums scored;  // over every scored completion, kept or dropped
  // Over the kept sequences.
  double sequences = 0, gen_tokens = 0, kept_reward_sum = 0, kept_reward_sq = 0, kl_reward_sum = 0;
  double reflection_hits = 0;  // scored completions with a reflection word
  // Over the loss's tokens (UpdateStats).
  double loss_sum = 0, clipped = 0, kl_sum = 0, loss_tokens = 0, entropy_sum = 0, entropy_tokens = 0;
  // The update's micro-batches, and those whose forward checkpointed.
  double micro_batches = 0, checkpointed = 0;
  // Maxima over the ranks: the longest completion, the slowest rank's phase times (seconds), the
  // policy's training arenas at their peak (bytes).
  double length_max = 0, t_rollout = 0, t_reward = 0, t_reference = 0, t_train = 0, activation_peak = 0;
  // The first update's clipping, and the sampler/trainer gap (grpo.old_logprobs: trainer; the max is maxed).
  double clipped_first = 0, tokens_first = 0, gap_sum = 0, gap_tokens = 0, gap_masked = 0, gap_weight_sum = 0,
         gap_max = 0;
  // The rollout engine: preemptions and sequences in flight over the decode steps (summed); the KV
  // cache pool's blocks and the most in use at once (maxima).
  double preemptions = 0, decode_seqs = 0, decode_steps = 0, kv_blocks = 0, kv_blocks_peak = 0;
  double decode_capacity = 0;  // the batch's capacity over the decode steps (rollout::occupancy)
  // Partial rollouts (train/grpo_partial.h): sequences left unfinished after the step's rollout and
  // their tokens so far (summed); the largest step - version of a trained token (maxed).
  double carried_seqs = 0, carried_tokens = 0, version_lag_max = 0;
  // Maxima over the ranks, bytes on the model's device (tensor/device_memory.h's memory_use): held
  // when a phase starts (the persistent state alone: each phase frees what it used), and each
  // phase's peak; the host's peak resident memory.
  double mem_held = 0, mem_rollout = 0, mem_reference = 0, mem_update = 0, mem_host = 0;
  // Mixture-of-experts models: the log-prob gap both ways (when measured) and the update's routing.
  LogpGap moe_gap;
  RouteStats routes;

  void add_kept(const std::vector<Group>& kept);
  // The engine's counts over a rollout: its stats() before and after.
  void add_rollout(const rollout::GenerateStats& before, const rollout::GenerateStats& after);
  void add_update(const UpdateStats& u);
  void add_gap(const SamplerGap& g);
};

// Sums the sums and takes the maxima over the ranks of `host` (every rank gets the result).
void all_reduce(dist::Comm& host, StepSums& s);

// The step's groups, counted over every rank (the ranks agree on them).
struct GroupCounts {
  int64_t kept = 0;           // groups trained on
  int64_t scored = 0;         // groups sampled and scored, in every round
  int64_t zero_variance = 0;  // scored groups whose rewards were all equal
  int64_t filtered = 0;       // scored groups dynamic sampling dropped
  int64_t too_long = 0;       // prompts skipped for max_prompt_tokens
  int64_t rounds = 0;         // rollout rounds (1 without dynamic sampling)
};

struct StepStats {
  // Rewards, over every scored completion (the reward function's values, before shaping).
  double reward_mean = 0, reward_std = 0;
  std::map<std::string, double> reward_parts;   // each part's mean, by name
  std::optional<double> accuracy, format_rate;  // the "math" and "format" parts
  double response_length_mean = 0, response_length_max = 0, truncated_frac = 0, reflection_rate = 0;
  int64_t reward_timeouts = 0;  // rewards killed at their deadline (scored 0)
  std::optional<double> overlong_penalty;  // the mean shaping penalty (<= 0), with overlong_buffer > 0
  // Multi-turn rollouts: observations, tool calls per episode, and the share of calls that failed.
  std::optional<double> turns_per_episode, tool_calls_per_episode, tool_error_rate;
  // Loss, over the updates' tokens.
  double loss = 0, clip_fraction = 0, entropy = 0;
  double clip_fraction_first = 0;  // at the first mini-batch of the first pass
  // |log pi_sampler - log pi_trainer| over the model's tokens: with grpo.old_logprobs: trainer over
  // the step's tokens, with sampler over the first update's mini-batch (before any optimizer step;
  // none with partial rollouts). With trainer also the share of tokens the correction truncated
  // (tis) or dropped (mis), and the mean weight it gave.
  std::optional<double> logp_gap_max, logp_gap_mean, is_corrected_frac, is_weight_mean;
  std::optional<double> kl;  // with a reference model: the loss's KL, or the reward's (kl_in_reward)
  double grad_norm = 0, lr = 0;
  int64_t updates = 0, skipped_updates = 0;
  // Activation memory: micro-batches whose forward checkpointed (of micro_batches), the training
  // arenas' peak (MiB, the largest rank's).
  int64_t micro_batches = 0, checkpointed_micro_batches = 0;
  double activation_mib = 0;
  std::vector<double> epoch_loss;  // each of the ppo_epochs passes (not in metrics.jsonl)
  // The batch.
  int64_t groups = 0, prompts_too_long = 0, sampling_rounds = 0;
  double zero_variance_groups = 0, filtered_groups = 0, batch_fill = 0;
  // Time (seconds; the slowest rank's) and throughput.
  double time_rollout = 0, time_reward = 0, time_reference = 0, time_train = 0, time_step = 0,
         tokens_per_s = 0;
  // The rollouts' KV cache: pool blocks, the most in use at once, sequences preempted (and resumed
  // by a recompute), and the mean sequences in flight per decode step.
  int64_t kv_blocks = 0, kv_blocks_peak = 0, preemptions = 0;
  double concurrency = 0;
  // The GPU busy share: mean sequences in flight over the decode steps / the batch's capacity
  // (rollout::occupancy; the same count on the CPU and GPU engines). 1: no idle tail.
  double occupancy = 0;
  // Partial rollouts: sequences carried to the next step, their tokens, the largest policy-version
  // lag of a trained token (steps).
  std::optional<double> carried_seqs, carried_tokens, version_lag_max;
  // Memory (bytes, the largest rank's): see StepSums.
  double memory_held = 0, memory_rollout = 0, memory_reference = 0, memory_update = 0, memory_host = 0;
  int ranks = 1;
  run::Scalars moe;  // mixture-of-experts models: moe_metrics (grpo_moe.h)
};

// The step's statistics from its (reduced) sums and counts.
StepStats summarize(const StepSums& sums, const GroupCounts& groups, const UpdateStats& update,
                    const GrpoConfig& cfg, double lr, bool has_reference, int ranks);

// The statistics as metrics.jsonl names them (run/metrics.h lists the names the report knows).
run::Scalars step_metrics(const StepStats& s);

}  // namespace r1::train

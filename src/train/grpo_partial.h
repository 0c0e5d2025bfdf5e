#pragma once
// No idle tail: partial rollouts and over-provisioned sampling (grpo.partial_rollout_tokens,
// grpo.overprovision_prompts), as Kimi k1.5's partial rollouts and slime's over-sampling describe them.
//   A step's rollout decodes at most partial_rollout_tokens new tokens per sequence, so it never
//   waits for the longest sample. A sequence that neither stopped nor reached
//   max_completion_tokens by then stays in flight with its tokens, the sampler's log-prob of each,
//   and the step whose policy sampled each (its version). The next step's rollout continues it: its
//   prompt and tokens so far are a prefix the engine prefills (the recompute a preempted sequence
//   gets), and its new tokens are drawn by the new weights. Only groups whose G samples all finished
//   are scored and trained on, oldest first, at most prompts_per_step a step; the others wait.
//   New prompts are drawn to keep prompts_per_step + overprovision_prompts groups in flight, so a
//   step has enough finished groups; finished groups beyond prompts_per_step are carried (trained
//   on first in the next step), never dropped.
// pi_old. A token's pi_old is the log-prob the policy that sampled it gave it, as the sampler
// stored it (grpo.old_logprobs: sampler). With grpo.old_logprobs: trainer, the trainer's recompute
// replaces it only for the tokens the current weights sampled (this step's); a token sampled by an
// older policy keeps its stored sampler log-prob, since those weights are gone, so its ratio also
// carries the policy's drift since then (the metric partial/version_lag_max bounds it).
// One process only (no data-parallel ranks), single-turn rollouts, no routing replay.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "data/problem.h"
#include "rollout/engine.h"
#include "text/codec.h"
#include "train/grpo_config.h"
#include "train/grpo_rollouts.h"

namespace r1::train {

// Whether a sequence is done: it stopped, or has max_completion_tokens tokens.
bool rollout_done(const Sequence& s, int max_completion_tokens);
bool group_done(const Group& g, int max_completion_tokens);

// The random stream of a carried sequence's continuation: its group's draw and its sample, tagged
// with the high bit so that it meets no new prompt's stream (those are named by problem ids).
int64_t carried_stream(const Group& g, int64_t sample, int group_size);

// One step's rollout: every group without sequences samples G completions of its prompt and every
// unfinished sequence continues, each for at most cfg.partial_rollout_tokens new tokens (fewer when
// max_completion_tokens leaves fewer). New tokens are appended with their log-probs and `step` as
// their version; a sequence that finishes gets its text.
void roll_segment(rollout::Engine& engine, const text::Codec& codec,
                  const std::vector<data::Problem>& problems, const GrpoConfig& cfg, uint64_t seed,
                  int64_t step, std::vector<Group>& in_flight);

// Moves up to n finished groups out of `in_flight`, oldest first (the others keep their order).
std::vector<Group> take_finished(std::vector<Group>& in_flight, int64_t n, int max_completion_tokens);

// The unfinished sequences of `in_flight` and their tokens so far.
struct Carried {
  double seqs = 0, tokens = 0;
};
Carried carried(const std::vector<Group>& in_flight, int max_completion_tokens);

// The largest step - version over the tokens of the kept sequences in the loss.
int64_t max_version_lag(const std::vector<Group>& kept, int64_t step);

// grpo.old_logprobs: trainer: the tokens sampled before `step` take their stored sampler log-prob
// as pi_old (Sequence::old_logp), the trainer's recompute stays for this step's own.
void keep_sampler_pi_old(std::vector<Group>& kept, int64_t step);

// The groups in flight, for a checkpoint's state.json (exact: log-probs round-trip), and back
// without their texts (GrpoTrainer::set_in_flight renders and decodes them again).
nlohmann::json in_flight_json(const std::vector<Group>& in_flight);
std::vector<Group> in_flight_from_json(const nlohmann::json& j);

}  // namespace r1::train

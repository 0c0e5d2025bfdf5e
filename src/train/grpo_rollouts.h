#pragma once
// The first phases of a GRPO step, on this rank's share of the drawn prompts:
//   sample  render each prompt, roll out G completions of it          -> Groups
//   score   rewards, overlong shaping, truncation masks               -> Sequence::reward, ::in_loss
//   filter  does the group teach anything (dynamic sampling, DAPO)?   -> GroupVerdict
// The trainer (grpo.h) runs them round after round until its batch is full.
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/progress.h"
#include "data/problem.h"
#include "env/environment.h"
#include "env/episodes.h"
#include "model/transformer.h"
#include "reward/reward.h"
#include "rollout/engine.h"
#include "text/codec.h"
#include "train/grpo_config.h"

namespace r1::train {

// One sampled completion of a group's prompt, and what the step learns about it.
struct Sequence {
  // Tokens (with the stop token; in multi-turn rollouts the observations too, out.from_model 0),
  // the sampler's log-probs, finish reason.
  rollout::Completion out;
  std::string text;         // the model's tokens decoded, stop token dropped: what the reward reads
  std::optional<env::EpisodeOutcome> episode;  // multi-turn rollouts: the environment's reward and counts
  nlohmann::json details;   // the reward's details (each part of a composite under its name)
  double score = 0;         // the reward function's value
  double reward = 0;        // what the advantage is computed from: score, overlong penalty, KL in reward
  double filter_value = 0;  // what dynamic sampling looks at (GrpoConfig::dynamic_sampling_filter)
  bool truncated = false;   // cut by max_completion_tokens
  bool in_loss = true;      // false: truncated and masked (mask_truncated), or nothing generated
  double advantage = 0;
  std::vector<float> ref_logp;  // per completion token, when a reference model is used
  std::vector<float> old_logp;   // per completion token: pi_old by the trainer (grpo.old_logprobs: trainer)
  std::vector<float> is_weight;  // per completion token: the sampler-mismatch correction (grpo.is_correction)
  // Partial rollouts (train/grpo_partial.h): per completion token, the step whose policy sampled it
  // (out.logprobs[t] is that policy's log-prob). Empty otherwise: every token is the step's own.
  std::vector<int32_t> versions;
};

// One prompt and its G completions.
struct Group {
  int64_t slot = 0;         // the prompt's place in its round's draw (the same on every rank)
  int64_t problem = 0;      // index into the training set
  int64_t kept_index = -1;  // the group's place among the step's kept groups of all ranks
  int64_t draw = -1;        // partial rollouts: the data cursor it was drawn at (names its streams)
  std::string prompt_text;
  std::vector<int32_t> prompt;
  std::vector<Sequence> seqs;
};

// ---- sample ----

struct PromptDraw {
  int64_t slot = 0, problem = 0;
};

// The rendered and tokenized prompts of `draws`; a prompt that is empty or longer than
// max_prompt_tokens is left out and its slot added to `too_long`.
std::vector<Group> render_prompts(const std::vector<PromptDraw>& draws,
                                  const std::vector<data::Problem>& problems,
                                  const std::function<std::string(const data::Problem&)>& render,
                                  const text::Codec& codec, int max_prompt_tokens,
                                  std::vector<int64_t>& too_long);

// A progress line for a rollout that runs long (quiet for its first 10 s): tokens decoded against
// `bound`, every sample at its length limit, so the ETA is an upper bound.
Progress rollout_progress(int64_t bound);

// The sampling seed of training step `step` (from the run seed), so a step's rollouts replay.
uint64_t sampling_seed(uint64_t run_seed, int64_t step);

// Rolls out G = cfg.group_size completions of every group's prompt with the policy's engine (built
// once for the run: engine_config(cfg)). A sample's randomness follows (seed, problem id, sample),
// not the batch it shares, so any split of the prompts over ranks or rounds gives the same
// completions. With `env`, each completion is an episode of it (cfg.max_turns observations at
// most, cfg.tool_threads calls at once).
void sample_groups(rollout::Engine& engine, const text::Codec& codec,
                   const std::vector<data::Problem>& problems, const GrpoConfig& cfg, uint64_t seed,
                   std::vector<Group>& groups, const env::Environment* env = nullptr);

// ---- score ----

// What scoring adds to the step's sums (over every scored completion, kept or not).
struct ScoreSums {
  double completions = 0, score_sum = 0, truncated = 0, overlong_penalty_sum = 0;
  double timeouts = 0;  // rewards killed at their deadline (scored 0)
  // Multi-turn rollouts: episodes scored, and their tool calls, failed calls and turns.
  double episodes = 0, tool_calls = 0, tool_errors = 0, turns = 0;
  std::map<std::string, double> part_sums;  // a composite reward's parts by name (unweighted)
  void add(const ScoreSums& o);
};

// DAPO's soft overlong punishment: 0 up to max_tokens - buffer, then falling linearly to
// -penalty at max_tokens.
double overlong_penalty(int64_t length, int max_tokens, int buffer, double penalty);

// Scores every completion with `reward` (plus its episode's reward, reported as the part "env")
// and applies the settings that shape rewards and masks:
// overlong_buffer/overlong_penalty, mask_truncated, and the dynamic-sampling filter's value.
ScoreSums score_groups(std::vector<Group>& groups, const reward::Reward& reward,
                       const std::vector<data::Problem>& problems, const GrpoConfig& cfg);

// The value of `filter` in a scored result: the part of that name of a composite reward, the
// reward itself when it has that name, or `shaped` (the reward after shaping) for "reward". A
// filter the reward does not have is an error naming grpo.dynamic_sampling_filter.
double filter_value(const reward::Reward& reward, const reward::Result& r, const std::string& filter,
                    double shaped);

// ---- filter ----

struct GroupVerdict {
  bool zero_variance = false;  // every reward equal: all advantages 0, no learning signal
  bool filtered = false;       // dropped by dynamic sampling: every filter value equal
};
GroupVerdict judge_group(const Group& g, bool dynamic_sampling);

}  // namespace r1::train

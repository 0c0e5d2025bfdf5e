#pragma once
// k completions per problem from the rollout engine, decoded and scored by a reward: the shared
// first half of evaluation (r1 eval) and rejection sampling (r1 sample). Samples are named by
// (problem id, sample index, seed), so a problem gets the same completions however the problems
// are split into calls: a resumed or chunked job reproduces an uninterrupted one.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/problem.h"
#include "model/transformer.h"
#include "reward/reward.h"
#include "rollout/engine.h"
#include "text/codec.h"

namespace r1::eval {

struct SamplingSpec {
  int k = 4;                          // samples per problem
  float temperature = 0.6f, top_p = 0.95f;  // the R1 paper's evaluation setting; temperature 0: greedy
  int top_k = 0;
  int max_completion_tokens = 256;
  int max_prompt_tokens = 0;          // longer prompts are skipped (0: no limit)
  int batch = 64;                     // sequences decoded together
  uint64_t seed = 1234;
};

struct ScoredSample {
  std::string text;           // decoded completion without the stop token
  int64_t tokens = 0;         // generated tokens, stop token included
  rollout::FinishReason finish = rollout::FinishReason::Length;
  reward::Result result;
};

struct ProblemSamples {
  size_t problem = 0;         // index into the problems given
  std::string prompt;         // the rendered prompt
  bool skipped = false;       // prompt longer than max_prompt_tokens: no samples
  std::vector<ScoredSample> samples;  // k of them, by sample index
};

// Samples and scores every problem; on_progress(done, total) counts finished sequences.
std::vector<ProblemSamples> generate_scored(const model::Transformer& m, const text::Codec& codec,
                                            const reward::Reward& reward, const std::vector<data::Problem>& problems,
                                            const std::function<std::string(const data::Problem&)>& render,
                                            const SamplingSpec& spec,
                                            const std::function<void(int64_t, int64_t)>& on_progress = {});

}  // namespace r1::eval

#pragma once
// Evaluation as the R1 paper reports it, in one call for programs that hold a model (the demo):
// k samples per problem (temperature 0.6, top-p 0.95 by default), pass@1 averaged over the k
// samples, unbiased pass@k, cons@k, mean response length. `r1 eval` (eval_run.h) is the recipe-driven
// command with per-sample rows and breakdowns; both are built from generate_scored and eval_report.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/problem.h"
#include "eval/pass_at_k.h"
#include "model/transformer.h"
#include "reward/reward.h"
#include "text/codec.h"

namespace r1::eval {

struct EvalConfig {
  int k = 4;
  float temperature = 0.6f, top_p = 0.95f;
  int max_completion_tokens = 256;
  int batch = 64;
  uint64_t seed = 1234;
};

struct EvalResult {
  double pass_at_1 = 0;   // mean over problems of (correct samples / k)
  double pass_at_k = 0;   // unbiased pass@k at k = cfg.k
  double cons_at_k = 0;   // majority vote over the k answers (majority_vote.h)
  double mean_length = 0; // completion tokens
  double truncated_share = 0;
  int64_t problems = 0;
};

// A sample counts as correct when `reward` gives it at least `threshold`.
EvalResult evaluate(const model::Transformer& m, const text::Codec& codec, const reward::Reward& reward,
                    const std::vector<data::Problem>& problems,
                    const std::function<std::string(const data::Problem&)>& render, const EvalConfig& cfg,
                    double threshold = 1.0);

}  // namespace r1::eval

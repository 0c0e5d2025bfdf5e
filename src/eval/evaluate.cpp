#include "eval/evaluate.h"

#include "base/error.h"
#include "eval/eval_report.h"
#include "eval/generate_scored.h"

namespace r1::eval {

EvalResult evaluate(const model::Transformer& m, const text::Codec& codec, const reward::Reward& reward,
                    const std::vector<data::Problem>& problems,
                    const std::function<std::string(const data::Problem&)>& render, const EvalConfig& cfg,
                    double threshold) {
  R1_CHECK(cfg.k >= 1, "eval: k must be >= 1");
  EvalResult res;
  if (problems.empty()) return res;
  SamplingSpec spec;
  spec.k = cfg.k;
  spec.temperature = cfg.temperature;
  spec.top_p = cfg.top_p;
  spec.max_completion_tokens = cfg.max_completion_tokens;
  spec.batch = cfg.batch;
  spec.seed = cfg.seed;
  std::vector<ProblemOutcome> outcomes =
      judge(generate_scored(m, codec, reward, problems, render, spec), threshold, VoteRule::Verifier);
  const Metrics mt = summarize(outcomes, cfg.k, {cfg.k});
  res.pass_at_1 = mt.pass_at_1;
  res.pass_at_k = mt.pass_at.empty() ? mt.pass_at_1 : mt.pass_at.back().second;
  res.cons_at_k = mt.cons_at_k;
  res.mean_length = mt.mean_length;
  res.truncated_share = mt.truncated_share;
  res.problems = mt.problems;
  return res;
}

}  // namespace r1::eval

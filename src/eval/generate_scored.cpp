#include "eval/generate_scored.h"

#include <algorithm>

#include "base/error.h"

namespace r1::eval {

std::vector<ProblemSamples> generate_scored(const model::Transformer& m, const text::Codec& codec,
                                            const reward::Reward& reward, const std::vector<data::Problem>& problems,
                                            const std::function<std::string(const data::Problem&)>& render,
                                            const SamplingSpec& spec,
                                            const std::function<void(int64_t, int64_t)>& on_progress) {
  R1_CHECK(spec.k >= 1, "sampling: k must be >= 1 (got {})", spec.k);
  R1_CHECK(spec.max_completion_tokens >= 1, "sampling: max_completion_tokens must be >= 1");
  std::vector<ProblemSamples> out(problems.size());
  std::vector<rollout::Request> reqs;
  std::vector<size_t> req_problem;
  int max_prompt = 1;
  for (size_t i = 0; i < problems.size(); ++i) {
    out[i].problem = i;
    out[i].prompt = render(problems[i]);
    std::vector<int32_t> ids = codec.encode(out[i].prompt);
    if (ids.empty() || (spec.max_prompt_tokens > 0 && int(ids.size()) > spec.max_prompt_tokens)) {
      out[i].skipped = true;
      continue;
    }
    max_prompt = std::max(max_prompt, int(ids.size()));
    reqs.push_back({std::move(ids), spec.k, problems[i].id});
    req_problem.push_back(i);
  }
  if (reqs.empty()) return out;
  rollout::GenerateParams gp;
  gp.sampling = {spec.temperature, spec.top_p, spec.top_k, spec.seed};
  gp.max_new_tokens = spec.max_completion_tokens;
  gp.stop_ids = codec.eos_ids();
  rollout::Engine engine(m, {spec.batch, max_prompt + spec.max_completion_tokens, 8192});
  std::vector<rollout::Completion> outs = engine.generate(reqs, gp, on_progress);

  std::vector<reward::Sample> samples;
  samples.reserve(outs.size());
  for (const auto& c : outs) {
    const size_t p = req_problem[size_t(c.prompt_index)];
    std::vector<int32_t> body = c.tokens;
    if (c.finish == rollout::FinishReason::Stop && !body.empty()) body.pop_back();
    ScoredSample s;
    s.text = codec.decode(body);
    s.tokens = int64_t(c.tokens.size());
    s.finish = c.finish;
    samples.push_back({s.text, problems[p].answer, nullptr, out[p].prompt, problems[p].type});
    out[p].samples.push_back(std::move(s));
  }
  std::vector<reward::Result> scores = reward::score_batch(reward, samples);
  size_t k = 0;
  for (const auto& c : outs) out[req_problem[size_t(c.prompt_index)]].samples[size_t(c.sample_index)].result = scores[k++];
  return out;
}

}  // namespace r1::eval

#include "eval/evaluate.h"

#include "base/error.h"
#include "rollout/engine.h"

namespace r1::eval {

double pass_at_k(int64_t n, int64_t c, int64_t k) {
  R1_CHECK(n >= 1 && c >= 0 && c <= n && k >= 1 && k <= n, "pass_at_k: need 0 <= c <= n and 1 <= k <= n");
  if (n - c < k) return 1.0;
  // prod_{i=n-c+1}^{n} (1 - k / i), the numerically stable form of C(n-c, k) / C(n, k).
  double miss = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i) miss *= 1.0 - double(k) / double(i);
  return 1.0 - miss;
}

EvalResult evaluate(const model::Transformer& m, const text::Codec& codec, const reward::Reward& reward,
                    const std::vector<data::Problem>& problems,
                    const std::function<std::string(const data::Problem&)>& render, const EvalConfig& cfg,
                    double threshold) {
  R1_CHECK(cfg.k >= 1, "eval: k must be >= 1");
  EvalResult res;
  if (problems.empty()) return res;
  std::vector<rollout::Request> reqs;
  int max_prompt = 1;
  for (const auto& p : problems) {
    reqs.push_back({codec.encode(render(p)), cfg.k, p.id});
    max_prompt = std::max(max_prompt, int(reqs.back().prompt.size()));
  }
  rollout::GenerateParams gp;
  gp.sampling = {cfg.temperature, cfg.top_p, 0, cfg.seed};
  gp.max_new_tokens = cfg.max_completion_tokens;
  gp.stop_ids = codec.eos_ids();
  rollout::Engine engine(m, {cfg.batch, max_prompt + cfg.max_completion_tokens, 8192});
  auto outs = engine.generate(reqs, gp);
  std::vector<reward::Sample> samples;
  double len = 0;
  for (const auto& c : outs) {
    std::vector<int32_t> body = c.tokens;
    if (c.finish == rollout::FinishReason::Stop && !body.empty()) body.pop_back();
    samples.push_back({codec.decode(body), problems[size_t(c.prompt_index)].answer, nullptr});
    len += double(c.tokens.size());
  }
  auto scores = reward::score_batch(reward, samples);
  for (size_t p = 0; p < problems.size(); ++p) {
    int64_t correct = 0;
    for (int s = 0; s < cfg.k; ++s) correct += scores[p * size_t(cfg.k) + size_t(s)].reward >= threshold;
    res.pass_at_1 += double(correct) / cfg.k;
    res.pass_at_k += pass_at_k(cfg.k, correct, cfg.k);
  }
  res.problems = int64_t(problems.size());
  res.pass_at_1 /= double(problems.size());
  res.pass_at_k /= double(problems.size());
  res.mean_length = len / double(outs.size());
  return res;
}

}  // namespace r1::eval

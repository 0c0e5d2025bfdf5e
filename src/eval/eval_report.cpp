#include "eval/eval_report.h"

#include <fmt/format.h>

#include "base/error.h"
#include "eval/pass_at_k.h"

namespace r1::eval {

std::vector<ProblemOutcome> judge(const std::vector<ProblemSamples>& scored, double threshold, VoteRule rule) {
  std::vector<ProblemOutcome> out(scored.size());
  // Verifier votes may run symbolic checks: problems are independent, so vote in parallel.
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t p = 0; p < scored.size(); ++p) {
    ProblemOutcome& o = out[p];
    o.skipped = scored[p].skipped;
    std::vector<std::optional<std::string>> answers;
    for (const ScoredSample& s : scored[p].samples) {
      SampleOutcome so;
      so.answer = vote_answer(s.text);
      so.reward = s.result.reward;
      so.correct = s.result.reward >= threshold;
      so.tokens = s.tokens;
      so.truncated = s.finish == rollout::FinishReason::Length;
      answers.push_back(so.answer);
      o.samples.push_back(std::move(so));
    }
    o.vote = majority_vote(answers, rule);
    o.vote_correct = o.vote.winner >= 0 && o.samples[size_t(o.vote.winner)].correct;
  }
  return out;
}

Metrics summarize(const std::vector<ProblemOutcome>& outcomes, const std::vector<size_t>& which, int k,
                  const std::vector<int>& ks) {
  Metrics m;
  m.k = k;
  for (int kk : ks) {
    R1_CHECK(kk >= 1 && kk <= k, "pass@{}: k' must be between 1 and the samples per problem ({})", kk, k);
    if (kk > 1) m.pass_at.push_back({kk, 0.0});
  }
  double tokens = 0, truncated = 0, no_answer = 0, reflective = 0;
  for (size_t p : which) {
    const ProblemOutcome& o = outcomes.at(p);
    ++m.problems;
    if (o.skipped) {
      ++m.skipped;
      continue;
    }
    R1_CHECK(int(o.samples.size()) == k, "eval: problem {} has {} samples, expected {}", p, o.samples.size(), k);
    int64_t correct = 0;
    for (const SampleOutcome& s : o.samples) {
      correct += s.correct;
      tokens += double(s.tokens);
      truncated += s.truncated;
      no_answer += !s.answer.has_value();
      reflective += s.reflective;
    }
    m.samples += k;
    m.pass_at_1 += double(correct) / k;
    for (auto& [kk, v] : m.pass_at) v += pass_at_k(k, correct, kk);
    m.cons_at_k += o.vote_correct;
  }
  if (m.problems > 0) {
    m.pass_at_1 /= double(m.problems);
    for (auto& pa : m.pass_at) pa.second /= double(m.problems);
    m.cons_at_k /= double(m.problems);
  }
  if (m.samples > 0) {
    const double n = double(m.samples);
    m.mean_length = tokens / n;
    m.truncated_share = truncated / n;
    m.no_answer_share = no_answer / n;
    m.reflection_rate = reflective / n;
  }
  return m;
}

Metrics summarize(const std::vector<ProblemOutcome>& outcomes, int k, const std::vector<int>& ks) {
  std::vector<size_t> all(outcomes.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  return summarize(outcomes, all, k, ks);
}

nlohmann::json metrics_json(const Metrics& m) {
  nlohmann::json j = {{"problems", m.problems}, {"skipped", m.skipped}, {"samples", m.samples},
                      {"k", m.k}, {"pass@1", m.pass_at_1}};
  for (const auto& [kk, v] : m.pass_at) j[fmt::format("pass@{}", kk)] = v;
  j[fmt::format("cons@{}", m.k)] = m.cons_at_k;
  j["mean_length"] = m.mean_length;
  j["truncated_share"] = m.truncated_share;
  j["no_answer_share"] = m.no_answer_share;
  j["reflection_rate"] = m.reflection_rate;
  return j;
}

std::map<std::string, std::vector<size_t>> group_by_meta(const std::vector<data::Problem>& problems,
                                                         const std::string& key) {
  std::map<std::string, std::vector<size_t>> groups;
  for (size_t i = 0; i < problems.size(); ++i) {
    const nlohmann::json& meta = problems[i].meta;
    if (!meta.is_object() || !meta.contains(key)) continue;
    const nlohmann::json& v = meta[key];
    groups[v.is_string() ? v.get<std::string>() : v.dump()].push_back(i);
  }
  return groups;
}

std::string format_table(const std::string& first_column,
                         const std::vector<std::pair<std::string, Metrics>>& rows) {
  if (rows.empty()) return "";
  const Metrics& head = rows.front().second;
  size_t name_w = first_column.size();
  for (const auto& r : rows) name_w = std::max(name_w, r.first.size());
  std::string out = fmt::format("{:<{}}  {:>8}  {:>3}  {:>7}", first_column, name_w, "problems", "k", "pass@1");
  for (const auto& pa : head.pass_at) out += fmt::format("  {:>7}", fmt::format("pass@{}", pa.first));
  out += fmt::format("  {:>7}  {:>10}  {:>9}\n", fmt::format("cons@{}", head.k), "mean len", "truncated");
  for (const auto& [name, m] : rows) {
    out += fmt::format("{:<{}}  {:>8}  {:>3}  {:>6.1f}%", name, name_w, m.problems, m.k, 100 * m.pass_at_1);
    for (const auto& pa : m.pass_at) out += fmt::format("  {:>6.1f}%", 100 * pa.second);
    out += fmt::format("  {:>6.1f}%  {:>10.1f}  {:>8.1f}%\n", 100 * m.cons_at_k, m.mean_length,
                       100 * m.truncated_share);
  }
  return out;
}

}  // namespace r1::eval

#pragma once
// From scored samples to the numbers the R1 paper reports: each sample judged (correct, its vote
// answer, length, truncated), each problem's majority vote, and the metrics over any set of problems
// (a whole benchmark, one MATH-500 subject or level), as JSON and as a terminal table.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "data/problem.h"
#include "eval/generate_scored.h"
#include "eval/majority_vote.h"

namespace r1::eval {

struct SampleOutcome {
  std::optional<std::string> answer;  // the sample's vote (vote_answer); nullopt: no final answer
  double reward = 0;
  bool correct = false;     // reward >= threshold
  int64_t tokens = 0;       // generated tokens, stop token included
  bool truncated = false;   // stopped by max_completion_tokens, not by the model
  bool reflective = false;  // uses a reflection word ("wait", "verify"...); the caller fills it
};

struct ProblemOutcome {
  bool skipped = false;  // prompt over max_prompt_tokens: no samples, counted wrong
  std::vector<SampleOutcome> samples;
  VoteResult vote;
  bool vote_correct = false;  // the earliest sample of the winning answer is correct
};

// Judges every problem's samples: correct when the reward reaches `threshold`; votes under `rule`.
std::vector<ProblemOutcome> judge(const std::vector<ProblemSamples>& scored, double threshold, VoteRule rule);

struct Metrics {
  int64_t problems = 0, skipped = 0, samples = 0;
  int k = 0;                                    // samples per problem
  double pass_at_1 = 0;                         // mean over problems of correct / k
  std::vector<std::pair<int, double>> pass_at;  // (k', mean unbiased pass@k'), k' > 1
  double cons_at_k = 0;                         // share of problems whose majority vote is correct
  double mean_length = 0;                       // tokens per sample
  double truncated_share = 0, no_answer_share = 0, reflection_rate = 0;  // shares of samples
};

// Metrics over the problems `which` (indices into outcomes), pass@k' for each k' in ks (<= k).
// Skipped problems count as wrong in pass@ and cons@ and add no samples.
Metrics summarize(const std::vector<ProblemOutcome>& outcomes, const std::vector<size_t>& which, int k,
                  const std::vector<int>& ks);
Metrics summarize(const std::vector<ProblemOutcome>& outcomes, int k, const std::vector<int>& ks);

// {"problems", "skipped", "samples", "k", "pass@1", "pass@2", ..., "cons@K", "mean_length", ...}.
nlohmann::json metrics_json(const Metrics& m);

// Problem indices by the value of Problem::meta[key] (MATH-500 "subject", "level"); empty when no
// problem has the key. Numbers are keyed by their JSON text ("3").
std::map<std::string, std::vector<size_t>> group_by_meta(const std::vector<data::Problem>& problems,
                                                         const std::string& key);

// A fixed-width table: one row per (name, metrics); rates in percent.
std::string format_table(const std::string& first_column,
                         const std::vector<std::pair<std::string, Metrics>>& rows);

}  // namespace r1::eval

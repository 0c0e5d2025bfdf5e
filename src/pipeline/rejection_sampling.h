#pragma once
// Rejection sampling (DeepSeek-R1, stage 3): of the k scored samples of a prompt keep the correct and
// readable ones, the best few by reward, each distinct text once; and pair a kept sample with a
// failed one of the same prompt as reward-model data. Pure functions on eval::ProblemSamples, so
// every rule is tested without a model.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "eval/generate_scored.h"
#include "reward/format_reward.h"

namespace r1::pipeline {

// What became of a sample. A dropped sample carries the first reason that applies, in this order,
// so the counts of a run add up to its samples.
enum class Verdict { Kept, Incorrect, Truncated, Format, Length, Language, Repetition, Duplicate, NotBest };
inline constexpr int kVerdicts = 9;
// "kept", "incorrect", "truncated", "format", "length", "language", "repetition", "duplicate", "not_best".
const char* verdict_name(Verdict v);

struct SampleFilters {
  double threshold = 1.0;       // correct: correctness reward >= threshold
  bool drop_truncated = true;   // finished by the length limit, not a stop token
  bool require_format = false;  // <think>…</think><answer>…</answer>, as the format reward checks it
  int64_t max_length = 0;       // completion tokens; 0: off
  std::string language;         // target language of the think block ("en"); empty: off
  double language_min = 0.95;   // share of target-language words the think block needs
  double max_repetition = 0.0;  // repetition_share above this drops the sample; 0: off
  int repetition_ngram = 4;
  reward::FormatOptions format;  // the tags for require_format and where the think block is
};

enum class KeepMode { Best, All };
KeepMode parse_keep_mode(const std::string& s);  // "best" | "all"; the error names sample.keep

struct SelectionSpec {
  KeepMode keep = KeepMode::Best;
  int best_k = 1;            // Best: how many per prompt
  bool dedup = true;         // identical texts after whitespace normalisation count once
  int pairs_per_prompt = 1;  // preference pairs per prompt (0: none)
};

// seq-rep-n (Welleck et al. 2019, "Neural text degeneration with unlikelihood training"): the share
// of a text's word n-grams that repeat an earlier n-gram of the same text, 1 - distinct / all. Words
// are whitespace-separated; 0 when the text has fewer than n words. A looping chain of thought
// scores near 1, ordinary prose near 0.
double repetition_share(const std::string& text, int n);

// Runs of whitespace become one space; leading and trailing whitespace goes.
std::string normalize_whitespace(const std::string& s);

// The filters' verdict on one sample given its correctness reward: Kept, or Incorrect ... Repetition.
// A think block without words passes the language filter (there is nothing mixed in it).
Verdict filter_sample(const eval::ScoredSample& s, double correctness, const SampleFilters& f);

// Ranking order: higher reward first; ties: fewer tokens, then the lower sample index.
bool ranks_before(const eval::ScoredSample& a, size_t a_index, const eval::ScoredSample& b, size_t b_index);

struct Selection {
  std::vector<Verdict> verdicts;  // per sample index
  std::vector<size_t> kept;       // sample indices, in ranking order
  // (chosen, rejected) sample indices. Rejected: the distinct incorrect samples in ranking order (the
  // best-scoring wrong answers first: hard negatives); pair j is (kept[j % kept], rejected[j]), for
  // j < min(pairs_per_prompt, rejected). No pairs without a kept sample.
  std::vector<std::pair<size_t, size_t>> pairs;
};

// correctness[i]: the correctness reward of sample i. A skipped problem selects nothing.
Selection select_samples(const eval::ProblemSamples& p, const std::vector<double>& correctness,
                         const SampleFilters& f, const SelectionSpec& spec);

}  // namespace r1::pipeline

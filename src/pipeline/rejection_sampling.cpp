#include "pipeline/rejection_sampling.h"

#include <algorithm>
#include <numeric>
#include <set>
#include <string_view>

#include "base/error.h"
#include "reward/language_reward.h"

namespace r1::pipeline {

namespace {

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

std::vector<std::string_view> words_of(const std::string& text) {
  std::vector<std::string_view> words;
  for (size_t i = 0; i < text.size();) {
    while (i < text.size() && is_space(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    if (i > start) words.emplace_back(text.data() + start, i - start);
  }
  return words;
}

}  // namespace

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Kept:
      return "kept";
    case Verdict::Incorrect:
      return "incorrect";
    case Verdict::Truncated:
      return "truncated";
    case Verdict::Format:
      return "format";
    case Verdict::Length:
      return "length";
    case Verdict::Language:
      return "language";
    case Verdict::Repetition:
      return "repetition";
    case Verdict::Duplicate:
      return "duplicate";
    case Verdict::NotBest:
      return "not_best";
  }
  return "?";
}

KeepMode parse_keep_mode(const std::string& s) {
  if (s == "best") return KeepMode::Best;
  if (s == "all") return KeepMode::All;
  fail("recipe key 'sample.keep' must be best or all (got '{}')", s);
}

double repetition_share(const std::string& text, int n) {
  R1_CHECK(n >= 1, "repetition n-gram length must be >= 1 (got {})", n);
  const std::vector<std::string_view> words = words_of(text);
  if (words.size() < size_t(n)) return 0.0;
  const size_t grams = words.size() - size_t(n) + 1;
  std::set<std::vector<std::string_view>> distinct;
  for (size_t i = 0; i < grams; ++i)
    distinct.emplace(words.begin() + ptrdiff_t(i), words.begin() + ptrdiff_t(i) + n);
  return 1.0 - double(distinct.size()) / double(grams);
}

std::string normalize_whitespace(const std::string& s) {
  std::string out;
  for (std::string_view w : words_of(s)) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

Verdict filter_sample(const eval::ScoredSample& s, double correctness, const SampleFilters& f) {
  if (!(correctness >= f.threshold)) return Verdict::Incorrect;  // NaN is not correct
  if (f.drop_truncated && s.finish == rollout::FinishReason::Length) return Verdict::Truncated;
  if (f.require_format && !reward::check_format(s.text, f.format).ok) return Verdict::Format;
  if (f.max_length > 0 && s.tokens > f.max_length) return Verdict::Length;
  if (!f.language.empty()) {
    const reward::LanguageShare sh = reward::language_share(reward::think_text(s.text, f.format), f.language);
    if (sh.words > 0 && sh.share < f.language_min) return Verdict::Language;
  }
  if (f.max_repetition > 0 && repetition_share(s.text, f.repetition_ngram) > f.max_repetition)
    return Verdict::Repetition;
  return Verdict::Kept;
}

bool ranks_before(const eval::ScoredSample& a, size_t a_index, const eval::ScoredSample& b, size_t b_index) {
  if (a.result.reward != b.result.reward) return a.result.reward > b.result.reward;
  if (a.tokens != b.tokens) return a.tokens < b.tokens;
  return a_index < b_index;
}

Selection select_samples(const eval::ProblemSamples& p, const std::vector<double>& correctness,
                         const SampleFilters& f, const SelectionSpec& spec) {
  const size_t n = p.samples.size();
  R1_CHECK(correctness.size() == n, "select_samples: {} correctness values for {} samples",
           correctness.size(), n);
  Selection sel;
  sel.verdicts.resize(n, Verdict::Kept);
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t(0));
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return ranks_before(p.samples[a], a, p.samples[b], b); });

  std::set<std::string> seen_kept, seen_rejected;
  std::vector<size_t> rejected;
  for (size_t i : order) {
    Verdict v = filter_sample(p.samples[i], correctness[i], f);
    if (v == Verdict::Incorrect) {
      if (!spec.dedup || seen_rejected.insert(normalize_whitespace(p.samples[i].text)).second)
        rejected.push_back(i);
    } else if (v == Verdict::Kept) {
      if (spec.dedup && !seen_kept.insert(normalize_whitespace(p.samples[i].text)).second)
        v = Verdict::Duplicate;
      else if (spec.keep == KeepMode::Best && sel.kept.size() >= size_t(std::max(spec.best_k, 0)))
        v = Verdict::NotBest;
      else
        sel.kept.push_back(i);
    }
    sel.verdicts[i] = v;
  }
  if (!sel.kept.empty()) {
    const size_t pairs = std::min(size_t(std::max(spec.pairs_per_prompt, 0)), rejected.size());
    for (size_t j = 0; j < pairs; ++j) sel.pairs.emplace_back(sel.kept[j % sel.kept.size()], rejected[j]);
  }
  return sel;
}

}  // namespace r1::pipeline

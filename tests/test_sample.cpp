// Rejection sampling: the filters, the best-k order, de-duplication and preference pairs on
// hand-made samples; `r1 sample` end to end with a tiny random byte-level model (its files and
// provenance); a run killed mid-way and resumed writes the same bytes as an uninterrupted one.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fs.h"
#include "test_util.h"
#include "pipeline/rejection_sampling.h"

using namespace r1;
using pipeline::Verdict;

namespace {

eval::ScoredSample sample(const std::string& text, double reward, int64_t tokens = 10,
                          rollout::FinishReason finish = rollout::FinishReason::Stop) {
  eval::ScoredSample s;
  s.text = text;
  s.tokens = tokens;
  s.finish = finish;
  s.result.reward = reward;
  return s;
}

eval::ProblemSamples problem(std::vector<eval::ScoredSample> samples) {
  return eval::ProblemSamples{0, std::string(1, 'Q'), false, std::move(samples)};
}

const std::string kGood = "<think>two plus two is four</think><answer>4</answer>";

TEST(SampleFilters, EachReasonInOrder) {
  pipeline::SampleFilters f;
  EXPECT_EQ(pipeline::filter_sample(sample(kGood, 1), 1.0, f), Verdict::Kept);
  EXPECT_EQ(pipeline::filter_sample(sample(kGood, 1), 0.5, f), Verdict::Incorrect);
  EXPECT_EQ(pipeline::filter_sample(sample(kGood, 1), std::nan(""), f), Verdict::Incorrect);
  // Incorrect comes first: an incorrect truncated sample counts as incorrect.
  const auto cut = sample(kGood, 1, 10, rollout::FinishReason::Length);
  EXPECT_EQ(pipeline::filter_sample(cut, 0.0, f), Verdict::Incorrect);
  EXPECT_EQ(pipeline::filter_sample(cut, 1.0, f), Verdict::Truncated);
  f.drop_truncated = false;
  EXPECT_EQ(pipeline::filter_sample(cut, 1.0, f), Verdict::Kept);

  f.require_format = true;
  EXPECT_EQ(pipeline::filter_sample(sample("the answer is 4", 1), 1.0, f), Verdict::Format);
  EXPECT_EQ(pipeline::filter_sample(sample(kGood, 1), 1.0, f), Verdict::Kept);

  f.max_length = 10;
  EXPECT_EQ(pipeline::filter_sample(sample(kGood, 1, 10), 1.0, f), Verdict::Kept);
  EXPECT_EQ(pipeline::filter_sample(sample(kGood, 1, 11), 1.0, f), Verdict::Length);

  f.language = "en";
  f.language_min = 0.9;
  EXPECT_EQ(
      pipeline::filter_sample(sample("<think>two plus 二加二 is four</think><answer>4</answer>", 1), 1.0, f),
      Verdict::Language);
  // Only the think block counts, and one without words has nothing mixed in.
  EXPECT_EQ(pipeline::filter_sample(sample("<think>2+2=4</think><answer>四</answer>", 1), 1.0, f),
            Verdict::Kept);

  f.max_repetition = 0.5;
  const std::string loop =
      "<think>so we add so we add so we add so we add so we add</think><answer>4</answer>";
  EXPECT_EQ(pipeline::filter_sample(sample(loop, 1), 1.0, f), Verdict::Repetition);
  EXPECT_EQ(pipeline::filter_sample(sample(kGood, 1), 1.0, f), Verdict::Kept);
}

TEST(SampleFilters, RepetitionShareIsSeqRepN) {
  // 12 words, 9 four-grams of which 4 are distinct: 1 - 4/9.
  EXPECT_NEAR(pipeline::repetition_share("a b c d a b c d a b c d", 4), 5.0 / 9.0, 1e-12);
  EXPECT_EQ(pipeline::repetition_share("a b c d e f g", 4), 0.0);
  EXPECT_EQ(pipeline::repetition_share("a b c", 4), 0.0);  // fewer words than n
  EXPECT_EQ(pipeline::repetition_share("", 4), 0.0);
  EXPECT_NEAR(pipeline::repetition_share("x x x x x", 1), 0.8, 1e-12);
  EXPECT_THROW(pipeline::repetition_share("a", 0), Error);
}

TEST(SampleFilters, WhitespaceNormalisation) {
  EXPECT_EQ(pipeline::normalize_whitespace("  a \n\t b  c\n"), "a b c");
  EXPECT_EQ(pipeline::normalize_whitespace(" \n "), "");
}

TEST(SampleSelect, BestKRanksByRewardThenLengthThenIndex) {
  const auto p =
      problem({sample("w", 1.0, 5), sample("x", 1.2, 10), sample("y", 1.2, 8), sample("z", 1.2, 8)});
  pipeline::SelectionSpec spec;
  spec.best_k = 2;
  const auto sel = pipeline::select_samples(p, {1, 1, 1, 1}, {}, spec);
  EXPECT_EQ(sel.kept, (std::vector<size_t>{2, 3}));
  EXPECT_EQ(sel.verdicts,
            (std::vector<Verdict>{Verdict::NotBest, Verdict::NotBest, Verdict::Kept, Verdict::Kept}));
  spec.keep = pipeline::KeepMode::All;
  EXPECT_EQ(pipeline::select_samples(p, {1, 1, 1, 1}, {}, spec).kept, (std::vector<size_t>{2, 3, 1, 0}));
  // Only correct samples are kept, whatever their ranking reward.
  EXPECT_EQ(pipeline::select_samples(p, {1, 0, 0, 1}, {}, spec).kept, (std::vector<size_t>{3, 0}));
}

TEST(SampleSelect, DuplicatesAfterWhitespaceNormalisationCountOnce) {
  const auto p = problem({sample("x  y", 1, 4), sample(" x y\n", 1, 3), sample("x z", 1, 5)});
  pipeline::SelectionSpec spec;
  spec.keep = pipeline::KeepMode::All;
  auto sel = pipeline::select_samples(p, {1, 1, 1}, {}, spec);
  EXPECT_EQ(sel.kept, (std::vector<size_t>{1, 2}));  // the shorter copy ranks first and stays
  EXPECT_EQ(sel.verdicts[0], Verdict::Duplicate);
  spec.dedup = false;
  EXPECT_EQ(pipeline::select_samples(p, {1, 1, 1}, {}, spec).kept, (std::vector<size_t>{1, 0, 2}));
}

TEST(SampleSelect, PairsJoinKeptWithDistinctIncorrectSamples) {
  // Samples 0, 2 correct; 1, 3, 4 incorrect, 4 a copy of 3.
  const auto p = problem({sample("right a", 1.2, 5), sample("wrong b", 0.2, 5), sample("right c", 1.2, 6),
                          sample("wrong d", 0.5, 5), sample("wrong  d", 0.5, 6)});
  const std::vector<double> correct = {1, 0, 1, 0, 0};
  pipeline::SelectionSpec spec;
  spec.keep = pipeline::KeepMode::All;
  spec.pairs_per_prompt = 5;
  auto sel = pipeline::select_samples(p, correct, {}, spec);
  EXPECT_EQ(sel.kept, (std::vector<size_t>{0, 2}));
  // Rejected in ranking order (the best-scoring wrong answer first), each text once; chosen cycles.
  EXPECT_EQ(sel.pairs, (std::vector<std::pair<size_t, size_t>>{{0, 3}, {2, 1}}));
  spec.pairs_per_prompt = 1;
  EXPECT_EQ(pipeline::select_samples(p, correct, {}, spec).pairs,
            (std::vector<std::pair<size_t, size_t>>{{0, 3}}));
  spec.pairs_per_prompt = 0;
  EXPECT_TRUE(pipeline::select_samples(p, correct, {}, spec).pairs.empty());
  // No kept sample, no pair; filtered (but correct) samples are never rejected ones.
  pipeline::SampleFilters f;
  f.max_length = 4;
  spec.pairs_per_prompt = 1;
  sel = pipeline::select_samples(p, correct, f, spec);
  EXPECT_TRUE(sel.kept.empty());
  EXPECT_TRUE(sel.pairs.empty());
  EXPECT_EQ(sel.verdicts[0], Verdict::Length);
}

TEST(SampleSelect, SkippedProblemSelectsNothing) {
  eval::ProblemSamples p;
  p.skipped = true;
  const auto sel = pipeline::select_samples(p, {}, {}, {});
  EXPECT_TRUE(sel.kept.empty() && sel.pairs.empty() && sel.verdicts.empty());
  EXPECT_THROW(pipeline::select_samples(problem({sample("a", 1)}), {}, {}, {}), Error);
}

TEST(SampleSelect, KeepModeNames) {
  EXPECT_EQ(pipeline::parse_keep_mode("best"), pipeline::KeepMode::Best);
  EXPECT_EQ(pipeline::parse_keep_mode("all"), pipeline::KeepMode::All);
  try {
    pipeline::parse_keep_mode("worst");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sample.keep"), std::string::npos) << e.what();
  }
}

// A tiny random byte-level model cannot solve GSM8K, so correctness here is the language reward
// (the share of English words in the output; random bytes score 0 to 0.4) at a threshold that about
// a quarter of the samples pass: the run still exercises every stage on honest verdicts.
constexpr double kThreshold = 0.15;

std::string sample_args(const test::TempDir& dir, const std::string& name) {
  return "sample model.tokenizer=byte model.init_preset=tiny data.path=" +
         test::source_path("data/gsm8k_train.jsonl") +
         " data.template=none data.limit=6 reward.spec=language+format:0.2 sample.correct_spec=language" +
         " sample.threshold=" + std::to_string(kThreshold) +
         " sample.n=8 sample.max_completion_tokens=24 sample.max_prompt_tokens=400 sample.chunk=2 "
         "sample.best_k=2"
         " sample.pairs_per_prompt=2 filters.drop_truncated=false run.dir=" +
         dir.path() + " run.name=" + name;
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> rows;
  for (const std::string& l : test::read_lines(path)) rows.push_back(nlohmann::json::parse(l));
  return rows;
}

TEST(SampleRun, WritesSftRowsPairsAndSummary) {
  test::TempDir dir;
  auto r = test::run_r1(sample_args(dir, "s"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rows = read_jsonl(dir.file("s/data.jsonl"));
  const auto pairs = read_jsonl(dir.file("s/pairs.jsonl"));
  const auto summary = nlohmann::json::parse(fs::read_file(dir.file("s/summary.json")));
  ASSERT_FALSE(rows.empty()) << "no sample passed; lower kThreshold";
  ASSERT_FALSE(pairs.empty()) << "no sample failed; raise kThreshold";
  std::map<int64_t, int> per_problem;
  for (const auto& row : rows) {
    for (const char* k :
         {"prompt", "completion", "question", "answer", "problem_id", "sample_index", "rank", "reward",
          "correct_reward", "rewards", "length", "finish", "model", "data", "seed", "temperature", "top_p"})
      EXPECT_TRUE(row.contains(k)) << k << " missing in " << row.dump();
    EXPECT_EQ(row["prompt"], row["question"]);  // data.template=none
    EXPECT_GE(row["correct_reward"].get<double>(), kThreshold);
    // Correctness (sample.correct_spec) and ranking (reward.spec) score separately; their language
    // parts must agree.
    EXPECT_TRUE(row["rewards"].contains("language") && row["rewards"].contains("format")) << row["rewards"];
    EXPECT_EQ(row["rewards"]["language"], row["correct_reward"]);
    EXPECT_EQ(row["model"], "init:tiny");
    EXPECT_EQ(row["data"], test::source_path("data/gsm8k_train.jsonl"));
    EXPECT_EQ(row["seed"], 1234);
    EXPECT_DOUBLE_EQ(row["temperature"].get<double>(), 0.6);
    EXPECT_LE(row["length"].get<int64_t>(), 24);
    ++per_problem[row["problem_id"].get<int64_t>()];
  }
  for (const auto& [id, n] : per_problem) {
    EXPECT_LE(n, 2) << "best_k=2 exceeded for problem " << id;
    EXPECT_LT(id, 6);
  }
  for (const auto& p : pairs) {
    EXPECT_GE(p["chosen_correct_reward"].get<double>(), kThreshold);
    EXPECT_LT(p["rejected_correct_reward"].get<double>(), kThreshold);
    EXPECT_NE(p["chosen"], p["rejected"]);
    EXPECT_TRUE(per_problem.count(p["problem_id"].get<int64_t>()));
  }
  EXPECT_EQ(summary["prompts"], 6);
  EXPECT_EQ(summary["samples"], 48);
  EXPECT_EQ(summary["kept"].get<size_t>(), rows.size());
  EXPECT_EQ(summary["pairs"].get<size_t>(), pairs.size());
  EXPECT_EQ(summary["accepted_prompts"].get<size_t>(), per_problem.size());
  EXPECT_NEAR(summary["acceptance_rate"].get<double>(), per_problem.size() / 6.0, 1e-12);
  int64_t verdicts = summary["kept"].get<int64_t>();
  for (const auto& [k, v] : summary["filtered"].items()) verdicts += v.get<int64_t>();
  EXPECT_EQ(verdicts, 48) << summary.dump();
  EXPECT_GT(summary["pass@1"].get<double>(), 0.0);
  EXPECT_LT(summary["pass@1"].get<double>(), 1.0);
  EXPECT_TRUE(fs::exists(dir.file("s/config.yaml")));
  EXPECT_NE(r.err.find("kept"), std::string::npos);

  // With the default drop_truncated, only samples that ended with the stop token are kept.
  r = test::run_r1(sample_args(dir, "t") + " filters.drop_truncated=true");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto t = nlohmann::json::parse(fs::read_file(dir.file("t/summary.json")));
  EXPECT_GT(t["filtered"]["truncated"].get<int64_t>(), 0) << t.dump();
  EXPECT_EQ(t["filtered"]["incorrect"], summary["filtered"]["incorrect"]);  // incorrect is decided first
  for (const auto& row : read_jsonl(dir.file("t/data.jsonl"))) EXPECT_EQ(row["finish"], "stop");
}

TEST(SampleRun, KilledAndResumedEqualsUninterrupted) {
  test::TempDir dir;
  auto full = test::run_r1(sample_args(dir, "full"));
  ASSERT_EQ(full.exit_code, 0) << full.err;
  auto killed = test::run_r1(sample_args(dir, "cut") + " --stop-after 0");
  ASSERT_NE(killed.exit_code, 0);  // ended abruptly after the first of three chunks
  EXPECT_FALSE(fs::exists(dir.file("cut/summary.json")));
  // A crash in the middle of the next chunk's append leaves a torn row behind.
  std::ofstream(dir.file("cut/data.jsonl"), std::ios::app) << "{\"prompt\": \"torn";
  std::ofstream(dir.file("cut/pairs.jsonl"), std::ios::app) << "{\"prompt\"";
  auto resumed = test::run_r1(sample_args(dir, "cut") + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming"), std::string::npos);
  const std::string a = fs::read_file(dir.file("full/data.jsonl")),
                    b = fs::read_file(dir.file("cut/data.jsonl"));
  EXPECT_FALSE(a.empty());
  EXPECT_TRUE(a == b) << "resumed data.jsonl differs from the uninterrupted run";
  EXPECT_TRUE(fs::read_file(dir.file("full/pairs.jsonl")) == fs::read_file(dir.file("cut/pairs.jsonl")));
  auto sa = nlohmann::json::parse(fs::read_file(dir.file("full/summary.json")));
  auto sb = nlohmann::json::parse(fs::read_file(dir.file("cut/summary.json")));
  for (auto* s : {&sa, &sb}) s->erase("data"), s->erase("pairs_file");
  EXPECT_EQ(sa, sb);
  // Resuming with other settings would mix two recipes in one file.
  auto changed = test::run_r1(sample_args(dir, "cut") + " sample.n=4 --resume");
  EXPECT_NE(changed.exit_code, 0);
  EXPECT_NE(changed.err.find("sample.n"), std::string::npos) << changed.err;
}

TEST(SampleRun, BadInputFailsBeforeCompute) {
  test::TempDir dir;
  auto r = test::run_r1(sample_args(dir, "x") + " data.path=" + dir.file("nope.jsonl"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("data.path"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(dir.file("nope.jsonl")), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("x")));

  r = test::run_r1(sample_args(dir, "x") + " sample.keep=worst");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("sample.keep"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("x")));

  r = test::run_r1(sample_args(dir, "x") + " sample.correct_spec=maths");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("sample.correct_spec"), std::string::npos) << r.err;

  r = test::run_r1(sample_args(dir, "x") + " filters.language=xx");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("filters.language"), std::string::npos) << r.err;

  r = test::run_r1(sample_args(dir, "x") + " --resume");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("progress"), std::string::npos) << r.err;
}

TEST(SampleRun, PrintRecipeShowsDefaultsAndOverrides) {
  auto r = test::run_r1("sample sample.n=3 --print-recipe");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* k : {"n: 3", "temperature: 0.6", "keep: \"best\"", "chunk: 64", "drop_truncated: true"})
    EXPECT_NE(r.out.find(k), std::string::npos) << k << " not in\n" << r.out;
}

}  // namespace

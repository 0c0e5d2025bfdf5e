// r1 eval: pass@k against its closed form, the cons@k vote and its tie rule, the metrics of judged
// samples, the benchmark presets on the real data files (every row loads, golds extracted and
// matched by the verifier), and whole runs of a tiny random model writing eval.json, samples.jsonl
// and summary.json.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "base/fs.h"
#include "data/jsonl_dataset.h"
#include "eval/eval_report.h"
#include "eval/eval_run.h"
#include "eval/majority_vote.h"
#include "eval/pass_at_k.h"
#include "reward/latex_normalize.h"
#include "reward/math_equivalence.h"
#include "reward/math_reward.h"
#include "test_util.h"
#include "run/run_inputs.h"

using namespace r1;
using eval::VoteRule;

namespace {

uint64_t choose(int64_t n, int64_t k) {
  if (k < 0 || k > n) return 0;
  uint64_t c = 1;
  for (int64_t i = 1; i <= k; ++i) c = c * uint64_t(n - k + i) / uint64_t(i);  // exact at every step
  return c;
}

TEST(EvalPassAtK, MatchesClosedFormExactly) {
  for (int64_t n = 1; n <= 30; ++n)
    for (int64_t c = 0; c <= n; ++c)
      for (int64_t k = 1; k <= n; ++k) {
        const long double exact = 1.0L - (long double)choose(n - c, k) / (long double)choose(n, k);
        EXPECT_NEAR(eval::pass_at_k(n, c, k), double(exact), 1e-12) << "n=" << n << " c=" << c << " k=" << k;
      }
}

TEST(EvalPassAtK, EdgeCases) {
  EXPECT_EQ(eval::pass_at_k(64, 0, 1), 0.0);    // nothing correct
  EXPECT_EQ(eval::pass_at_k(64, 0, 64), 0.0);
  EXPECT_EQ(eval::pass_at_k(64, 64, 1), 1.0);   // everything correct
  EXPECT_EQ(eval::pass_at_k(8, 1, 8), 1.0);     // k = n: any correct sample is drawn
  EXPECT_EQ(eval::pass_at_k(8, 5, 4), 1.0);     // n - c < k: a draw cannot miss
  EXPECT_NEAR(eval::pass_at_k(64, 17, 1), 17.0 / 64, 1e-15);  // pass@1 = c / n
  EXPECT_EQ(eval::pass_at_k(1, 1, 1), 1.0);
  EXPECT_THROW(eval::pass_at_k(4, 1, 5), Error);  // k > n
  EXPECT_THROW(eval::pass_at_k(4, 5, 1), Error);  // c > n
  EXPECT_THROW(eval::pass_at_k(4, 1, 0), Error);
  EXPECT_THROW(eval::pass_at_k(0, 0, 1), Error);
  EXPECT_THROW(eval::pass_at_k(4, -1, 1), Error);
}

TEST(EvalPassAtK, DefaultKsArePowersOfTwoAndK) {
  EXPECT_EQ(eval::default_pass_ks(1), (std::vector<int>{1}));
  EXPECT_EQ(eval::default_pass_ks(4), (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(eval::default_pass_ks(6), (std::vector<int>{1, 2, 4, 6}));
  EXPECT_EQ(eval::default_pass_ks(64), (std::vector<int>{1, 2, 4, 8, 16, 32, 64}));
}

using Answers = std::vector<std::optional<std::string>>;

TEST(EvalVote, MostVotesWin) {
  auto v = eval::majority_vote({"3", "5", "5", std::nullopt}, VoteRule::String);
  EXPECT_EQ(v.answer, "5");
  EXPECT_EQ(v.winner, 1);
  EXPECT_EQ(v.votes, 2);
}

TEST(EvalVote, TieGoesToTheEarliestFirstVote) {
  auto v = eval::majority_vote({"1", "2", "2", "1"}, VoteRule::String);
  EXPECT_EQ(v.answer, "1");
  EXPECT_EQ(v.winner, 0);
  v = eval::majority_vote({std::nullopt, "7", "9", "9", "7"}, VoteRule::String);
  EXPECT_EQ(v.answer, "7");
  EXPECT_EQ(v.winner, 1);
}

TEST(EvalVote, MissingAnswersNeverWin) {
  auto v = eval::majority_vote({std::nullopt, std::nullopt, "4", std::nullopt}, VoteRule::String);
  EXPECT_EQ(v.answer, "4");
  EXPECT_EQ(v.winner, 2);
  EXPECT_EQ(v.votes, 1);
  v = eval::majority_vote(Answers(4, std::nullopt), VoteRule::Verifier);
  EXPECT_EQ(v.winner, -1);  // nobody answered: no winner, the vote is wrong
  EXPECT_EQ(eval::majority_vote({}, VoteRule::String).winner, -1);
}

TEST(EvalVote, VerifierJoinsEquivalentSpellings) {
  const Answers a = {"0.5", "\\frac{1}{2}", "3", "3"};
  auto s = eval::majority_vote(a, VoteRule::String);  // "0.5" and "\frac{1}{2}" split: "3" has most
  EXPECT_EQ(s.answer, "3");
  EXPECT_EQ(s.votes, 2);
  auto v = eval::majority_vote(a, VoteRule::Verifier);  // 2 against 2: the earlier group wins
  EXPECT_EQ(v.answer, "0.5");
  EXPECT_EQ(v.winner, 0);
  EXPECT_EQ(v.votes, 2);
  EXPECT_EQ(eval::parse_vote_rule("string"), VoteRule::String);
  EXPECT_THROW(eval::parse_vote_rule("plurality"), Error);
}

TEST(EvalVote, AnswersAreExtractedAndNormalised) {
  EXPECT_EQ(eval::vote_answer("so x = 1, hence \\boxed{\\dfrac{1}{2}}"), "\\frac{1}{2}");
  EXPECT_EQ(eval::vote_answer("<think>2+2</think><answer>4</answer>"), "4");
  EXPECT_FALSE(eval::vote_answer("no idea").has_value());
}

eval::ScoredSample sample(const std::string& text, double reward, bool truncated = false) {
  eval::ScoredSample s;
  s.text = text;
  s.tokens = int64_t(text.size());
  s.finish = truncated ? rollout::FinishReason::Length : rollout::FinishReason::Stop;
  s.result.reward = reward;
  return s;
}

TEST(EvalReport, MetricsOfJudgedSamples) {
  std::vector<eval::ProblemSamples> scored(4);
  scored[0].samples = {sample("\\boxed{2}", 1), sample("\\boxed{3}", 0), sample("\\boxed{3}", 0), sample("hmm", 0)};
  scored[1].samples = {sample("\\boxed{5}", 1), sample("\\boxed{4}", 0), sample("\\boxed{5}", 1), sample("\\boxed{4}", 0)};
  scored[2].samples = {sample("a", 1, true), sample("b", 1, true), sample("c", 1, true), sample("d", 1, true)};
  scored[3].skipped = true;
  auto out = eval::judge(scored, 1.0, VoteRule::Verifier);
  EXPECT_EQ(out[0].vote.answer, "3");
  EXPECT_FALSE(out[0].vote_correct);  // the majority is wrong though one sample is right
  EXPECT_TRUE(out[1].vote_correct);   // 2 against 2: "5" voted first
  EXPECT_FALSE(out[2].vote_correct);  // all correct by reward, but no answer to vote with
  EXPECT_FALSE(out[3].vote_correct);
  eval::Metrics m = eval::summarize(out, 4, {1, 2, 4});
  EXPECT_EQ(m.problems, 4);
  EXPECT_EQ(m.skipped, 1);
  EXPECT_EQ(m.samples, 12);
  EXPECT_NEAR(m.pass_at_1, (0.25 + 0.5 + 1.0 + 0.0) / 4, 1e-12);
  ASSERT_EQ(m.pass_at.size(), 2u);
  EXPECT_EQ(m.pass_at[0].first, 2);
  EXPECT_NEAR(m.pass_at[0].second, (0.5 + 5.0 / 6 + 1.0 + 0.0) / 4, 1e-12);
  EXPECT_NEAR(m.pass_at[1].second, 0.75, 1e-12);
  EXPECT_NEAR(m.cons_at_k, 0.25, 1e-12);
  EXPECT_NEAR(m.truncated_share, 4.0 / 12, 1e-12);
  EXPECT_NEAR(m.no_answer_share, 5.0 / 12, 1e-12);
  nlohmann::json j = eval::metrics_json(m);
  for (const char* key : {"pass@1", "pass@2", "pass@4", "cons@4", "mean_length", "truncated_share",
                          "no_answer_share", "reflection_rate", "problems", "skipped"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_THROW(eval::summarize(out, 4, {8}), Error);  // k' above the samples per problem
  const std::string table = eval::format_table("benchmark", {{"toy", m}});
  EXPECT_NE(table.find("cons@4"), std::string::npos) << table;
  EXPECT_NE(table.find("43.8%"), std::string::npos) << table;
}

// --- the presets on the real benchmark files ------------------------------------------------------

struct Bench {
  const char* file;
  const char* preset;
  size_t rows;
};
const Bench kBenches[] = {{"gsm8k_test", "gsm8k", 1319}, {"math500", "math500", 500}, {"aime24", "aime24", 30},
                          {"amc23", "amc23", 40}};

std::vector<nlohmann::json> raw_rows(const std::string& path) {
  std::vector<nlohmann::json> rows;
  for (const std::string& l : test::read_lines(path)) rows.push_back(nlohmann::json::parse(l));
  return rows;
}

TEST(EvalData, EveryRowLoadsAndEachGoldMatchesItself) {
  reward::MathReward verifier;
  for (const Bench& b : kBenches) {
    const std::string path = test::source_path(std::string("data/") + b.file + ".jsonl");
    auto problems = data::load_jsonl_problems(path, data::preset_fields(b.preset));
    ASSERT_EQ(problems.size(), b.rows) << b.file;
    for (const auto& p : problems) {
      ASSERT_FALSE(p.answer.empty()) << b.file << " row " << p.id;
      EXPECT_TRUE(reward::equivalent(p.answer, p.answer).equal) << b.file << " row " << p.id << ": " << p.answer;
      const std::string boxed = "The work is done, so the answer is \\boxed{" + p.answer + "}.";
      EXPECT_EQ(verifier.score({boxed, p.answer}).reward, 1.0) << b.file << " row " << p.id << ": " << p.answer;
      EXPECT_EQ(eval::vote_answer(boxed), reward::normalize_latex(p.answer)) << b.file << " row " << p.id;
    }
  }
}

TEST(EvalData, Gsm8kGoldIsAfterHashesWithoutCommas) {
  const std::string path = test::source_path("data/gsm8k_test.jsonl");
  auto problems = data::load_jsonl_problems(path, data::preset_fields("gsm8k"));
  auto rows = raw_rows(path);
  ASSERT_EQ(rows.size(), problems.size());
  EXPECT_EQ(problems[0].answer, "18");
  int with_commas = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    std::string sol = rows[i]["answer"].get<std::string>();
    std::string tail = sol.substr(sol.rfind("####") + 4), want;
    with_commas += tail.find(',') != std::string::npos;
    for (char c : tail)
      if (c != ',' && c != ' ' && c != '\n') want += c;
    EXPECT_EQ(problems[i].answer, want) << "row " << i;
    EXPECT_EQ(problems[i].question, rows[i]["question"].get<std::string>());
  }
  EXPECT_GT(with_commas, 0);  // the file has thousands separators to remove
}

TEST(EvalData, AmcNumbersPrintAsIntegers) {
  const std::string path = test::source_path("data/amc23.jsonl");
  auto problems = data::load_jsonl_problems(path, data::preset_fields("amc23"));
  auto rows = raw_rows(path);
  EXPECT_EQ(problems[0].answer, "27");  // stored as 27.0
  for (size_t i = 0; i < rows.size(); ++i) {
    const double v = rows[i]["answer"].get<double>();
    if (v == double(int64_t(v))) {
      EXPECT_EQ(problems[i].answer, std::to_string(int64_t(v))) << "row " << i;
    }
    EXPECT_EQ(problems[i].meta["id"], rows[i]["id"]);
  }
}

TEST(EvalData, Math500KeepsSubjectAndLevel) {
  auto problems = data::load_jsonl_problems(test::source_path("data/math500.jsonl"), data::preset_fields("math500"));
  EXPECT_EQ(problems[0].meta["subject"], "Precalculus");
  EXPECT_EQ(problems[0].meta["level"], 2);
  EXPECT_EQ(problems[0].answer, "\\left( 3, \\frac{\\pi}{2} \\right)");
  for (const auto& p : problems) {
    ASSERT_TRUE(p.meta["subject"].is_string()) << "row " << p.id;
    ASSERT_TRUE(p.meta["level"].is_number_integer()) << "row " << p.id;
  }
  auto subjects = eval::group_by_meta(problems, "subject");
  auto levels = eval::group_by_meta(problems, "level");
  EXPECT_EQ(subjects.size(), 7u);  // MATH's seven subjects
  EXPECT_EQ(levels.size(), 5u);
  EXPECT_EQ(levels.begin()->first, "1");
  EXPECT_TRUE(eval::group_by_meta(problems, "year").empty());
}

TEST(EvalData, AimeKeepsItsIds) {
  auto problems = data::load_jsonl_problems(test::source_path("data/aime24.jsonl"), data::preset_fields("aime24"));
  EXPECT_EQ(problems[0].id, 0);  // ids stay row numbers (they seed the samples)
  EXPECT_EQ(problems[0].meta["id"], 60);
  EXPECT_EQ(problems[0].answer, "204");
}

TEST(EvalData, BadInputNamesFileAndLine) {
  try {
    data::preset_fields("mmlu");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown dataset preset 'mmlu' (gsm8k, math500, aime24, amc23)"),
              std::string::npos) << e.what();
  }
  test::TempDir dir;
  std::ofstream(dir.file("m.jsonl")) << "{\"problem\": \"1+1\", \"answer\": \"2\"}\n{\"problem\": \"2+2\"}\n";
  try {
    data::load_jsonl_problems(dir.file("m.jsonl"), data::preset_fields("math500"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("m.jsonl") + " line 2: missing answer field 'answer'"),
              std::string::npos) << e.what();
  }
}

// --- whole runs ----------------------------------------------------------------------------------

class ConstReward : public reward::Reward {
 public:
  explicit ConstReward(double v) : v_(v) {}
  std::string name() const override { return "const"; }
  reward::Result score(const reward::Sample&) const override { return {v_, {}}; }

 private:
  double v_;
};

// Four MATH-500-shaped problems; the last one's prompt is too long for eval.max_prompt_tokens.
run::Recipe tiny_recipe(const test::TempDir& dir, const std::string& name) {
  std::ofstream(dir.file("bench.jsonl"))
      << "{\"problem\": \"1+1=?\", \"answer\": \"2\", \"subject\": \"Algebra\", \"level\": 1}\n"
      << "{\"problem\": \"2+3=?\", \"answer\": \"5\", \"subject\": \"Algebra\", \"level\": 2}\n"
      << "{\"problem\": \"7-4=?\", \"answer\": \"3\", \"subject\": \"Geometry\", \"level\": 1}\n"
      << "{\"problem\": \"" << std::string(200, 'x') << "\", \"answer\": \"1\", \"subject\": \"Geometry\", "
      << "\"level\": 3}\n";
  run::Recipe r(eval::eval_recipe_defaults());
  r.apply_args({"model.tokenizer=byte", "model.init_preset=tiny", "data.path=" + dir.file("bench.jsonl"),
                "data.template=none", "eval.k=4", "eval.max_completion_tokens=12", "eval.max_prompt_tokens=64",
                "eval.batch=8", "run.dir=" + dir.path(), "run.name=" + name});
  return r;
}

TEST(EvalRun, WritesEvalJsonSamplesAndSummary) {
  test::TempDir dir;
  run::Recipe r = tiny_recipe(dir, "ok");
  const std::string run = eval::run_eval(r, ConstReward(1.0));
  EXPECT_EQ(run, dir.file("ok"));
  EXPECT_TRUE(fs::exists(dir.file("ok/config.yaml")));
  nlohmann::json ev = nlohmann::json::parse(fs::read_file(dir.file("ok/eval.json")));
  EXPECT_EQ(ev["benchmark"], "math500");
  EXPECT_EQ(ev["pass_k"], nlohmann::json({1, 2, 4}));
  EXPECT_EQ(ev["sampling"]["k"], 4);
  const nlohmann::json& m = ev["metrics"];
  EXPECT_EQ(m["problems"], 4);
  EXPECT_EQ(m["skipped"], 1);
  EXPECT_EQ(m["samples"], 12);
  EXPECT_DOUBLE_EQ(m["pass@1"].get<double>(), 0.75);  // every sample correct; the skipped one counts wrong
  EXPECT_DOUBLE_EQ(m["pass@2"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(m["pass@4"].get<double>(), 0.75);
  EXPECT_LE(m["cons@4"].get<double>(), 0.75);  // a random model rarely answers: no answer, no vote
  EXPECT_GT(m["mean_length"].get<double>(), 0.0);
  EXPECT_LE(m["mean_length"].get<double>(), 12.0);
  for (const char* k : {"truncated_share", "no_answer_share", "reflection_rate"}) {
    EXPECT_GE(m[k].get<double>(), 0.0) << k;
    EXPECT_LE(m[k].get<double>(), 1.0) << k;
  }
  EXPECT_EQ(ev["by_subject"]["Algebra"]["problems"], 2);
  EXPECT_DOUBLE_EQ(ev["by_subject"]["Algebra"]["pass@1"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(ev["by_subject"]["Geometry"]["pass@1"].get<double>(), 0.5);
  EXPECT_EQ(ev["by_level"]["1"]["problems"], 2);
  EXPECT_EQ(ev["skipped_problems"], nlohmann::json({3}));

  auto rows = test::read_lines(dir.file("ok/samples.jsonl"));
  ASSERT_EQ(rows.size(), 12u);
  std::set<std::pair<int64_t, int64_t>> seen;
  for (const std::string& line : rows) {
    nlohmann::json row = nlohmann::json::parse(line);
    for (const char* k : {"problem", "sample", "answer", "correct", "length", "truncated", "completion"})
      EXPECT_TRUE(row.contains(k)) << k << " in " << line;
    EXPECT_TRUE(row["correct"].get<bool>());
    EXPECT_GE(row["length"].get<int64_t>(), 1);
    seen.insert({row["problem"].get<int64_t>(), row["sample"].get<int64_t>()});
  }
  EXPECT_EQ(seen.size(), 12u);

  nlohmann::json summary = run::read_summary(run);
  EXPECT_DOUBLE_EQ(summary["pass@1"].get<double>(), 0.75);
  EXPECT_TRUE(summary.contains("cons@4"));
  EXPECT_EQ(summary["benchmark"], "math500");
}

TEST(EvalRun, NothingCorrectScoresZero) {
  test::TempDir dir;
  run::Recipe r = tiny_recipe(dir, "zero");
  r.set("eval.pass_k=[1, 3]");
  eval::run_eval(r, ConstReward(0.0));
  nlohmann::json ev = nlohmann::json::parse(fs::read_file(dir.file("zero/eval.json")));
  EXPECT_EQ(ev["pass_k"], nlohmann::json({1, 3}));
  for (const char* k : {"pass@1", "pass@3", "cons@4"}) EXPECT_EQ(ev["metrics"][k].get<double>(), 0.0) << k;
  EXPECT_FALSE(ev["metrics"].contains("pass@2"));
}

TEST(EvalRun, GreedySamplesOnce) {
  test::TempDir dir;
  run::Recipe r = tiny_recipe(dir, "greedy");
  r.set("eval.temperature=0");
  eval::run_eval(r, ConstReward(1.0));
  nlohmann::json ev = nlohmann::json::parse(fs::read_file(dir.file("greedy/eval.json")));
  EXPECT_EQ(ev["sampling"]["k"], 1);
  EXPECT_EQ(ev["metrics"]["samples"], 3);
  EXPECT_TRUE(ev["metrics"].contains("cons@1"));
}

TEST(EvalRun, BadRecipeFailsBeforeWriting) {
  test::TempDir dir;
  run::Recipe r = tiny_recipe(dir, "bad");
  r.set("data.preset=mmlu");
  EXPECT_THROW(eval::run_eval(r), Error);
  run::Recipe k = tiny_recipe(dir, "bad");
  k.set("eval.pass_k=[8]");
  try {
    eval::run_eval(k);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("eval.pass_k"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir.file("bad")));
}

TEST(EvalCli, PrintsTheTableAndRecipe) {
  test::TempDir dir;
  auto printed = test::run_r1("eval --print-recipe eval.k=64");
  ASSERT_EQ(printed.exit_code, 0) << printed.err;
  EXPECT_NE(printed.out.find("k: 64"), std::string::npos) << printed.out;
  EXPECT_NE(printed.out.find("math500.jsonl"), std::string::npos);
  tiny_recipe(dir, "unused");  // writes bench.jsonl
  const std::string args = "eval model.tokenizer=byte model.init_preset=tiny data.template=none data.path=" +
                           dir.file("bench.jsonl") + " eval.k=2 eval.max_completion_tokens=8 data.limit=2 run.dir=" +
                           dir.path() + " run.name=cli";
  auto run = test::run_r1(args);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("cons@2"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("subject"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("level"), std::string::npos) << run.out;
  EXPECT_TRUE(fs::exists(dir.file("cli/summary.json")));
  auto bad = test::run_r1("eval model.tokenizer=byte data.preset=mmlu run.dir=" + dir.path());
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("mmlu"), std::string::npos) << bad.err;
}

}  // namespace

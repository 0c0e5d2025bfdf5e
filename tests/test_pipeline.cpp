// r1 pipeline: the four-stage R1 recipe runs end to end at demo scale (seeded, CPU), records each
// stage's metric, resumes inside a stage that was killed, and skips finished stages on a re-run;
// bad pipelines fail before any compute, naming the stage, key and file.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "test_util.h"

using namespace r1;
using nlohmann::json;

namespace {

// The built-in recipe, shrunk to a test's budget (each stage still does real work).
std::string demo_args(const test::TempDir& dir) {
  std::string a = "pipeline " + test::source_path("recipes/pipeline_r1_demo.yaml") + " dir=" + dir.file("p");
  for (const char* o : {"data.task.train_problems=600", "data.task.test_problems=32", "data.task.cold_start_examples=600",
                        "data.task.digits=2", "cold_start.train.steps=400", "cold_start.train.warmup_steps=40",
                        "reasoning_rl.train.steps=8", "reasoning_rl.grpo.prompts_per_step=8",
                        // The 400-step cold start is fragile: 8 steps at the recipe's lr (1e-4, for 120 steps)
                        // took its accuracy from 0.19 to 0.02 on one machine (float rounding differs by CPU:
                        // the same seed gives another model), leaving the rejection stage nothing to keep.
                        "reasoning_rl.train.lr=1e-5",
                        "reasoning_rl.run.save_every=2", "rejection.data.limit=96", "rejection.sample.n=4",
                        "rejection.sample.chunk=16", "rs_sft.train.epochs=1", "rs_sft.train.batch_size=8",
                        "rs_sft.run.save_every=1", "preferences.data.limit=64", "preferences.sample.chunk=32", "reward_model.train.epochs=1", "reward_model.train.batch_size=8",
                        "alignment_rl.train.steps=2", "alignment_rl.grpo.prompts_per_step=8", "eval_cold_start.eval.k=2",
                        "eval_reasoning_rl.eval.k=2", "eval_final.eval.k=2"})
    a += std::string(" ") + o;
  return a;
}

json stages_of(const std::string& pipeline_json) {
  return json::parse(fs::read_file(pipeline_json)).at("stages");
}

std::string write_file(const test::TempDir& dir, const std::string& name, const std::string& text) {
  std::ofstream(dir.file(name)) << text;
  return dir.file(name);
}

}  // namespace

TEST(Pipeline, FourStageR1DemoRunsResumesAndSkips) {
  test::TempDir dir;
  // Killed inside the rejection-sampling SFT stage, after its second step.
  auto killed = test::run_r1(demo_args(dir) + " --stop-in rs_sft:1");
  ASSERT_NE(killed.exit_code, 0) << killed.err;
  EXPECT_TRUE(fs::exists(dir.file("p/rejection/stage_done.json")));
  EXPECT_FALSE(fs::exists(dir.file("p/rs_sft/stage_done.json")));

  auto resumed = test::run_r1(demo_args(dir));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  json st = stages_of(dir.file("p/pipeline.json"));
  ASSERT_EQ(st.size(), 11u);
  std::map<std::string, json> by;
  for (const auto& s : st) by[s.at("name").get<std::string>()] = s;
  for (const char* done : {"data", "cold_start", "eval_cold_start", "reasoning_rl", "eval_reasoning_rl", "rejection"})
    EXPECT_EQ(by[done].at("status"), "skipped") << done;
  EXPECT_EQ(by["rs_sft"].at("status"), "resumed");
  for (const char* ran : {"preferences", "reward_model", "alignment_rl", "eval_final"}) EXPECT_EQ(by[ran].at("status"), "ran") << ran;

  // Each stage's headline metric is recorded.
  EXPECT_LT(by["cold_start"]["summary"].at("final_loss").get<double>(), 1.0);
  EXPECT_GT(by["reasoning_rl"]["summary"].at("reward/mean").get<double>(), 0.0);
  EXPECT_GT(by["rejection"]["summary"].at("kept").get<int64_t>(), 0);
  EXPECT_TRUE(by["reward_model"]["summary"].contains("loss"));
  EXPECT_TRUE(by["reward_model"]["summary"].contains("accuracy"));
  for (const char* e : {"eval_cold_start", "eval_reasoning_rl", "eval_final"}) {
    const double p = by[e]["summary"].at("pass@1").get<double>();
    EXPECT_GE(p, 0.0) << e;
    EXPECT_LE(p, 1.0) << e;
  }
  // The cold start alone already solves a share of 2-digit additions (0.44 with this seed on one
  // machine, 0.20 on another: the training's float rounding depends on the CPU's BLAS kernels),
  // rejection sampling keeps correct samples for most prompts, and the reward model separates its
  // training pairs.
  EXPECT_GT(by["eval_cold_start"]["summary"].at("pass@1").get<double>(), 0.1);
  EXPECT_GT(by["rejection"]["summary"].at("acceptance_rate").get<double>(), 0.3);
  EXPECT_TRUE(fs::exists(dir.file("p/alignment_rl/model/model.safetensors")));
  EXPECT_TRUE(fs::exists(dir.file("p/reward_model/model/config.json")));

  // A re-run finds every stage finished and runs nothing.
  auto again = test::run_r1(demo_args(dir));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  for (const auto& s : stages_of(dir.file("p/pipeline.json"))) EXPECT_EQ(s.at("status"), "skipped") << s.dump();
}

// The addition stage's test problems are held out: no training problem or cold-start example adds
// the same two numbers (in either order), at the 2-digit size where a random draw repeats often.
TEST(Pipeline, AdditionTestProblemsAreNeverSeenInTraining) {
  test::TempDir dir;
  const std::string recipe = write_file(dir, "p.yaml", "dir: " + dir.file("out") + R"(
stages:
  - name: data
    kind: addition
    set: {task: {digits: 2, train_problems: 600, test_problems: 32, cold_start_examples: 600}}
)");
  auto r = test::run_r1("pipeline " + recipe);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto operands = [](const std::string& question) {
    const size_t plus = question.find('+');
    std::string a = question.substr(0, plus), b = question.substr(plus + 1);
    return a < b ? a + "+" + b : b + "+" + a;
  };
  std::set<std::string> held;
  for (const auto& l : test::read_lines(dir.file("out/data/test.jsonl")))
    held.insert(operands(json::parse(l).at("question").get<std::string>()));
  EXPECT_EQ(test::read_lines(dir.file("out/data/test.jsonl")).size(), 32u);
  size_t train = 0, cold = 0;
  for (const auto& l : test::read_lines(dir.file("out/data/train.jsonl"))) {
    EXPECT_EQ(held.count(operands(json::parse(l).at("question").get<std::string>())), 0u) << l;
    ++train;
  }
  for (const auto& l : test::read_lines(dir.file("out/data/cold_start.jsonl"))) {
    std::string prompt = json::parse(l).at("prompt").get<std::string>();
    prompt.pop_back();  // the "=" suffix
    EXPECT_EQ(held.count(operands(prompt)), 0u) << l;
    ++cold;
  }
  EXPECT_GT(train, 550u);
  EXPECT_GT(cold, 550u);
}

TEST(Pipeline, ChangedSettingsRunTheStageAgainAndWhatReadsIt) {
  test::TempDir dir;
  const std::string recipe = write_file(dir, "p.yaml", R"(dir: )" + dir.file("out") + R"(
stages:
  - name: data
    kind: addition
    set: {task: {train_problems: 20, test_problems: 5, cold_start_examples: 5}}
  - name: more
    kind: addition
    set: {task.seed: 3, task.train_problems: 10, task.test_problems: 2, task.cold_start_examples: 2}
)");
  ASSERT_EQ(test::run_r1("pipeline " + recipe).exit_code, 0);
  auto same = test::run_r1("pipeline " + recipe);
  ASSERT_EQ(same.exit_code, 0) << same.err;
  EXPECT_EQ(stages_of(dir.file("out/pipeline.json"))[0].at("status"), "skipped");
  auto changed = test::run_r1("pipeline " + recipe + " data.task.seed=2");
  ASSERT_EQ(changed.exit_code, 0) << changed.err;
  json st = stages_of(dir.file("out/pipeline.json"));
  EXPECT_EQ(st[0].at("status"), "ran");
  EXPECT_EQ(st[1].at("status"), "skipped");  // it reads nothing of stage data
}

TEST(Pipeline, MissingInputNamesTheStageKeyAndPath) {
  test::TempDir dir;
  const std::string recipe = write_file(dir, "p.yaml", R"(dir: )" + dir.file("out") + R"(
stages:
  - name: data
    kind: addition
    set: {task: {train_problems: 20, test_problems: 5, cold_start_examples: 5}}
  - name: sft
    kind: sft
    set:
      model: {tokenizer: byte}
      data: {path: "${data}/cold_start_typo.jsonl", template: none}
)");
  auto r = test::run_r1("pipeline " + recipe);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("stage 'sft' input data.path"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("cold_start_typo.jsonl does not exist yet"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("p.yaml line 10"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(dir.file("out/data/stage_done.json")));  // the stage before it ran
  EXPECT_FALSE(fs::exists(dir.file("out/sft/stage_done.json")));
}

TEST(Pipeline, BadPipelinesFailBeforeAnyStageRuns) {
  test::TempDir dir;
  const std::string head = "dir: " + dir.file("out") + "\nstages:\n  - name: data\n    kind: addition\n";
  // A reference to a later stage.
  auto later = test::run_r1("pipeline " + write_file(dir, "a.yaml", head + R"(    set: {task.seed: 1}
  - name: sft
    kind: sft
    set: {model.tokenizer: byte, data.path: "${eval}/x.jsonl"}
  - name: eval
    kind: eval
)"));
  EXPECT_NE(later.exit_code, 0);
  EXPECT_NE(later.err.find("${eval}, which is not an earlier stage"), std::string::npos) << later.err;
  // A typo in the last stage's keys.
  auto typo = test::run_r1("pipeline " + write_file(dir, "b.yaml", head + R"(  - name: sft
    kind: sft
    set: {model.tokenizer: byte, train.stepz: 3}
)"));
  EXPECT_NE(typo.exit_code, 0);
  EXPECT_NE(typo.err.find("train.steps"), std::string::npos) << typo.err;
  EXPECT_NE(typo.err.find("stage 'sft'"), std::string::npos) << typo.err;
  // An unknown stage kind.
  auto kind = test::run_r1("pipeline " + write_file(dir, "c.yaml", head + "  - name: x\n    kind: distil\n"));
  EXPECT_NE(kind.exit_code, 0);
  EXPECT_NE(kind.err.find("unknown stage kind 'distil'"), std::string::npos) << kind.err;
  EXPECT_FALSE(fs::exists(dir.file("out")));
}

// LoRA in a pipeline: a GRPO stage with train.lora.* over the SFT stage's model writes an adapter
// directory, and the eval stage after it reads that directory (base + adapter) as its model.
TEST(Pipeline, LoraStageFeedsTheNextStage) {
  test::TempDir dir;
  const std::string recipe = write_file(dir, "p.yaml", R"(dir: )" + dir.file("out") + R"(
stages:
  - name: data
    kind: addition
    set: {task: {digits: 2, train_problems: 40, test_problems: 8, cold_start_examples: 40}}
  - name: sft
    kind: sft
    set:
      model: {tokenizer: byte, init_preset: tiny}
      data: {path: "${data}/cold_start.jsonl", template: none, max_tokens: 128}
      train: {batch_size: 8, steps: 4}
  - name: rl
    kind: grpo
    set:
      model: {path: "${sft}/model", tokenizer: byte}
      data: {path: "${data}/train.jsonl", preset: custom, template: none, prompt_suffix: "="}
      reward: {spec: "math+format:0.2"}
      grpo: {prompts_per_step: 2, group_size: 2, max_prompt_tokens: 16, max_completion_tokens: 16, kl_coef: 0.01}
      train: {steps: 2, lora: {rank: 4, alpha: 8, targets: [all-linear]}}
  - name: eval_rl
    kind: eval
    set:
      model: {path: "${rl}/model", tokenizer: byte}
      data: {path: "${data}/test.jsonl", preset: custom, template: none, prompt_suffix: "="}
      eval: {k: 1, max_completion_tokens: 16}
)");
  auto r = test::run_r1("pipeline " + recipe);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir.file("out/rl/model/adapter_config.json")));
  EXPECT_FALSE(fs::exists(dir.file("out/rl/model/config.json")));
  const json st = stages_of(dir.file("out/pipeline.json"));
  ASSERT_EQ(st.size(), 4u);
  EXPECT_EQ(st[3].at("status"), "ran");
  EXPECT_TRUE(fs::exists(dir.file("out/eval_rl/summary.json")));
}

// Environments for multi-turn rollouts: tool-call formats, the Python tool's limits (a call that
// hangs or floods its output is cut, and the episode is still scored), the running-sum task's
// exact checker, the recipe's env keys, and a GRPO step over episodes.
#include <gtest/gtest.h>

#include "base/error.h"
#include "base/timer.h"
#include "data/arithmetic.h"
#include "env/episodes.h"
#include "env/python_math_env.h"
#include "env/python_tool.h"
#include "env/running_sum_env.h"
#include "env/tool_call.h"
#include "reward/composite.h"
#include "reward/sandbox.h"
#include "run/recipe.h"
#include "run/run_env.h"
#include "train/grpo.h"
#include "train/grpo_run.h"

using namespace r1;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool sandbox_ok() { return reward::sandbox_support().complete(); }

env::PythonToolOptions quick_tool() {
  env::PythonToolOptions o;
  o.timeout_seconds = 1.0;
  o.output_bytes = 64;
  return o;
}

}  // namespace

TEST(EnvToolCall, FormatsEndAtTheCloseAndGiveTheCode) {
  using env::ToolFormat;
  EXPECT_FALSE(env::ends_tool_call(ToolFormat::Markdown, "think ```"));  // an opening fence, no tag
  EXPECT_FALSE(env::ends_tool_call(ToolFormat::Markdown, "```python\nprint(1)\n"));
  EXPECT_TRUE(env::ends_tool_call(ToolFormat::Markdown, "x ```python\nprint(1)\n```"));
  EXPECT_EQ(*env::tool_call_code(ToolFormat::Markdown, "x ```python\nprint(1)\n```"), "\nprint(1)\n");
  // A closed block of another language, then a new fence, is not a call.
  EXPECT_FALSE(env::ends_tool_call(ToolFormat::Markdown, "```python\na\n```\nthen ```"));
  EXPECT_TRUE(env::ends_tool_call(ToolFormat::CodeTag, "<code>print(2)</code>"));
  EXPECT_EQ(*env::tool_call_code(ToolFormat::CodeTag, "so <code>print(2)</code>"), "print(2)");
  const std::string call = "<tool_call>\n{\"name\": \"python\", \"arguments\": {\"code\": \"print(3)\"}}\n</tool_call>";
  EXPECT_TRUE(env::ends_tool_call(ToolFormat::ToolCall, call));
  EXPECT_EQ(*env::tool_call_code(ToolFormat::ToolCall, call), "print(3)");
  EXPECT_FALSE(env::tool_call_code(ToolFormat::ToolCall, "<tool_call>{not json}</tool_call>").has_value());
  EXPECT_EQ(env::tool_observation(ToolFormat::Markdown, "42"), "\n```output\n42\n```\n");
  EXPECT_NE(env::tool_observation(ToolFormat::ToolCall, "42").find("<tool_response>\n42\n</tool_response>"),
            std::string::npos);
  EXPECT_NE(error_of([] { env::parse_tool_format("xml", "env.tool_format"); }).find("env.tool_format"),
            std::string::npos);
}

TEST(EnvPythonTool, RunsCodeAndCutsHangsFloodsAndMemory) {
  if (!sandbox_ok()) GTEST_SKIP() << "sandbox incomplete here";
  const env::PythonToolOptions o = quick_tool();
  env::ToolRun r = env::run_python_tool("print(123456789 * 987654321)", o);
  EXPECT_FALSE(r.error);
  EXPECT_EQ(r.output, "121932631112635269");
  Timer t;
  r = env::run_python_tool("while True:\n    pass\n", o);
  EXPECT_LT(t.seconds(), 5.0);
  EXPECT_TRUE(r.error && r.timed_out);
  EXPECT_NE(r.output.find("TimeoutError"), std::string::npos) << r.output;
  r = env::run_python_tool("while True:\n    print('x' * 1000)\n", o);
  EXPECT_TRUE(r.error && r.truncated);
  EXPECT_LT(r.output.size(), 64u + 120u) << r.output;
  EXPECT_NE(r.output.find("[output truncated]"), std::string::npos);
  r = env::run_python_tool("print('y' * 500)", o);  // ends by itself, but prints past the cap
  EXPECT_FALSE(r.error);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.output.substr(0, 64), std::string(64, 'y'));
  r = env::run_python_tool("x = bytearray(2 * 1024 ** 3)", o);
  EXPECT_TRUE(r.error);
  EXPECT_NE(r.output.find("MemoryError"), std::string::npos) << r.output;
  r = env::run_python_tool("1/0", o);
  EXPECT_TRUE(r.error);
  EXPECT_NE(r.output.find("ZeroDivisionError"), std::string::npos) << r.output;
}

TEST(EnvPythonMath, HangingCallIsCutCountedAndTheEpisodeScored) {
  if (!sandbox_ok()) GTEST_SKIP() << "sandbox incomplete here";
  env::PythonMathOptions o;
  o.tool = quick_tool();
  o.max_calls = 2;
  env::PythonMathEnv e(o);
  std::unique_ptr<env::Episode> ep = e.reset({0, "6*7", "42"});
  env::StepResult s = ep->step({{}, "```python\nwhile True: pass\n```"});
  EXPECT_NE(s.observation.find("TimeoutError"), std::string::npos) << s.observation;
  s = ep->step({{}, "```python\nprint(6*7)\n```"});
  EXPECT_EQ(s.observation, "\n```output\n42\n```\n");
  s = ep->step({{}, "```python\nprint(1)\n```"});  // over max_calls
  EXPECT_NE(s.observation.find("no tool calls left"), std::string::npos);
  const env::EpisodeOutcome out = ep->finish("...");
  EXPECT_EQ(out.tool_calls, 3);
  EXPECT_EQ(out.tool_errors, 2);
  EXPECT_EQ(out.details.at("tool_timeouts"), 1);
  // The episode's sequence is scored like any other: the reward reads the model's text.
  train::Group g;
  g.problem = 0;
  g.prompt = {1};
  g.seqs.resize(2);
  g.seqs[0].text = "<think>x</think><answer>42</answer>";
  g.seqs[0].out.tokens = {1, 2};
  g.seqs[0].out.finish = rollout::FinishReason::Stop;
  g.seqs[0].episode = out;
  g.seqs[1].text = "<answer>41</answer>";
  g.seqs[1].out.tokens = {1};
  g.seqs[1].episode = env::EpisodeOutcome{};
  std::vector<train::Group> groups = {g};
  auto reward = reward::make_reward("math");
  train::GrpoConfig cfg;
  const train::ScoreSums sums = train::score_groups(groups, *reward, {{0, "6*7", "42"}}, cfg);
  EXPECT_EQ(groups[0].seqs[0].score, 1.0);
  EXPECT_EQ(groups[0].seqs[1].score, 0.0);
  EXPECT_EQ(groups[0].seqs[0].details.at("env").at("tool_errors"), 2);
  EXPECT_EQ(sums.tool_calls, 3);
  EXPECT_EQ(sums.tool_errors, 2);
  EXPECT_EQ(sums.episodes, 2);
}

TEST(EnvRunningSum, ExactCheckerRewardsEachCorrectTurn) {
  env::RunningSumEnv e({3, 2, 5});
  std::unique_ptr<env::Episode> ep = e.reset({17, "12+30", "42"});
  EXPECT_TRUE(e.ends_turn("<answer>42</answer>"));
  EXPECT_FALSE(e.ends_turn("<answer>42"));
  env::StepResult s = ep->step({{}, "<answer>42</answer>"});
  const int64_t a1 = e.addend(17, 1), a2 = e.addend(17, 2);
  EXPECT_GE(a1, 10);
  EXPECT_LT(a1, 100);
  EXPECT_EQ(s.observation, "\n+" + std::to_string(a1) + "=");
  EXPECT_FALSE(s.done);
  EXPECT_NEAR(s.reward, 1.0 / 3, 1e-12);
  s = ep->step({{}, "<answer>" + std::to_string(42 + a1 + 1) + "</answer>"});  // off by one
  EXPECT_EQ(s.reward, 0.0);
  s = ep->step({{}, "<answer>" + std::to_string(42 + a1 + a2) + "</answer>"});  // the true total
  EXPECT_TRUE(s.done);
  EXPECT_NEAR(s.reward, 1.0 / 3, 1e-12);
  const env::EpisodeOutcome out = ep->finish("");
  EXPECT_NEAR(out.reward, 2.0 / 3, 1e-12);
  EXPECT_EQ(out.turns, 3);
  EXPECT_EQ(out.details.at("correct"), 2);
  EXPECT_EQ(e.addend(17, 1), env::RunningSumEnv({3, 2, 5}).addend(17, 1));  // replays
}

TEST(EnvRecipe, KeysAreValidatedWithClearErrors) {
  auto recipe = [](std::vector<std::string> sets) {
    run::Recipe r(train::grpo_recipe_defaults());
    for (const auto& s : sets) r.set(s);
    return r;
  };
  EXPECT_EQ(run::make_recipe_env(recipe({}), 1), nullptr);
  EXPECT_NE(error_of([&] { run::make_recipe_env(recipe({"env.name=shell"}), 1); }).find("env.name"),
            std::string::npos);
  EXPECT_NE(error_of([&] { run::make_recipe_env(recipe({"env.name=python", "env.max_turns=0"}), 1); })
                .find("env.max_turns"),
            std::string::npos);
  EXPECT_NE(error_of([&] { run::make_recipe_env(recipe({"env.name=python", "env.tool_format=xml"}), 1); })
                .find("env.tool_format"),
            std::string::npos);
  EXPECT_NE(error_of([&] { run::make_recipe_env(recipe({"env.name=python", "env.timeout_seconds=0"}), 1); })
                .find("env.timeout_seconds"),
            std::string::npos);
  EXPECT_NE(error_of([&] { run::make_recipe_env(recipe({"env.name=python", "env.output_bytes=0"}), 1); })
                .find("env.output_bytes"),
            std::string::npos);
  EXPECT_NE(error_of([&] { run::make_recipe_env(recipe({"env.name=running_sum", "env.turns=9"}), 1); })
                .find("env.turns"),
            std::string::npos);
  EXPECT_NE(error_of([&] { train::grpo_config(recipe({"env.threads=0"})); }).find("env.threads"), std::string::npos);
  EXPECT_NE(error_of([&] { recipe({"env.bogus=1"}); }).find("env.bogus"), std::string::npos);
  auto sum = run::make_recipe_env(recipe({"env.name=running_sum", "env.turns=2"}), 1);
  ASSERT_NE(sum, nullptr);
  EXPECT_EQ(sum->name(), "running_sum");
  const train::GrpoConfig g = train::grpo_config(recipe({"env.max_turns=6", "env.threads=3"}));
  EXPECT_EQ(g.max_turns, 6);
  EXPECT_EQ(g.tool_threads, 3);
}

namespace {

// The running-sum environment on a tiny random model. Turns end at "</answer>", which a random
// model never writes: they end after 6 bytes instead.
struct SixByteTurns final : env::Environment {
  env::RunningSumEnv inner{{2, 2, 1}};
  std::string name() const override { return "six"; }
  bool ends_turn(const std::string& t) const override { return t.size() >= 6; }
  std::unique_ptr<env::Episode> reset(const data::Problem& p) const override { return inner.reset(p); }
};

struct EnvRun {
  text::ByteCodec codec;
  model::Transformer m{tiny_byte_config()};
  SixByteTurns env;
  std::vector<data::Problem> problems = data::addition_problems(8, 2, 1);
  std::unique_ptr<reward::Reward> reward = reward::make_reward("format");
  train::GrpoConfig gc;

  static model::ModelConfig tiny_byte_config() {
    model::ModelConfig cfg = model::preset_config("tiny", "qwen2");
    model::override_config(cfg, "vocab_size", "257");
    return cfg;
  }
  explicit EnvRun(int group_size) {
    m.init_random(3);
    gc.prompts_per_step = 2;
    gc.group_size = group_size;
    gc.max_prompt_tokens = 16;
    gc.max_completion_tokens = 24;
    gc.max_turns = 2;
    gc.lr = 1e-3;
  }
  train::GrpoTrainer trainer(int64_t steps) {
    return train::GrpoTrainer(m, codec, *reward, problems, [](const data::Problem& p) { return p.question + "="; },
                              gc, steps);
  }
};

}  // namespace

TEST(EnvGrpo, StepOverEpisodesMasksObservationsAndReportsTurns) {
  EnvRun run(2);
  train::GrpoTrainer trainer = run.trainer(1);
  trainer.set_environment(&run.env);
  const train::StepStats st = trainer.step(0);
  ASSERT_TRUE(st.turns_per_episode.has_value());
  EXPECT_GE(*st.turns_per_episode, 1.0);
  EXPECT_LE(*st.turns_per_episode, 2.0);
  EXPECT_LE(st.response_length_max, 24 - 4);  // observations ("\n+NN=", 5 bytes) are not the model's length
  EXPECT_EQ(st.tool_calls_per_episode, 0.0);
  const auto& samples = trainer.last_samples();
  ASSERT_FALSE(samples.empty());
  ASSERT_TRUE(samples[0].turns.is_array());
  EXPECT_EQ(samples[0].turns[0].at("role"), "model");
  EXPECT_EQ(samples[0].turns[1].at("role"), "observation");
  EXPECT_EQ(samples[0].turns[1].at("text").get<std::string>().substr(0, 2), "\n+");
  bool found = false;
  for (const auto& [name, v] : st.reward_parts) found = found || name == "env";
  EXPECT_TRUE(found);
}

// rollout.exact_logprobs through multi-turn episodes: the tokens after an observation are decoded
// over a cache that holds it, and the trainer scores the whole trajectory at once; the sampler's
// log-probs are still the trainer's bits (the first update's gap is 0.0, nothing clips).
TEST(EnvGrpo, ExactLogprobsHoldAcrossObservations) {
  EnvRun run(4);
  run.gc.exact_logprobs = true;
  run.gc.loss.clip_low = run.gc.loss.clip_high = 1e-7;  // any ratio but exactly 1 clips
  train::GrpoTrainer trainer = run.trainer(2);
  trainer.set_environment(&run.env);
  for (int step = 0; step < 2; ++step) {
    const train::StepStats st = trainer.step(step);
    ASSERT_TRUE(st.logp_gap_max.has_value());
    EXPECT_EQ(*st.logp_gap_max, 0.0) << "step " << step;
    EXPECT_EQ(st.clip_fraction_first, 0.0) << "step " << step;
    bool observed = false;
    for (const auto& s : trainer.last_samples())
      for (const auto& turn : s.turns) observed = observed || turn.at("role") == "observation";
    EXPECT_TRUE(observed) << "no episode had an observation: the test would not cross one";
  }
}

TEST(EnvGrpo, LossMaskExcludesObservationTokens) {
  // A trajectory of 8 tokens whose tokens 2..4 are an observation: the loss and its gradient are
  // those of the 5 model tokens alone, and the observation gets no gradient.
  const std::vector<float> logp = {-1.0f, -0.5f, -3.0f, -2.0f, -0.1f, -0.7f, -1.2f, -0.3f};
  const std::vector<float> old = {-1.1f, -0.4f, 0.0f, 0.0f, 0.0f, -0.9f, -1.0f, -0.35f};
  const std::vector<uint8_t> mask = {1, 1, 0, 0, 0, 1, 1, 1};
  std::vector<float> lp5, old5;
  for (size_t t = 0; t < 8; ++t)
    if (mask[t]) {
      lp5.push_back(logp[t]);
      old5.push_back(old[t]);
    }
  for (auto red : {train::LossReduction::SeqMeanTokenMean, train::LossReduction::TokenMean}) {
    train::GrpoLossConfig cfg;
    cfg.reduction = red;
    std::vector<float> d8, d5;
    const auto masked = train::grpo_loss(logp, old, {}, {{0, 8, 0.7, mask.data()}}, cfg, {1, 5}, d8);
    const auto plain = train::grpo_loss(lp5, old5, {}, {{0, 5, 0.7}}, cfg, {1, 5}, d5);
    EXPECT_NEAR(masked.loss, plain.loss, 1e-12);
    EXPECT_EQ(masked.tokens, 5);
    size_t k = 0;
    for (size_t t = 0; t < 8; ++t) {
      if (!mask[t]) {
        EXPECT_EQ(d8[t], 0.0f) << t;
        continue;
      }
      EXPECT_FLOAT_EQ(d8[t], d5[k++]) << t;
    }
  }
}

#include "pipeline/tool_demo.h"

#include <fmt/format.h>

#include "base/log.h"
#include "base/progress.h"
#include "base/rng.h"
#include "base/timer.h"
#include "env/episodes.h"
#include "env/python_math_env.h"
#include "model/train_state.h"
#include "reward/composite.h"
#include "reward/math_reward.h"
#include "run/metrics.h"
#include "run/run_dir.h"
#include "train/grpo.h"
#include "train/sft.h"

namespace r1::pipeline {

namespace {

std::string render(const data::Problem& p) { return p.question + "="; }

// Multiplication problems "A*B" with answer A*B; ids from first_id.
std::vector<data::Problem> products(int64_t count, int da, int db, uint64_t seed, int64_t first_id) {
  Rng rng(seed, 31);
  auto draw = [&](int digits) {
    int64_t lo = 1;
    for (int d = 1; d < digits; ++d) lo *= 10;
    return lo + int64_t(rng.next_u32() % uint32_t(9 * lo));
  };
  std::vector<data::Problem> ps;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t a = draw(da), b = draw(db);
    ps.push_back({first_id + i, fmt::format("{}*{}", a, b), std::to_string(a * b), "math", nullptr});
  }
  return ps;
}

// A worked solution: the tool call, its output (as the environment writes it) and the answer.
std::string tool_solution(const data::Problem& p) {
  return "```python\nprint(" + p.question + ")\n```" + env::tool_observation(env::ToolFormat::Markdown, p.answer) +
         "<answer>" + p.answer + "</answer>";
}

struct Eval {
  double pass = 0, tool_calls = 0;
  std::vector<std::string> examples;
};

// pass@1 over k = 2 samples per problem at temperature 0.6, with or without the tool.
Eval evaluate(const model::Transformer& m, const text::Codec& codec, const std::vector<data::Problem>& test,
              const env::Environment* tool, int threads) {
  const int k = 2;
  std::vector<rollout::Request> reqs;
  std::vector<const data::Problem*> of;
  for (const auto& p : test) {
    reqs.push_back({codec.encode(render(p)), k, p.id});
    of.push_back(&p);
  }
  rollout::GenerateParams gp;
  gp.sampling = {0.6f, 0.95f, 0, 4321};
  gp.max_new_tokens = 96;
  gp.stop_ids = codec.eos_ids();
  rollout::Engine engine(m, {64, 128, 4096});
  const std::vector<env::EpisodeRun> runs = env::run_episodes(engine, codec, tool, {2, threads}, reqs, of, gp);
  reward::MathReward math;
  Eval e;
  for (const env::EpisodeRun& r : runs) {
    const data::Problem& p = test[size_t(r.out.prompt_index)];
    const bool ok = math.score({r.model_text, p.answer, nullptr}).reward >= 1.0;
    e.pass += ok;
    if (r.outcome) e.tool_calls += r.outcome->tool_calls;
    if (r.out.sample_index == 0 && e.examples.size() < 4)
      e.examples.push_back(fmt::format("{}{}  [{}]", render(p), r.trajectory_text, ok ? "correct" : "wrong"));
  }
  e.pass /= double(runs.size());
  e.tool_calls /= double(runs.size());
  return e;
}

void base_training(model::Transformer& m, const text::Codec& codec, const std::vector<data::Problem>& train,
                   const ToolDemoOptions& o) {
  optim::DataParallel opt(m, {0.9f, 0.95f, 1e-8f, 0.01f});
  optim::LrSchedule sched{"cosine", 3e-3, o.sft_steps / 10, o.sft_steps, 0.1};
  model::TrainState state;
  Rng pick(o.seed, 5);
  Progress bar("1/3 base training", o.sft_steps, "step");
  for (int step = 0; step < o.sft_steps; ++step) {
    std::vector<train::SftExample> batch;
    for (int i = 0; i < 32; ++i) {
      const data::Problem& p = train[pick.next_u32() % train.size()];
      const std::string target = pick.uniform() < o.tool_share ? tool_solution(p) : "<answer>" + p.answer + "</answer>";
      std::vector<int32_t> comp = codec.encode(target);
      comp.push_back(text::ByteCodec::kEos);
      batch.push_back({codec.encode(render(p)), comp});
    }
    const auto r = train::sft_step(m, state, opt, batch, optim::lr_at(sched, step), 1.0);
    if (o.progress) bar.update(1, fmt::format("loss {:.3f}", r.loss));
  }
  if (o.progress) bar.finish();
}

ToolDemoArm rl_arm(model::Transformer& m, const text::Codec& codec, const std::vector<data::Problem>& train,
                   const std::vector<data::Problem>& test, const env::Environment* tool, const ToolDemoOptions& o,
                   const std::string& name, std::vector<std::string>* examples) {
  ToolDemoArm arm;
  arm.pass_before = evaluate(m, codec, test, tool, o.tool_threads).pass;
  auto reward = reward::make_reward("math");
  train::GrpoConfig gc;
  gc.prompts_per_step = 16;
  gc.group_size = 8;
  gc.max_prompt_tokens = 32;
  gc.max_completion_tokens = 96;
  gc.lr = o.lr;
  gc.schedule.kind = "constant";
  gc.seed = o.seed;
  gc.max_turns = 2;
  gc.tool_threads = o.tool_threads;
  train::GrpoTrainer trainer(m, codec, *reward, train, render, gc, o.grpo_steps);
  trainer.set_environment(tool);
  run::RunDir run(o.out + "/" + name);
  run.write_config(fmt::format("# r1 tool-demo arm\ntool: {}\ngrpo_steps: {}\nlr: {}\nseed: {}\n", tool != nullptr,
                               o.grpo_steps, o.lr, o.seed));
  run::MetricsWriter metrics(run.path(), std::nullopt);
  metrics.log(0, {{"eval/pass@1", arm.pass_before}});
  Progress bar(fmt::format("GRPO {}", name), o.grpo_steps, "step");
  for (int step = 0; step < o.grpo_steps; ++step) {
    const train::StepStats st = trainer.step(step);
    arm.accuracy.push_back(st.reward_mean);
    metrics.log(step + 1, train::step_metrics(st));
    std::vector<nlohmann::json> rows;
    for (const auto& s : trainer.last_samples()) {
      rows.push_back({{"problem", s.problem_id}, {"prompt", s.prompt}, {"completion", s.completion}, {"reward", s.reward}});
      if (!s.turns.is_null()) rows.back()["turns"] = s.turns;
    }
    run.write_samples(step + 1, rows);
    if (o.progress)
      bar.update(1, fmt::format("accuracy {:.2f} calls/episode {:.2f}", st.reward_mean, st.tool_calls_per_episode.value_or(0)));
  }
  if (o.progress) bar.finish();
  const Eval after = evaluate(m, codec, test, tool, o.tool_threads);
  arm.pass_after = after.pass;
  arm.tool_calls_after = after.tool_calls;
  if (examples) *examples = after.examples;
  metrics.log(o.grpo_steps + 1, {{"eval/pass@1", after.pass}});
  return arm;
}

}  // namespace

ToolDemoResult run_tool_demo(const ToolDemoOptions& o) {
  Timer wall;
  ToolDemoResult res;
  text::ByteCodec codec;
  const std::vector<data::Problem> test = products(o.eval_problems, o.digits_a, o.digits_b, o.seed + 7919, 1 << 30);
  std::vector<data::Problem> train;
  for (data::Problem& p : products(20000, o.digits_a, o.digits_b, o.seed, 0)) {
    bool held = false;
    for (const auto& t : test) held = held || t.question == p.question;
    if (!held) train.push_back(std::move(p));
  }
  model::ModelConfig cfg = model::preset_config("tiny", "qwen2");
  model::override_config(cfg, "vocab_size", std::to_string(codec.vocab_size()));
  model::override_config(cfg, "hidden_size", "96");
  model::override_config(cfg, "intermediate_size", "256");
  model::override_config(cfg, "num_hidden_layers", "3");
  model::Transformer m(cfg);
  m.init_random(o.seed);
  env::PythonMathOptions po;
  po.max_calls = 2;
  po.tool.timeout_seconds = 2.0;
  po.tool.output_bytes = 64;
  po.tool.allow_unsandboxed = o.allow_unsandboxed;
  env::PythonMathEnv tool(po);
  if (o.progress)
    log::info("r1 tool-demo: {}-digit x {}-digit multiplication with a Python tool, a {:.2f}M-parameter model",
              o.digits_a, o.digits_b, cfg.num_parameters() / 1e6);
  base_training(m, codec, train, o);
  model::Transformer no_tool_model(cfg);
  model::copy_weights(no_tool_model, m);
  res.with_tool = rl_arm(m, codec, train, test, &tool, o, "with_tool", &res.examples);
  res.without_tool = rl_arm(no_tool_model, codec, train, test, nullptr, o, "without_tool", nullptr);
  res.seconds = wall.seconds();
  return res;
}

}  // namespace r1::pipeline

#include "pipeline/r1zero_demo.h"

#include <fmt/format.h>

#include "base/log.h"
#include "base/progress.h"
#include "base/rng.h"
#include "base/timer.h"
#include "data/arithmetic.h"
#include "eval/evaluate.h"
#include "reward/composite.h"
#include "reward/math_reward.h"
#include "rollout/engine.h"
#include "tensor/device_memory.h"
#include "train/grpo.h"
#include "run/metrics.h"
#include "run/report.h"
#include "run/run_dir.h"
#include "train/sft.h"
#include "model/train_state.h"

namespace r1::pipeline {

namespace {

// accuracy + 0.2 * format, with both parts reported (as R1-Zero's rule rewards).
std::string render(const data::Problem& p) { return p.question + "="; }

// Greedy completions of a few problems, to show what the model writes.
std::vector<std::string> examples(const model::Transformer& m, const text::Codec& codec,
                                  const std::vector<data::Problem>& ps, const reward::Reward& accuracy) {
  std::vector<std::string> out;
  std::vector<rollout::Request> reqs;
  for (const auto& p : ps) reqs.push_back({codec.encode(render(p)), 1, p.id});
  rollout::GenerateParams gp;
  gp.sampling.temperature = 0;
  gp.max_new_tokens = 96;
  gp.stop_ids = codec.eos_ids();
  rollout::Engine engine(m, {int(ps.size()), 160, 4096});
  auto outs = engine.generate(reqs, gp);
  for (size_t i = 0; i < outs.size(); ++i) {
    std::vector<int32_t> body = outs[i].tokens;
    if (outs[i].finish == rollout::FinishReason::Stop) body.pop_back();
    std::string text = codec.decode(body);
    bool ok = accuracy.score({text, ps[i].answer, nullptr}).reward >= 1.0;
    out.push_back(fmt::format("{}{}  [{}]", render(ps[i]), text, ok ? "correct" : "wrong, answer " + ps[i].answer));
  }
  return out;
}

}  // namespace

DemoProblems demo_problems(const DemoOptions& o) {
  DemoProblems p;
  p.held_out = data::addition_problems(o.eval_problems, o.digits, o.seed + 7919, 1 << 30);
  p.train = data::without_held_out(data::addition_problems(20000, o.digits, o.seed, 0), p.held_out);
  return p;
}

DemoResult run_r1zero_demo(const DemoOptions& o) {
  Timer wall;
  DemoResult res;
  text::ByteCodec codec;
  const DemoProblems problems = demo_problems(o);
  const std::vector<data::Problem>& train = problems.train;
  const std::vector<data::Problem>& test = problems.held_out;

  model::ModelConfig cfg = model::preset_config("tiny", "qwen2");
  model::override_config(cfg, "vocab_size", std::to_string(codec.vocab_size()));
  model::override_config(cfg, "hidden_size", "96");
  model::override_config(cfg, "intermediate_size", "256");
  model::override_config(cfg, "num_hidden_layers", "3");
  require_device(o.device, "r1 demo");
  model::Transformer m(cfg, o.device);
  m.init_random(o.seed);
  if (o.progress)
    log::info("r1 demo: R1-Zero on {}-digit addition, a {:.2f}M-parameter {} model with a byte-level vocabulary",
              o.digits, cfg.num_parameters() / 1e6, cfg.model_type);

  // 1. Base ability from a generated corpus.
  {
    optim::DataParallel opt(m, {0.9f, 0.95f, 1e-8f, 0.01f});
    optim::LrSchedule sched{"cosine", 3e-3, o.sft_steps / 10, o.sft_steps, 0.1};
    model::TrainState state;
    Rng pick(o.seed, 5);
    Progress bar("1/3 base training", o.sft_steps, "step");
    for (int step = 0; step < o.sft_steps; ++step) {
      std::vector<train::SftExample> batch;
      for (int i = 0; i < 32; ++i) {
        const data::Problem& p = train[pick.next_u32() % train.size()];
        // Worked solutions, or the bare answer (the habit RL should drop).
        std::string target = pick.uniform() < o.direct_share ? "<answer>" + p.answer + "</answer>"
                                                              : data::addition_solution(p);
        std::vector<int32_t> comp = codec.encode(target);
        comp.push_back(text::ByteCodec::kEos);
        batch.push_back({codec.encode(render(p)), comp});
      }
      auto r = train::sft_step(m, state, opt, batch, optim::lr_at(sched, step), 1.0);
      if (o.progress) bar.update(1, fmt::format("loss {:.3f}", r.loss));
    }
    if (o.progress) bar.finish();
  }

  // 2. Held-out pass@1 before RL.
  reward::MathReward accuracy;
  eval::EvalConfig ecfg;
  ecfg.max_completion_tokens = 96;
  auto before = eval::evaluate(m, codec, accuracy, test, render, ecfg);
  res.pass_before = before.pass_at_1;
  res.length_before = before.mean_length;

  // 3. GRPO with accuracy + format rewards.
  auto reward = reward::make_reward(fmt::format("math+format:{}", o.format_weight));
  train::GrpoConfig gc;
  gc.prompts_per_step = 16;
  gc.group_size = 8;
  gc.max_prompt_tokens = 32;
  gc.max_completion_tokens = 96;
  gc.lr = o.lr;
  gc.temperature = o.temperature;
  gc.schedule.kind = "constant";
  gc.seed = o.seed;
  train::GrpoTrainer trainer(m, codec, *reward, train, render, gc, o.grpo_steps);
  run::RunDir run(o.out);
  run.write_config(fmt::format(
      "# r1 demo (R1-Zero at demo scale)\ntask: addition\ndigits: {}\nbase_training_steps: {}\ndirect_share: {}\n"
      "grpo:\n  steps: {}\n  prompts_per_step: {}\n  group_size: {}\n  lr: {}\n  temperature: {}\n"
      "  reward: math + {} * format\n  loss_reduction: {}\nseed: {}\n",
      o.digits, o.sft_steps, o.direct_share, o.grpo_steps, gc.prompts_per_step, gc.group_size, o.lr, o.temperature,
      o.format_weight, reduction_name(gc.loss.reduction), o.seed));
  run::MetricsWriter metrics(run.path(), std::nullopt);
  metrics.log(0, {{"eval/pass@1", before.pass_at_1}, {"response_length/eval", before.mean_length}});
  Progress bar("2/3 GRPO", o.grpo_steps, "step");
  for (int step = 0; step < o.grpo_steps; ++step) {
    const train::StepStats st = trainer.step(step);
    res.reward.push_back(st.reward_mean);
    res.accuracy.push_back(st.accuracy.value_or(0));
    res.length.push_back(st.response_length_mean);
    metrics.log(step + 1, train::step_metrics(st));
    std::vector<nlohmann::json> rows;
    for (const auto& s : trainer.last_samples())
      rows.push_back({{"problem", s.problem_id}, {"prompt", s.prompt}, {"completion", s.completion}, {"reward", s.reward}});
    run.write_samples(step + 1, rows);
    if (o.progress)
      bar.update(1, fmt::format("reward {:.3f} accuracy {:.2f} format {:.2f} length {:.0f}", st.reward_mean,
                                st.accuracy.value_or(0), st.format_rate.value_or(0), st.response_length_mean));
  }
  if (o.progress) bar.finish();

  // 4. Held-out pass@1 after RL.
  auto after = eval::evaluate(m, codec, accuracy, test, render, ecfg);
  res.pass_after = after.pass_at_1;
  res.length_after = after.mean_length;
  metrics.log(o.grpo_steps + 1, {{"eval/pass@1", after.pass_at_1}, {"response_length/eval", after.mean_length}});
  res.report = run::write_report(run.path());
  res.examples = examples(m, codec, {test.begin(), test.begin() + std::min<size_t>(4, test.size())}, accuracy);
  res.seconds = wall.seconds();
  return res;
}

}  // namespace r1::pipeline

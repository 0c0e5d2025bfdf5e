// r1 demo: the built-in default job, R1-Zero at demo scale on the CPU (see train/r1zero_demo.h).
#include <fmt/format.h>

#include <algorithm>

#include "cli/commands.h"
#include "tensor/device_memory.h"
#include "pipeline/r1zero_demo.h"
#include "run/recipe.h"

namespace r1::cli {

namespace {
// A one-line chart of a series, for the terminal.
std::string sparkline(const std::vector<double>& v) {
  static const char* kBars[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  if (v.empty()) return "";
  // Averages over up to 40 buckets, scaled between the series' min and max.
  const size_t n = std::min<size_t>(40, v.size());
  std::vector<double> b(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    size_t lo = i * v.size() / n, hi = std::max(lo + 1, (i + 1) * v.size() / n);
    for (size_t j = lo; j < hi; ++j) b[i] += v[j] / double(hi - lo);
  }
  auto [mn, mx] = std::minmax_element(b.begin(), b.end());
  std::string s;
  for (double x : b) s += kBars[*mx > *mn ? std::min(7, int(8 * (x - *mn) / (*mx - *mn + 1e-12))) : 0];
  return fmt::format("{} {:.2f} -> {:.2f}", s, v.front(), v.back());
}
}  // namespace

namespace {
// The demo's settings as a recipe (recipes/demo.yaml holds the same defaults), so a run can be
// changed with dotted overrides like any other: r1 demo grpo.steps=200 grpo.lr=2e-4
nlohmann::json demo_defaults(const pipeline::DemoOptions& d) {
  return {{"task", {{"digits", d.digits}, {"base_steps", d.sft_steps}, {"direct_share", d.direct_share},
                    {"eval_problems", d.eval_problems}}},
          {"grpo", {{"steps", d.grpo_steps}, {"lr", d.lr}, {"temperature", d.temperature},
                    {"format_weight", d.format_weight}}},
          {"seed", d.seed},
          {"out", d.out},
          {"device", device_name(d.device)}};
}
}  // namespace

void add_demo(CLI::App& app) {
  auto o = std::make_shared<pipeline::DemoOptions>();
  auto args = std::make_shared<std::vector<std::string>>();
  auto* cmd = app.add_subcommand("demo", "R1-Zero at demo scale on the CPU: base training, GRPO, pass@1 before and after");
  cmd->add_option("recipe_or_overrides", *args,
                  "an optional recipe file (recipes/demo.yaml) and dotted overrides, e.g. grpo.steps=200");
  cmd->callback([o, args] {
    run::Recipe recipe(demo_defaults(*o));
    recipe.apply_args(*args);
    o->digits = recipe.get<int>("task.digits");
    o->sft_steps = recipe.get<int>("task.base_steps");
    o->direct_share = float(recipe.get<double>("task.direct_share"));
    o->eval_problems = recipe.get<int>("task.eval_problems");
    o->grpo_steps = recipe.get<int>("grpo.steps");
    o->lr = recipe.get<double>("grpo.lr");
    o->temperature = float(recipe.get<double>("grpo.temperature"));
    o->format_weight = recipe.get<double>("grpo.format_weight");
    o->seed = uint64_t(recipe.get<int>("seed"));
    o->out = recipe.get<std::string>("out");
    o->device = parse_device(recipe.get<std::string>("device"), "recipe key 'device'");
    pipeline::DemoResult r = pipeline::run_r1zero_demo(*o);
    fmt::print("\nheld-out pass@1 ({} problems, 4 samples each at temperature 0.6, top-p 0.95):\n", o->eval_problems);
    fmt::print("  before RL  {:5.1f}%   mean response length {:.1f} tokens\n", 100 * r.pass_before, r.length_before);
    fmt::print("  after RL   {:5.1f}%   mean response length {:.1f} tokens\n", 100 * r.pass_after, r.length_after);
    fmt::print("GRPO curves over {} steps:\n  reward    {}\n  accuracy  {}\n  length    {}\n", r.reward.size(),
               sparkline(r.reward), sparkline(r.accuracy), sparkline(r.length));
    fmt::print("greedy answers after RL:\n");
    for (const auto& e : r.examples) fmt::print("  {}\n", e);
    fmt::print("run directory {} (metrics.jsonl, TensorBoard events, samples/); report {}\nwall time {:.0f} s\n",
               o->out, r.report, r.seconds);
  });
}

}  // namespace r1::cli

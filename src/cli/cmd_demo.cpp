// r1 demo: the built-in default job, R1-Zero at demo scale on the CPU (see train/r1zero_demo.h).
#include <fmt/format.h>

#include <algorithm>

#include "cli/commands.h"
#include "train/r1zero_demo.h"

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

void add_demo(CLI::App& app) {
  auto o = std::make_shared<train::DemoOptions>();
  auto* cmd = app.add_subcommand("demo", "R1-Zero at demo scale on the CPU: base training, GRPO, pass@1 before and after");
  cmd->add_option("--digits", o->digits, "digits per operand of the addition task")->capture_default_str();
  cmd->add_option("--base-steps", o->sft_steps, "base-training steps (next-token training on generated solutions)")
      ->capture_default_str();
  cmd->add_option("--grpo-steps", o->grpo_steps, "GRPO steps")->capture_default_str();
  cmd->add_option("--eval-problems", o->eval_problems, "held-out problems")->capture_default_str();
  cmd->add_option("--lr", o->lr, "GRPO learning rate")->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "GRPO sampling temperature")->capture_default_str();
  cmd->add_option("--format-weight", o->format_weight, "reward = accuracy + w * format")->capture_default_str();
  cmd->add_option("--direct-share", o->direct_share, "share of base-training answers given without reasoning")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed for weights, data and sampling")->capture_default_str();
  cmd->add_option("--out", o->out, "run directory")->capture_default_str();
  cmd->callback([o] {
    train::DemoResult r = train::run_r1zero_demo(*o);
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

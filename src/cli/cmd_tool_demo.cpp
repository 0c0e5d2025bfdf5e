// r1 tool-demo: tool-integrated reasoning at demo scale on the CPU (see pipeline/tool_demo.h).
#include <fmt/format.h>

#include "cli/commands.h"
#include "pipeline/tool_demo.h"
#include "run/recipe.h"

namespace r1::cli {

void add_tool_demo(CLI::App& app) {
  auto args = std::make_shared<std::vector<std::string>>();
  auto* cmd = app.add_subcommand(
      "tool-demo", "tool-integrated RL at demo scale: multiplication with and without a Python tool, pass@1 of each");
  cmd->add_option("recipe_or_overrides", *args, "an optional recipe (recipes/tool_demo.yaml) and dotted overrides");
  cmd->callback([args] {
    const pipeline::ToolDemoOptions d;
    run::Recipe recipe({{"task", {{"digits_a", d.digits_a}, {"digits_b", d.digits_b}, {"base_steps", d.sft_steps},
                                  {"tool_share", d.tool_share}, {"eval_problems", d.eval_problems}}},
                        {"grpo", {{"steps", d.grpo_steps}, {"lr", d.lr}}},
                        {"env", {{"threads", d.tool_threads}, {"allow_unsandboxed", d.allow_unsandboxed}}},
                        {"seed", d.seed},
                        {"out", d.out}});
    recipe.apply_args(*args);
    pipeline::ToolDemoOptions o;
    o.digits_a = recipe.get<int>("task.digits_a");
    o.digits_b = recipe.get<int>("task.digits_b");
    o.sft_steps = recipe.get<int>("task.base_steps");
    o.tool_share = float(recipe.get<double>("task.tool_share"));
    o.eval_problems = recipe.get<int>("task.eval_problems");
    o.grpo_steps = recipe.get<int>("grpo.steps");
    o.lr = recipe.get<double>("grpo.lr");
    o.tool_threads = recipe.get<int>("env.threads");
    o.allow_unsandboxed = recipe.get<bool>("env.allow_unsandboxed");
    o.seed = uint64_t(recipe.get<int>("seed"));
    o.out = recipe.get<std::string>("out");
    R1_CHECK(o.digits_a >= 1 && o.digits_a <= 9 && o.digits_b >= 1 && o.digits_b <= 9,
             "task.digits_a and task.digits_b must be in [1, 9]");
    R1_CHECK(o.sft_steps >= 0 && o.grpo_steps >= 0 && o.eval_problems >= 1, "tool-demo: step and problem counts");
    const pipeline::ToolDemoResult r = pipeline::run_tool_demo(o);
    fmt::print("\nheld-out pass@1 ({} problems, 2 samples each at temperature 0.6):\n", o.eval_problems);
    fmt::print("               before RL   after RL   tool calls/episode after\n");
    fmt::print("  with tool     {:6.1f}%    {:6.1f}%    {:.2f}\n", 100 * r.with_tool.pass_before,
               100 * r.with_tool.pass_after, r.with_tool.tool_calls_after);
    fmt::print("  without tool  {:6.1f}%    {:6.1f}%\n", 100 * r.without_tool.pass_before, 100 * r.without_tool.pass_after);
    fmt::print("trajectories after RL, with the tool:\n");
    for (const auto& e : r.examples) fmt::print("  {}\n", e);
    fmt::print("run directories {}/with_tool, {}/without_tool; wall time {:.0f} s\n", o.out, o.out, r.seconds);
  });
}

}  // namespace r1::cli

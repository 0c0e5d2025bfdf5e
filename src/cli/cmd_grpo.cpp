// r1 grpo RECIPE.yaml [key=value ...] [--resume]: a GRPO run from a recipe (see recipes/ and
// train/grpo_run.h). Overrides use dotted keys (train.lr=1e-6); unknown keys are errors that name
// the nearest valid key, before any compute.
#include <string>
#include <vector>

#include "base/log.h"
#include "cli/commands.h"
#include "train/grpo_run.h"
#include "train/recipe.h"

namespace r1::cli {

void add_grpo(CLI::App& app) {
  struct Opts {
    std::string recipe;
    std::vector<std::string> overrides;
    bool resume = false, print = false;
    int64_t stop_after = -1;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("grpo", "GRPO training from a YAML recipe with dotted overrides");
  cmd->add_option("recipe", o->recipe, "recipe YAML file")->required();
  cmd->add_option("overrides", o->overrides, "dotted overrides, e.g. train.lr=1e-6 grpo.group_size=16");
  cmd->add_flag("--resume", o->resume, "continue from the run directory's latest complete checkpoint");
  cmd->add_flag("--print-recipe", o->print, "print the fully resolved recipe and exit");
  cmd->add_option("--stop-after", o->stop_after, "testing: end abruptly after this step (as kill -9 would)")
      ->group("");
  cmd->callback([o] {
    train::Recipe recipe(train::grpo_recipe_defaults());
    recipe.load_yaml(o->recipe);
    for (const std::string& kv : o->overrides) recipe.set(kv);
    if (o->print) {
      fmt::print("{}", recipe.to_yaml());
      return;
    }
    train::run_grpo(recipe, {o->resume, o->stop_after});
  });
}

}  // namespace r1::cli

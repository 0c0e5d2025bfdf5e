// r1 grpo RECIPE.yaml [key=value ...] [--resume] [--print-recipe]: a GRPO run from a recipe (see
// recipes/ and train/grpo_run.h). Overrides use dotted keys (train.lr=1e-6); unknown keys are errors
// that name the nearest valid key, before any compute.
#include "cli/commands.h"
#include "cli/recipe_command.h"
#include "train/grpo_run.h"

namespace r1::cli {

void add_grpo(CLI::App& app) {
  add_recipe_command(
      app, {"grpo", "GRPO training from a YAML recipe with dotted overrides",
            "a recipe YAML file and dotted overrides, e.g. recipes/r1_zero_gsm8k_qwen2.5.yaml train.lr=1e-6",
            "continue from the run directory's latest complete checkpoint", "step", train::grpo_recipe_defaults,
            [](const run::Recipe& r, const run::RunOptions& o) { train::run_grpo(r, o); }});
}

}  // namespace r1::cli

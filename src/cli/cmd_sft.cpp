// r1 sft [RECIPE.yaml] [key=value ...] [--resume] [--print-recipe]: supervised fine-tuning from a
// recipe (see recipes/sft_tiny_byte.yaml and train/sft_run.h). Overrides use dotted keys
// (train.lr=1e-5); unknown keys are errors that name the nearest valid key, before any compute.
#include "cli/commands.h"
#include "cli/recipe_command.h"
#include "train/sft_run.h"

namespace r1::cli {

void add_sft(CLI::App& app) {
  add_recipe_command(
      app, {"sft", "supervised fine-tuning (cold start, rejection sampling, distillation)",
            "an optional recipe YAML file and dotted overrides, e.g. data.path=sft.jsonl train.lr=1e-5",
            "continue from the run directory's latest complete checkpoint", "step", train::sft_recipe_defaults,
            [](const run::Recipe& r, const run::RunOptions& o) { train::run_sft(r, o); }});
}

}  // namespace r1::cli

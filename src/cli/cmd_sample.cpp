// r1 sample [RECIPE.yaml] [key=value ...] [--resume] [--print-recipe]: rejection sampling from a
// recipe (see train/sample_run.h): n samples per prompt, filtered and ranked by the reward library,
// written as SFT rows (RUN/data.jsonl) and preference pairs (RUN/pairs.jsonl).
#include "cli/commands.h"
#include "cli/recipe_command.h"
#include "pipeline/sample_run.h"

namespace r1::cli {

void add_sample(CLI::App& app) {
  add_recipe_command(
      app, {"sample", "rejection sampling: n samples per prompt, filtered, best kept, as SFT data and preference pairs",
            "a recipe YAML file and/or dotted overrides in order, e.g. recipe.yaml sample.n=16 model.path=runs/grpo/model",
            "continue after the last complete chunk of the run directory", "chunk", pipeline::sample_recipe_defaults,
            [](const run::Recipe& r, const run::RunOptions& o) { pipeline::run_sample(r, o); }});
}

}  // namespace r1::cli

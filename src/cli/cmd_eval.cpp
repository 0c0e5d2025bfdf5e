// r1 eval [RECIPE.yaml] [key=value ...] [--print-recipe]: a benchmark scored as the R1 paper reports
// it (eval/eval_run.h): pass@1 over k samples, pass@k, cons@k, response length, per MATH-500
// subject and level. Without a recipe the defaults evaluate data/math500.jsonl.
#include "cli/commands.h"
#include "cli/recipe_command.h"
#include "eval/eval_run.h"

namespace r1::cli {

void add_eval(CLI::App& app) {
  add_recipe_command(
      app, {"eval", "evaluate a model on a benchmark: pass@1, pass@k, cons@k (R1 paper)",
            "a recipe YAML file and/or dotted overrides, e.g. data.path=data/aime24.jsonl data.preset=aime24 eval.k=64",
            "", "step", eval::eval_recipe_defaults,
            [](const run::Recipe& r, const run::RunOptions&) { eval::run_eval(r); }});
}

}  // namespace r1::cli

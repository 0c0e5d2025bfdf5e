// r1 eval [RECIPE.yaml] [key=value ...] [--print-recipe]: a benchmark scored as the R1 paper reports
// it (eval/eval_run.h): pass@1 over k samples, pass@k, cons@k, response length, per MATH-500
// subject and level. Without a recipe the defaults evaluate data/math500.jsonl.
#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "eval/eval_run.h"
#include "train/recipe.h"

namespace r1::cli {

void add_eval(CLI::App& app) {
  struct Opts {
    std::vector<std::string> args;
    bool print = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("eval", "evaluate a model on a benchmark: pass@1, pass@k, cons@k (R1 paper)");
  cmd->add_option("args", o->args,
                  "a recipe YAML file and/or dotted overrides, e.g. data.path=data/aime24.jsonl data.preset=aime24 "
                  "eval.k=64");
  cmd->add_flag("--print-recipe", o->print, "print the fully resolved recipe and exit");
  cmd->callback([o] {
    train::Recipe recipe(eval::eval_recipe_defaults());
    recipe.apply_args(o->args);
    if (o->print) {
      fmt::print("{}", recipe.to_yaml());
      return;
    }
    eval::run_eval(recipe);
  });
}

}  // namespace r1::cli

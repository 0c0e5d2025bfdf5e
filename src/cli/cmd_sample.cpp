// r1 sample [RECIPE.yaml] [key=value ...] [--resume]: rejection sampling from a recipe (see
// train/sample_run.h): n samples per prompt, filtered and ranked by the reward library, written as
// SFT rows (RUN/data.jsonl) and preference pairs (RUN/pairs.jsonl).
#include <string>
#include <vector>

#include "base/log.h"
#include "cli/commands.h"
#include "train/recipe.h"
#include "train/sample_run.h"

namespace r1::cli {

void add_sample(CLI::App& app) {
  struct Opts {
    std::vector<std::string> args;
    bool resume = false, print = false;
    int64_t stop_after = -1;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("sample",
                                 "rejection sampling: n samples per prompt, filtered, best kept, as SFT "
                                 "data and preference pairs");
  cmd->add_option("args", o->args,
                  "a recipe YAML file and/or dotted overrides in order, e.g. recipe.yaml sample.n=16 "
                  "model.path=runs/grpo/model");
  cmd->add_flag("--resume", o->resume, "continue after the last complete chunk of the run directory");
  cmd->add_flag("--print-recipe", o->print, "print the fully resolved recipe and exit");
  cmd->add_option("--stop-after", o->stop_after, "testing: end abruptly after this chunk (as kill -9 would)")
      ->group("");
  cmd->callback([o] {
    train::Recipe recipe(train::sample_recipe_defaults());
    recipe.apply_args(o->args);
    if (o->print) {
      fmt::print("{}", recipe.to_yaml());
      return;
    }
    train::run_sample(recipe, {o->resume, o->stop_after});
  });
}

}  // namespace r1::cli

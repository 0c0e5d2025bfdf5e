// r1 sft [RECIPE.yaml] [key=value ...] [--resume] [--print-recipe]: supervised fine-tuning from a
// recipe (see recipes/sft_tiny_byte.yaml and train/sft_run.h). Overrides use dotted keys
// (train.lr=1e-5); unknown keys are errors that name the nearest valid key, before any compute.
#include <string>
#include <vector>

#include "cli/commands.h"
#include "train/recipe.h"
#include "train/sft_run.h"

namespace r1::cli {

void add_sft(CLI::App& app) {
  struct Opts {
    std::vector<std::string> args;
    bool resume = false, print = false;
    int64_t stop_after = -1;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd =
      app.add_subcommand("sft", "supervised fine-tuning (cold start, rejection sampling, distillation)");
  cmd->add_option(
      "recipe_or_overrides", o->args,
      "an optional recipe YAML file and dotted overrides, e.g. data.path=sft.jsonl train.lr=1e-5");
  cmd->add_flag("--resume", o->resume, "continue from the run directory's latest complete checkpoint");
  cmd->add_flag("--print-recipe", o->print, "print the fully resolved recipe and exit");
  cmd->add_option("--stop-after", o->stop_after, "testing: end abruptly after this step (as kill -9 would)")
      ->group("");
  cmd->callback([o] {
    train::Recipe recipe(train::sft_recipe_defaults());
    recipe.apply_args(o->args);
    if (o->print) {
      fmt::print("{}", recipe.to_yaml());
      return;
    }
    train::run_sft(recipe, {o->resume, o->stop_after});
  });
}

}  // namespace r1::cli

#include "cli/recipe_command.h"

#include <fmt/format.h>

#include <memory>
#include <vector>

namespace r1::cli {

CLI::App* add_recipe_command(CLI::App& app, RecipeCommand c) {
  struct Opts {
    std::vector<std::string> args;
    bool resume = false, print = false;
    int64_t stop_after = -1;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand(c.name, c.description);
  cmd->add_option("recipe_or_overrides", o->args, c.args_help);
  cmd->add_flag("--print-recipe", o->print, "print the fully resolved recipe and exit");
  if (!c.resume_help.empty()) {
    cmd->add_flag("--resume", o->resume, c.resume_help);
    cmd->add_option("--stop-after", o->stop_after,
                    fmt::format("testing: end abruptly after this {} (as kill -9 would)", c.stop_unit))
        ->group("");
  }
  cmd->callback([o, c] {
    run::Recipe recipe(c.defaults());
    recipe.apply_args(o->args);
    if (o->print) {
      fmt::print("{}", recipe.to_yaml());
      return;
    }
    const run::RunOptions opts{o->resume, o->stop_after};
    run::check_ranks_agree(recipe, opts);  // under mpirun: one recipe, or one clear error on every rank
    c.run(recipe, opts);
  });
  return cmd;
}

}  // namespace r1::cli

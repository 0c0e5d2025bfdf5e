#pragma once
// The shape every recipe-driven subcommand shares: `r1 NAME [RECIPE.yaml] [key=value ...]` with
// --print-recipe and, for commands that can resume, --resume and the hidden --stop-after test hook.
#include <CLI/CLI.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "run/recipe.h"
#include "run/run_inputs.h"

namespace r1::cli {

struct RecipeCommand {
  std::string name, description;
  std::string args_help;       // what the positional arguments look like, with an example
  std::string resume_help;     // empty: the command has no --resume (nor --stop-after)
  std::string stop_unit = "step";  // what --stop-after counts
  std::function<nlohmann::json()> defaults;
  std::function<void(const run::Recipe&, const run::RunOptions&)> run;
};

CLI::App* add_recipe_command(CLI::App& app, RecipeCommand c);

}  // namespace r1::cli

#pragma once
// `r1 grpo`: a GRPO run from a recipe, with its run directory, periodic checkpoints and exact
// resume. The recipe schema (every key and its default) is grpo_recipe_defaults().
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "run/recipe.h"
#include "run/run_inputs.h"
#include "train/grpo_config.h"

namespace r1::train {

nlohmann::json grpo_recipe_defaults();

// The recipe's GRPO settings (grpo.* and the train.* keys GRPO reads), validated; errors name the key.
GrpoConfig grpo_config(const run::Recipe& r);

using GrpoRunOptions = run::RunOptions;  // resume: from the latest complete checkpoint

// Runs the recipe to its last step; returns the run directory.
std::string run_grpo(const run::Recipe& recipe, const GrpoRunOptions& opts);

}  // namespace r1::train

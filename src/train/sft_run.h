#pragma once
// `r1 sft`: supervised fine-tuning from a recipe (cold-start SFT, rejection-sampling SFT and
// distillation alike), with its run directory, periodic checkpoints and exact resume, as `r1 grpo`.
// The recipe schema (every key and its default) is sft_recipe_defaults(); the data formats are
// data/sft_data.h's.
#include <nlohmann/json.hpp>
#include <string>

#include "run/recipe.h"
#include "run/run_inputs.h"

namespace r1::train {

nlohmann::json sft_recipe_defaults();

// Runs the recipe to its last step (from the latest complete checkpoint with opts.resume), exports
// RUN/model and writes RUN/summary.json; returns the run directory RUN. All input is read and
// checked before RUN is created.
std::string run_sft(const run::Recipe& recipe, const run::RunOptions& opts);

}  // namespace r1::train

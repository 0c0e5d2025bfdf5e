#pragma once
// `r1 rm`: reward-model training from a recipe. Preference pairs {prompt, chosen, rejected} (JSONL)
// train a score head on a causal LM's backbone (or continue an existing reward model) with the
// Bradley–Terry loss; the run directory, checkpoints and exact resume work as in `r1 grpo`. RUN/model
// is an HF *ForSequenceClassification directory that the `model` reward (reward/model_reward.h) and
// transformers load. The recipe schema (every key and its default) is rm_recipe_defaults().
#include <nlohmann/json.hpp>
#include <string>

#include "run/recipe.h"
#include "run/run_inputs.h"

namespace r1::train {

nlohmann::json rm_recipe_defaults();

// Runs the recipe to its last step; returns the run directory.
std::string run_rm(const run::Recipe& recipe, const run::RunOptions& opts);

}  // namespace r1::train

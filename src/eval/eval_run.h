#pragma once
// r1 eval: a benchmark JSONL scored the way the DeepSeek-R1 paper reports it. Reads a recipe
// (eval_recipe_defaults: device, model, data, reward, eval, run), samples k completions per
// problem, and writes RUN/config.yaml, RUN/eval.json (metrics overall and, for MATH-500, per subject
// and level), RUN/samples.jsonl (one row per sample) and RUN/summary.json (the headline numbers).
#include <nlohmann/json.hpp>
#include <string>

#include "reward/reward.h"
#include "run/recipe.h"

namespace r1::eval {

nlohmann::json eval_recipe_defaults();

// Runs the evaluation the recipe describes, with the recipe's reward (reward.spec) deciding which
// samples are correct; returns the run directory. Bad inputs fail before any sampling.
std::string run_eval(const run::Recipe& r);

// The same with a reward of the caller's (tests judge with rules of their own).
std::string run_eval(const run::Recipe& r, const reward::Reward& reward);

}  // namespace r1::eval

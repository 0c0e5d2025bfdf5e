#pragma once
// The `addition` pipeline stage: writes the demo-scale task as files the other stages read, so a
// pipeline at demo scale runs with no download. In RUN:
//   train.jsonl       {"question": "457+386", "answer": "843"}   problems for GRPO and sampling
//   test.jsonl        the same, held out (disjoint ids and seed) for evaluation
//   cold_start.jsonl  {"prompt": "457+386=", "completion": "<think>…</think><answer>843</answer>"}
//                     worked solutions for cold-start SFT (a share as the bare answer: see direct_share)
// Prompts are the question followed by "=" (stages use data.template none, prompt_suffix "=").
#include <nlohmann/json.hpp>
#include <string>

#include "run/recipe.h"

namespace r1::pipeline {

nlohmann::json addition_recipe_defaults();
std::string run_addition(const run::Recipe& r);  // returns the run directory

}  // namespace r1::pipeline

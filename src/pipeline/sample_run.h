#pragma once
// `r1 sample`: rejection sampling from a recipe. n samples per prompt from a model, scored by the
// reward library, filtered (correct, readable), the best per prompt kept once each:
//   RUN/data.jsonl      SFT rows {"prompt", "completion", "question", ...provenance}
//   RUN/pairs.jsonl     preference pairs {"prompt", "chosen", "rejected", ...provenance}
//   RUN/progress.json   chunks done and the byte lengths of both files then (the resume point)
//   RUN/summary.json    acceptance rate, pass@1, filter counts (when finished)
//   RUN/config.yaml     the resolved recipe
// The problems are processed in chunks of sample.chunk; a sample depends only on (seed, problem id,
// sample index), so a resumed run writes the same bytes as an uninterrupted one. The recipe schema
// (every key and its default) is sample_recipe_defaults().
#include <nlohmann/json.hpp>
#include <string>

#include "run/recipe.h"
#include "run/run_inputs.h"

namespace r1::pipeline {

nlohmann::json sample_recipe_defaults();

// Runs the recipe to its last chunk; returns the run directory. opts.resume continues after the
// last chunk RUN/progress.json records (output past it, a torn append, is cut off first) and fails
// when the recipe differs from RUN/config.yaml; opts.stop_after ends the process after that chunk.
std::string run_sample(const run::Recipe& recipe, const run::RunOptions& opts);

// Whether run_dir holds a progress record to resume from.
bool sample_can_resume(const std::string& run_dir);

}  // namespace r1::pipeline

#include "pipeline/pipeline_stages.h"

#include <fmt/ranges.h>

#include "base/error.h"
#include "eval/eval_run.h"
#include "pipeline/addition_task.h"
#include "train/grpo_run.h"
#include "train/rm_run.h"
#include "run/run_dir.h"
#include "pipeline/sample_run.h"
#include "train/sft_run.h"

namespace r1::pipeline {

namespace {

bool has_checkpoint(const std::string& run_dir) { return run::RunDir(run_dir).latest_checkpoint().has_value(); }
bool never(const std::string&) { return false; }

const std::vector<StageKind>& kinds() {
  static const std::vector<StageKind> k = {
      {"addition", addition_recipe_defaults, [](const run::Recipe& r, const run::RunOptions&) { run_addition(r); }, never},
      {"sft", train::sft_recipe_defaults, [](const run::Recipe& r, const run::RunOptions& o) { train::run_sft(r, o); }, has_checkpoint},
      {"grpo", train::grpo_recipe_defaults, [](const run::Recipe& r, const run::RunOptions& o) { train::run_grpo(r, o); }, has_checkpoint},
      {"sample", sample_recipe_defaults, [](const run::Recipe& r, const run::RunOptions& o) { run_sample(r, o); },
       sample_can_resume},
      {"rm", train::rm_recipe_defaults, [](const run::Recipe& r, const run::RunOptions& o) { train::run_rm(r, o); }, has_checkpoint},
      {"eval", eval::eval_recipe_defaults, [](const run::Recipe& r, const run::RunOptions&) { eval::run_eval(r); }, never},
  };
  return k;
}

}  // namespace

std::vector<std::string> stage_kind_names() {
  std::vector<std::string> names;
  for (const auto& k : kinds()) names.push_back(k.name);
  return names;
}

const StageKind& stage_kind(const std::string& name) {
  for (const auto& k : kinds())
    if (k.name == name) return k;
  fail("unknown stage kind '{}' (kinds: {})", name, fmt::join(stage_kind_names(), ", "));
}

}  // namespace r1::pipeline

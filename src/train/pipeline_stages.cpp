#include "train/pipeline_stages.h"

#include <fmt/ranges.h>

#include "base/error.h"
#include "eval/eval_run.h"
#include "train/addition_task.h"
#include "train/grpo_run.h"
#include "train/rm_run.h"
#include "train/run_dir.h"
#include "train/sample_run.h"
#include "train/sft_run.h"

namespace r1::train {

namespace {

bool has_checkpoint(const std::string& run_dir) { return RunDir(run_dir).latest_checkpoint().has_value(); }
bool never(const std::string&) { return false; }

const std::vector<StageKind>& kinds() {
  static const std::vector<StageKind> k = {
      {"addition", addition_recipe_defaults, [](const Recipe& r, const RunOptions&) { run_addition(r); }, never},
      {"sft", sft_recipe_defaults, [](const Recipe& r, const RunOptions& o) { run_sft(r, o); }, has_checkpoint},
      {"grpo", grpo_recipe_defaults, [](const Recipe& r, const RunOptions& o) { run_grpo(r, o); }, has_checkpoint},
      {"sample", sample_recipe_defaults, [](const Recipe& r, const RunOptions& o) { run_sample(r, o); },
       sample_can_resume},
      {"rm", rm_recipe_defaults, [](const Recipe& r, const RunOptions& o) { run_rm(r, o); }, has_checkpoint},
      {"eval", eval::eval_recipe_defaults, [](const Recipe& r, const RunOptions&) { eval::run_eval(r); }, never},
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

}  // namespace r1::train

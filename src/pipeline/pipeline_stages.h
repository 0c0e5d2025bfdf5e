#pragma once
// The kinds of stage a pipeline can run: each is one r1 command's recipe schema and run function.
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "run/recipe.h"
#include "run/run_inputs.h"

namespace r1::pipeline {

struct StageKind {
  std::string name;                       // as written in `kind:`
  std::function<nlohmann::json()> defaults;  // the command's recipe schema
  // Runs the command on its recipe (run.dir/run.name set by the pipeline).
  std::function<void(const run::Recipe&, const run::RunOptions&)> run;
  // Whether the run directory holds an interrupted run to continue (a checkpoint or progress record).
  std::function<bool(const std::string& run_dir)> can_resume;
};

// The kind named `name`; an unknown name is an error listing the kinds.
const StageKind& stage_kind(const std::string& name);
std::vector<std::string> stage_kind_names();

}  // namespace r1::pipeline

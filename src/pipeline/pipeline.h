#pragma once
// `r1 pipeline RECIPE.yaml`: the R1 recipe as a sequence of stages (cold-start SFT → reasoning GRPO →
// rejection sampling → SFT → reward model → alignment GRPO → evaluation; or teacher sampling →
// student SFT), each a run of one r1 command in PIPELINE_DIR/STAGE_NAME, each reading what earlier
// stages wrote. The file:
//
//   dir: runs/r1_pipeline          # every stage writes dir/NAME
//   device: cpu                    # each stage's `device` unless it sets its own
//   stages:
//     - name: cold_start
//       kind: sft                  # addition | sft | grpo | sample | rm | eval
//       recipe: recipes/x.yaml     # optional: a recipe file loaded first (relative to this file)
//       set:                       # the stage's recipe keys (nested or dotted)
//         data.path: ${data}/cold_start.jsonl     # ${NAME}: the directory of earlier stage NAME
//         model.path: ${reasoning_rl}/model       # ${dir}: the pipeline directory
//
// Re-running skips every stage that finished with the same settings (and the same upstream results);
// a stage whose settings changed runs again from scratch, and so does everything after it that reads
// it. A stage that was interrupted (killed, crashed) resumes from its last checkpoint. Every stage's
// recipe is built and checked before anything runs, so a typo in the last stage fails at once.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace r1::pipeline {

struct PipelineOptions {
  // "dir=...", "device=...", or "STAGE.key=value" (a key of that stage's recipe), after the file.
  std::vector<std::string> overrides;
  bool dry_run = false;   // print each stage's resolved recipe and whether it would run; run nothing
  // Testing: "STAGE:STEP" ends the process abruptly after that step of that stage, as a kill would.
  std::string stop_in;
};

struct StageRecord {
  std::string name, kind, status;  // status: ran | resumed | skipped | planned
  double seconds = 0;
  nlohmann::json summary;          // the stage's RUN/summary.json
};

// Runs the pipeline; returns one record per stage (also written to DIR/pipeline.json).
std::vector<StageRecord> run_pipeline(const std::string& recipe_path, const PipelineOptions& opts);

}  // namespace r1::pipeline

// r1 pipeline RECIPE.yaml [dir=… device=… STAGE.key=value …] [--dry-run]: the stages of a
// multi-stage recipe (train/pipeline.h), skipping finished ones and resuming an interrupted one.
#include <string>
#include <vector>

#include "cli/commands.h"
#include "pipeline/pipeline.h"

namespace r1::cli {

void add_pipeline(CLI::App& app) {
  struct Opts {
    std::string recipe;
    pipeline::PipelineOptions run;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand(
      "pipeline", "multi-stage runs (R1: cold-start SFT, GRPO, rejection sampling, SFT, RM, alignment GRPO; distillation)");
  cmd->add_option("recipe", o->recipe, "pipeline YAML (recipes/pipeline_*.yaml)")->required();
  cmd->add_option("overrides", o->run.overrides, "dir=DIR, device=cpu|cuda, or STAGE.key=value");
  cmd->add_flag("--dry-run", o->run.dry_run, "print each stage's resolved recipe and whether it would run");
  cmd->add_option("--stop-in", o->run.stop_in, "testing: STAGE:STEP ends abruptly after that step (as kill -9 would)")
      ->group("");
  cmd->callback([o] { pipeline::run_pipeline(o->recipe, o->run); });
}

}  // namespace r1::cli

#pragma once
// The checkpoint that the trainers (sft, rm, grpo) write into their run directory and resume from:
//   RUN/checkpoints/step_NNNNNN/model/                 the weights (model::save_model), or
//                               adapter/               with LoRA the adapters (PEFT layout)
//                               optimizer.safetensors  AdamW moments and step count
//                               state.json             the trainer's progress, "step" included
// plus any files of the trainer's own (GRPO: reference/, its reference model).
// What it holds is the recipe's run.checkpoint_contents:
//   full     everything above, the weights in fp32 (the master copy): --resume continues exactly.
//   weights  the weights alone, in the compute dtype (bf16 on CUDA), no optimizer state: a 7B
//            checkpoint is 15 GB instead of 91 GB. --resume continues from those weights with the
//            AdamW moments restarted from zero (said in the log), as verl's save_contents=[model]
//            or TRL's save_only_model do.
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "model/transformer.h"
#include "optim/data_parallel.h"
#include "run/recipe.h"
#include "run/run_dir.h"

namespace r1::run {

enum class CheckpointContents { Full, Weights };
// "full" or "weights"; anything else is an error naming `where` (the recipe key).
CheckpointContents parse_checkpoint_contents(const std::string& s, const std::string& where);
const char* checkpoint_contents_name(CheckpointContents c);
// The recipe's run.checkpoint_contents.
CheckpointContents checkpoint_contents(const Recipe& r);

// Commits checkpoint `step` of `run`: m's weights, opt (with `contents` full), what extra(dir)
// writes, then state.json (`state` with "step" and "contents" set); keeps the newest keep_last
// checkpoints (0: all). Every rank calls it (a sharded optimizer gathers its state); rank 0 writes.
void save_train_checkpoint(const RunDir& run, int64_t step, const model::Transformer& m, const optim::DataParallel& opt,
                           nlohmann::json state, int keep_last, CheckpointContents contents,
                           const std::function<void(const std::string& dir)>& extra = {});

// The checkpoint a --resume continues from: its directory, step and state.json.
struct ResumePoint {
  std::string path;
  int64_t step = 0;
  nlohmann::json state;
};
// --resume: the latest complete checkpoint of `run` (an error naming the run when there is none),
// its state.json read but nothing loaded yet, so a trainer can check it against its inputs first.
ResumePoint resume_point(const RunDir& run);
// What checkpoint `ck` holds (state.json's "contents"; checkpoints from before the key are full).
CheckpointContents contents_of(const ResumePoint& ck);
// Loads the weights and the optimizer state of checkpoint `ck` into m and opt (on every rank); a
// weights-only checkpoint leaves opt as it is (fresh moments) and says so.
void load_train_checkpoint(const ResumePoint& ck, model::Transformer& m, optim::DataParallel& opt);

// The trained model as run::export_model writes it (rank 0). Collective: at parallel.shard full
// every rank writes its shard of model.safetensors in parallel (the directory replaced atomically).
void export_trained_model(const model::Transformer& m, const optim::DataParallel& opt, const Recipe& r,
                          const std::string& dir);

}  // namespace r1::run

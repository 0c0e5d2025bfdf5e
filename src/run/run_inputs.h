#pragma once
// The recipe sections every command shares ("model", "data", "run") and what they load: the
// tokenizer, the model (from an HF directory or freshly initialised), the problems of a JSONL file
// with a field preset, and the prompt renderer. One place, so `r1 grpo`, `sft`, `sample`, `eval` and
// `rm` read the same keys the same way and fail on the same bad input with the same message.
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/problem.h"
#include "model/transformer.h"
#include "reward/reward.h"
#include "tensor/tensor.h"
#include "text/codec.h"
#include "optim/data_parallel.h"
#include "run/recipe.h"

namespace r1::run {

// {"path", "tokenizer", "init_preset", "init_arch", "init_vocab_size", "init_overrides"}: an HF model
// directory, or a fresh random model of a preset (with config.json keys overridden) when path is empty.
nlohmann::json model_section();
// {"path", "preset", "question_field", "answer_field", "type_field", "template", "prompt_suffix"}.
nlohmann::json data_section(const std::string& path = "data/gsm8k_train.jsonl", const std::string& preset = "gsm8k");
// {"dir", "name"} plus the given extra keys: where the command writes (RUN = dir/name).
nlohmann::json run_section(const std::string& name, nlohmann::json extra = nlohmann::json::object());

// {"spec", "routes", "model_*"}: the reward a recipe scores with ("math+format:0.2+model:0.5",
// reward/composite.h); routes "TYPE=SPEC" score the samples of a prompt type by their own spec; the
// model_* keys configure the `model` reward (a reward model directory made by `r1 rm`).
nlohmann::json reward_section(const std::string& spec = "math+format:0.2");
// Every reward name, route and the model path are checked first, errors naming the key, before a
// reward model is loaded.
std::unique_ptr<reward::Reward> make_recipe_reward(const Recipe& r, const std::string& section = "reward");

// The recipe's `device`, checked to be usable here.
Device recipe_device(const Recipe& r);

// model.tokenizer, or model.path when empty; "byte" is the built-in byte codec. Errors name the key.
std::string tokenizer_source(const Recipe& r, const std::string& section = "model");
std::unique_ptr<text::Codec> load_codec(const Recipe& r, const std::string& section = "model");

// The architecture the recipe's model section describes (section.path's config.json, an adapter's
// base, or init_preset with its overrides and the vocabulary), read without loading any weights.
model::ModelConfig recipe_model_config(const Recipe& r, const text::Codec& codec, const std::string& section = "model");

// The model of `section` on `device`: loaded from section.path (an HF model directory, or a PEFT
// adapter directory: its base model with the adapter), or a fresh model of section.init_*
// (vocabulary from the codec unless init_vocab_size is set) initialised from `seed`. A trainable
// model with train.lora.rank > 0 gets fresh adapters over a frozen base. `master`: where a trainable
// CUDA model keeps its fp32 master copy (Host when the optimizer is offloaded, run/memory_preflight.h).
// sharded (optional): when the run shards fully over several ranks (parallel.shard: full, no LoRA),
// the model is built without weights and *sharded is set to where each rank reads its
// shard (the checkpoint, or the seed's random weights): optim::DataParallelConfig::source. No rank
// then holds the whole model at the start.
std::unique_ptr<model::Transformer> load_or_init_model(const Recipe& r, const text::Codec& codec, Device device,
                                                       uint64_t seed, bool trainable = true,
                                                       const std::string& section = "model",
                                                       model::MasterPlace master = model::MasterPlace::Device,
                                                       model::WeightSource* sharded = nullptr);

// The problems of section.path under section.preset (or the custom field names).
std::vector<data::Problem> load_problems(const Recipe& r, const std::string& section = "data");

// Question -> prompt text under section.template: "r1-zero", "chat" (the tokenizer's chat template)
// or "none" (the question itself), with section.prompt_suffix appended to the question.
using PromptRenderer = std::function<std::string(const data::Problem&)>;
PromptRenderer make_renderer(const Recipe& r, const std::string& section = "data",
                             const std::string& model_section = "model");

// The run directory a recipe names: run.dir/run.name.
std::string run_path(const Recipe& r);

// How a command runs (every `r1 CMD` that writes a run directory takes these).
struct RunOptions {
  bool resume = false;       // continue from what the run directory already holds
  int64_t stop_after = -1;   // testing: end the process abruptly after this step, as a kill would
};
// Under mpirun: every rank must run the same recipe with the same options, or the ranks would
// split batches, shard state and issue collectives differently (a hang, or silently wrong sums).
// Collective (an all-gather of each rank's resolved recipe); a disagreement fails on every rank
// alike, naming the first key that differs and its values on rank 0 and on the other rank. One
// process: nothing.
void check_ranks_agree(const Recipe& r, const RunOptions& opts);
// Ends the process abruptly (exit 137, as kill -9 would) when `step` is opts.stop_after; under
// mpirun after every rank got there, so rank 0's checkpoint of that step is complete.
void stop_if_asked(const RunOptions& opts, int64_t step);

// The parallel section of the data-parallel trainers (grpo, sft), used when launched by mpirun:
// shard (none | optimizer | gradients: what each rank holds 1/N of, optim/data_parallel.h; zero1:
// true is the old spelling of shard: optimizer), bucket_mb (gradient all-reduce bucket size) and
// overlap (all-reduce during the backward on GPUs).
// train.lora: LoRA adapters instead of full training (model/lora.h); rank 0 trains every weight.
nlohmann::json lora_section();
// The section's LoRA settings, validated (errors name the section); rank 0 (or no section): none.
model::LoraConfig lora_config(const Recipe& r, const std::string& section = "train.lora");

nlohmann::json parallel_section();
optim::DataParallelConfig parallel_config(const Recipe& r);

// RUN/summary.json, written atomically when a command finishes: its headline numbers (final loss,
// accuracy, acceptance rate...). Its presence says the command completed; pipelines record it.
void write_summary(const std::string& run_dir, const nlohmann::json& summary);
nlohmann::json read_summary(const std::string& run_dir);  // throws naming the file when absent

// Saves `m` as an HF directory at `dir` and copies the tokenizer files from `tokenizer` (a directory;
// nothing for "byte"), so `dir` is a complete model that r1, transformers and vLLM load on its own.
// The trained model into `dir` (the run's model/), with the tokenizer's files: an HF model
// directory, or with LoRA a PEFT adapter directory whose base_model_name_or_path is the base
// model's directory (a random base is saved once beside it, as DIR_base), which model.path loads.
// The full model's weights are saved in run.export_dtype (float32 | bfloat16; an adapter keeps its own).
void export_model(const model::Transformer& m, const Recipe& r, const std::string& dir);
// run.export_dtype of the training commands (sft, rm, grpo): float32, the fp32 master weights as
// trained, or bfloat16, half the bytes (a 7B model's 30.5 GB become 15.2 GB); another value is an
// error naming the key.
DType export_dtype(const Recipe& r);
// Copies the tokenizer files (tokenizer.json, tokenizer_config.json, ...) that `from` has into `to`.
void copy_tokenizer_files(const std::string& from, const std::string& to);
// The base model directory of the recipe's model: model.path, or its base when it is an adapter
// ("" for a random model).
std::string base_model_path(const Recipe& r, const std::string& section = "model");

}  // namespace r1::run

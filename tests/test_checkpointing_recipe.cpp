// train.activation_checkpointing in the recipes of r1 sft, grpo and rm: "on" checkpoints every
// update forward and "off" none (metrics.jsonl counts them), the weights come out bit for bit the
// same either way, checkpointing holds less activation memory, and a bad value names the key.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fs.h"
#include "base/rng.h"
#include "run/recipe.h"
#include "test_util.h"
#include "train/grpo_config.h"
#include "train/grpo_run.h"
#include "train/rm_run.h"
#include "train/sft_run.h"

using namespace r1;

namespace {

using RunFn = std::string (*)(const run::Recipe&, const run::RunOptions&);

struct TrainedRun {
  std::vector<nlohmann::json> metrics;
  std::string weights;  // RUN/model/model.safetensors
};

TrainedRun run_with(nlohmann::json defaults, RunFn fn, std::vector<std::string> args,
                    const test::TempDir& dir, const std::string& mode) {
  run::Recipe r(std::move(defaults));
  args.push_back("train.activation_checkpointing=" + mode);
  args.push_back("run.dir=" + dir.path());
  args.push_back("run.name=" + mode);
  r.apply_args(args);
  const std::string path = fn(r, {});
  TrainedRun out;
  for (const std::string& line : test::read_lines(fs::join(path, "metrics.jsonl")))
    out.metrics.push_back(nlohmann::json::parse(line));
  out.weights = fs::read_file(fs::join(path, "model/model.safetensors"));
  return out;
}

// Every step's update forwards: all checkpointed with "on", none with "off"; the same weights.
void expect_wired(const TrainedRun& on, const TrainedRun& off) {
  ASSERT_FALSE(on.metrics.empty());
  ASSERT_EQ(on.metrics.size(), off.metrics.size());
  for (size_t i = 0; i < on.metrics.size(); ++i) {
    const double n = on.metrics[i].at("micro_batches").get<double>();
    EXPECT_GT(n, 0) << "step " << i;
    EXPECT_EQ(on.metrics[i].at("checkpointed_micro_batches").get<double>(), n) << "step " << i;
    EXPECT_EQ(off.metrics[i].at("checkpointed_micro_batches").get<double>(), 0) << "step " << i;
    EXPECT_EQ(on.metrics[i].at("loss"), off.metrics[i].at("loss")) << "step " << i;
  }
  EXPECT_LT(on.metrics.back().at("memory/activations_mib").get<double>(),
            off.metrics.back().at("memory/activations_mib").get<double>());
  EXPECT_TRUE(on.weights == off.weights) << "checkpointing changed the trained weights";
}

std::string write_sft_rows(const test::TempDir& dir) {
  std::ofstream out(dir.file("rows.jsonl"));
  for (int i = 0; i < 12; ++i)
    out << nlohmann::json{{"prompt", std::to_string(i) + ":"},
                          {"completion", "the answer " + std::to_string(i * 7)}}
               .dump()
        << "\n";
  return dir.file("rows.jsonl");
}

TEST(CheckpointingRecipe, SftSwitchIsWired) {
  test::TempDir dir;
  const std::vector<std::string> args = {test::source_path("recipes/sft_tiny_byte.yaml"),
                                         "data.path=" + write_sft_rows(dir), "train.steps=3",
                                         "train.batch_size=6", "train.micro_batch_tokens=40"};
  const TrainedRun on = run_with(train::sft_recipe_defaults(), train::run_sft, args, dir, "on");
  const TrainedRun off = run_with(train::sft_recipe_defaults(), train::run_sft, args, dir, "off");
  expect_wired(on, off);
  EXPECT_GT(on.metrics[0].at("micro_batches").get<double>(), 1);  // accumulation over several
}

TEST(CheckpointingRecipe, GrpoSwitchIsWired) {
  test::TempDir dir;
  const std::vector<std::string> args = {test::source_path("recipes/tiny_byte_gsm8k.yaml"),
                                         "data.path=" + test::source_path("data/gsm8k_train.jsonl"),
                                         "train.steps=1",
                                         "run.save_every=0",
                                         "grpo.prompts_per_step=2",
                                         "grpo.max_completion_tokens=16",
                                         "grpo.micro_batch_tokens=256"};
  const TrainedRun on = run_with(train::grpo_recipe_defaults(), train::run_grpo, args, dir, "on");
  const TrainedRun off = run_with(train::grpo_recipe_defaults(), train::run_grpo, args, dir, "off");
  expect_wired(on, off);
}

TEST(CheckpointingRecipe, RmSwitchIsWired) {
  test::TempDir dir;
  Rng rng(5);
  {
    std::ofstream out(dir.file("pairs.jsonl"));
    for (int i = 0; i < 16; ++i) {
      std::string body;
      for (int k = 0; k < 2 + int(rng.next_u32() % 5); ++k) body += char('a' + rng.next_u32() % 6);
      out << nlohmann::json{{"prompt", "q" + body}, {"chosen", body + " yes"}, {"rejected", body + " no"}}
                 .dump()
          << "\n";
    }
  }
  const std::vector<std::string> args = {
      "model.tokenizer=byte", "data.template=none", "data.path=" + dir.file("pairs.jsonl"),
      "train.batch_size=8",   "train.steps=2",      "train.micro_batch_tokens=48"};
  const TrainedRun on = run_with(train::rm_recipe_defaults(), train::run_rm, args, dir, "on");
  const TrainedRun off = run_with(train::rm_recipe_defaults(), train::run_rm, args, dir, "off");
  expect_wired(on, off);
}

TEST(CheckpointingRecipe, DefaultIsAutoAndABadValueNamesTheKey) {
  for (const nlohmann::json& d :
       {train::sft_recipe_defaults(), train::grpo_recipe_defaults(), train::rm_recipe_defaults()})
    EXPECT_EQ(d.at("train").at("activation_checkpointing"), "auto");
  run::Recipe r(train::grpo_recipe_defaults());
  r.apply_args({"train.activation_checkpointing=sometimes"});
  try {
    train::grpo_config(r);
    ADD_FAILURE() << "'sometimes' was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.activation_checkpointing"), std::string::npos) << e.what();
  }
  run::Recipe on(train::grpo_recipe_defaults());
  on.apply_args({"train.activation_checkpointing=on"});
  EXPECT_EQ(train::grpo_config(on).checkpointing, model::Checkpointing::On);
}

}  // namespace

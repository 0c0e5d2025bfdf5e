// train.optimizer_offload in the recipes (run/memory_preflight.h): `on` runs the offloaded optimizer
// (on the CPU: the same chunked path with memory copies) and trains the same bits as `off`, its
// checkpoints resume exactly, and bad values fail naming the key.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "base/fs.h"
#include "test_util.h"

using namespace r1;

namespace {

void write_rows(const test::TempDir& dir) {
  std::ofstream out(dir.file("train.jsonl"));
  for (int i = 0; i < 12; ++i)
    out << nlohmann::json{{"prompt", std::to_string(i) + ":"}, {"completion", "the " + std::to_string(3 * i)}}.dump()
        << "\n";
}

std::string sft(const test::TempDir& dir, const std::string& name, const std::string& offload) {
  return "sft " + test::source_path("recipes/sft_tiny_byte.yaml") + " data.path=" + dir.file("train.jsonl") +
         " train.steps=5 train.batch_size=4 train.max_grad_norm=0.1 train.weight_decay=0.1 run.save_every=2 "
         "train.optimizer_offload=" + offload + " run.dir=" + dir.path() + " run.name=" + name;
}

constexpr const char* kOffloaded = "optimizer offloaded: AdamW runs on the CPU";

bool same_file(const test::TempDir& dir, const std::string& a, const std::string& b) {
  return fs::read_file(dir.file(a)) == fs::read_file(dir.file(b));
}

}  // namespace

TEST(OffloadRecipe, SftOnTrainsTheBitsOfOffAndResumesExactly) {
  test::TempDir dir;
  write_rows(dir);
  auto off = test::run_r1(sft(dir, "off", "off"));
  ASSERT_EQ(off.exit_code, 0) << off.err;
  EXPECT_EQ(off.err.find(kOffloaded), std::string::npos);
  auto on = test::run_r1(sft(dir, "on", "on"));
  ASSERT_EQ(on.exit_code, 0) << on.err;
  EXPECT_NE(on.err.find(kOffloaded), std::string::npos) << on.err;
  EXPECT_TRUE(same_file(dir, "off/model/model.safetensors", "on/model/model.safetensors"));
  EXPECT_TRUE(same_file(dir, "off/checkpoints/step_000004/optimizer.safetensors",
                        "on/checkpoints/step_000004/optimizer.safetensors"));
  // Killed after step 2 (checkpoint of step 1), resumed: the offloaded state comes back exactly.
  auto cut = test::run_r1(sft(dir, "cut", "on") + " --stop-after 2");
  ASSERT_NE(cut.exit_code, 0);
  auto resumed = test::run_r1(sft(dir, "cut", "on") + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_TRUE(same_file(dir, "on/model/model.safetensors", "cut/model/model.safetensors"));
  EXPECT_TRUE(same_file(dir, "on/checkpoints/step_000004/optimizer.safetensors",
                        "cut/checkpoints/step_000004/optimizer.safetensors"));
  // The memory metrics are recorded every step.
  const auto line = nlohmann::json::parse(test::read_lines(dir.file("on/metrics.jsonl")).at(0));
  EXPECT_GT(line.at("memory/update_gib").get<double>(), 0.0);
  EXPECT_GT(line.at("memory/host_peak_gib").get<double>(), 0.0);
}

TEST(OffloadRecipe, GrpoOnTrainsTheBitsOfOff) {
  test::TempDir dir;
  auto args = [&](const std::string& name, const std::string& offload) {
    return "grpo " + test::source_path("recipes/tiny_byte_gsm8k.yaml") + " data.path=" +
           test::source_path("data/gsm8k_train.jsonl") + " train.steps=2 run.save_every=0 run.samples_every=0" +
           " grpo.kl_coef=0.05 train.optimizer_offload=" + offload + " run.dir=" + dir.path() + " run.name=" + name;
  };
  auto off = test::run_r1(args("off", "off"));
  ASSERT_EQ(off.exit_code, 0) << off.err;
  auto on = test::run_r1(args("on", "on"));
  ASSERT_EQ(on.exit_code, 0) << on.err;
  EXPECT_NE(on.err.find(kOffloaded), std::string::npos) << on.err;
  EXPECT_TRUE(same_file(dir, "off/model/model.safetensors", "on/model/model.safetensors"));
  const auto line = nlohmann::json::parse(test::read_lines(dir.file("on/metrics.jsonl")).at(1));
  for (const char* k : {"memory/held_gib", "memory/rollout_gib", "memory/reference_gib", "memory/update_gib",
                        "memory/host_peak_gib"})
    EXPECT_GT(line.at(k).get<double>(), 0.0) << k;
}

TEST(OffloadRecipe, BadValuesNameTheKey) {
  test::TempDir dir;
  write_rows(dir);
  auto bad = test::run_r1(sft(dir, "bad", "sometimes"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("recipe key 'train.optimizer_offload' must be auto, on or off (got 'sometimes')"),
            std::string::npos)
      << bad.err;
  auto lora = test::run_r1(sft(dir, "lora", "on") + " train.lora.rank=4");
  EXPECT_NE(lora.exit_code, 0);
  EXPECT_NE(lora.err.find("recipe key 'train.optimizer_offload' is on, but the run trains LoRA adapters"),
            std::string::npos)
      << lora.err;
  EXPECT_FALSE(fs::exists(dir.file("bad/metrics.jsonl")));
}

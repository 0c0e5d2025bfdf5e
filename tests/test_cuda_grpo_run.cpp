// r1 grpo on the GPU, bit for bit (issue 20's deterministic training): two runs of one recipe end
// with the same weights and optimizer state, and a run killed after step 4 and resumed ends where
// the uninterrupted one does. What it takes: no float atomics in any backward (the flash-attention
// dQ is summed per query tile in key order, the embedding backward in position order after a
// stable sort of the ids), the sampler seeded from the run's seed and the step, and the whole optimizer
// and data state in the checkpoint. Not yet run on a GPU; without a usable GPU these tests skip.
#include <gtest/gtest.h>

#include <string>

#include "base/fs.h"
#include "require_gpu.h"
#include "test_util.h"

using namespace r1;

namespace {

std::string cuda_recipe(const test::TempDir& dir, const std::string& name) {
  return "grpo " + test::source_path("recipes/tiny_byte_gsm8k.yaml") + " data.path=" +
         test::source_path("data/gsm8k_train.jsonl") + " run.dir=" + dir.path() + " run.name=" + name +
         " device=cuda";
}

std::string step5(const test::TempDir& dir, const std::string& name, const std::string& file) {
  return fs::read_file(dir.file(name + "/checkpoints/step_000005/" + file));
}

TEST(CudaGrpoRun, TwoRunsOfOneRecipeAreBitwiseEqual) {
  REQUIRE_GPU();
  test::TempDir dir;
  for (const char* name : {"a", "b"}) {
    const auto r = test::run_r1(cuda_recipe(dir, name));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_TRUE(step5(dir, "a", "model/model.safetensors") == step5(dir, "b", "model/model.safetensors"))
      << "two GPU runs of one recipe end with different weights";
  EXPECT_TRUE(step5(dir, "a", "optimizer.safetensors") == step5(dir, "b", "optimizer.safetensors"));
  // ... and they trained: the weights moved since step 3.
  EXPECT_NE(step5(dir, "a", "model/model.safetensors"),
            fs::read_file(dir.file("a/checkpoints/step_000003/model/model.safetensors")));
}

TEST(CudaGrpoRun, KilledAndResumedEqualsUninterrupted) {
  REQUIRE_GPU();
  test::TempDir dir;
  const auto full = test::run_r1(cuda_recipe(dir, "full"));
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const auto killed = test::run_r1(cuda_recipe(dir, "cut") + " --stop-after 4");
  ASSERT_NE(killed.exit_code, 0);  // ended abruptly after step 4; the last checkpoint is step 3
  EXPECT_FALSE(fs::exists(dir.file("cut/checkpoints/step_000005")));
  const auto resumed = test::run_r1(cuda_recipe(dir, "cut") + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming"), std::string::npos);
  EXPECT_TRUE(step5(dir, "full", "model/model.safetensors") == step5(dir, "cut", "model/model.safetensors"))
      << "the resumed GPU run's weights differ from the uninterrupted run's";
  EXPECT_TRUE(step5(dir, "full", "optimizer.safetensors") == step5(dir, "cut", "optimizer.safetensors"));
}

}  // namespace

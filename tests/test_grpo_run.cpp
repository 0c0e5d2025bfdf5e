// r1 grpo from a recipe: a run killed mid-way and resumed ends with the same weights, bit for bit,
// as an uninterrupted run; bad recipes, datasets and reward names fail before any compute.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "export_util.h"
#include "model/adapter_checkpoint.h"
#include "test_util.h"

using namespace r1;

namespace {

std::string recipe_args(const test::TempDir& dir, const std::string& name) {
  return "grpo " + test::source_path("recipes/tiny_byte_gsm8k.yaml") + " data.path=" +
         test::source_path("data/gsm8k_train.jsonl") + " run.dir=" + dir.path() + " run.name=" + name;
}

TEST(GrpoRun, KilledAndResumedEqualsUninterrupted) {
  test::TempDir dir;
  auto full = test::run_r1(recipe_args(dir, "full"));
  ASSERT_EQ(full.exit_code, 0) << full.err;
  auto killed = test::run_r1(recipe_args(dir, "cut") + " --stop-after 4");
  ASSERT_NE(killed.exit_code, 0);  // ended abruptly after step 4; the last checkpoint is step 3
  EXPECT_FALSE(fs::exists(dir.file("cut/checkpoints/step_000005")));
  auto resumed = test::run_r1(recipe_args(dir, "cut") + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming"), std::string::npos);
  const std::string a = fs::read_file(dir.file("full/checkpoints/step_000005/model/model.safetensors"));
  const std::string b = fs::read_file(dir.file("cut/checkpoints/step_000005/model/model.safetensors"));
  EXPECT_EQ(a.size(), b.size());
  EXPECT_TRUE(a == b) << "resumed weights differ from the uninterrupted run";
  // ... and the run did train: the weights moved between the two checkpoints.
  EXPECT_NE(a, fs::read_file(dir.file("full/checkpoints/step_000003/model/model.safetensors")));
  EXPECT_EQ(fs::read_file(dir.file("full/checkpoints/step_000005/optimizer.safetensors")),
            fs::read_file(dir.file("cut/checkpoints/step_000005/optimizer.safetensors")));
  // metrics.jsonl of the resumed run has each step once.
  EXPECT_EQ(test::read_lines(dir.file("cut/metrics.jsonl")).size(), 6u);
  EXPECT_TRUE(fs::exists(dir.file("full/report.html")));
  EXPECT_TRUE(fs::exists(dir.file("full/config.yaml")));
}

// Partial rollouts with over-provisioning: the sequences in flight at a checkpoint are part of its
// state, so a killed and resumed run still ends with the uninterrupted run's weights, bit for bit.
TEST(GrpoRun, PartialRolloutsKilledAndResumedEqualsUninterrupted) {
  test::TempDir dir;
  const std::string partial = " grpo.partial_rollout_tokens=12 grpo.overprovision_prompts=2";
  auto full = test::run_r1(recipe_args(dir, "full") + partial);
  ASSERT_EQ(full.exit_code, 0) << full.err;
  auto killed = test::run_r1(recipe_args(dir, "cut") + partial + " --stop-after 4");
  ASSERT_NE(killed.exit_code, 0);
  const nlohmann::json state =
      nlohmann::json::parse(fs::read_file(dir.file("cut/checkpoints/step_000003/state.json")));
  ASSERT_TRUE(state.contains("partial_rollouts")) << state.dump();
  int64_t carried_tokens = 0;
  for (const auto& g : state.at("partial_rollouts"))
    for (const auto& s : g.at("seqs")) carried_tokens += int64_t(s.at("tokens").size());
  EXPECT_GT(carried_tokens, 0) << "the checkpoint should hold sequences in flight";
  auto resumed = test::run_r1(recipe_args(dir, "cut") + partial + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const std::string a = fs::read_file(dir.file("full/checkpoints/step_000005/model/model.safetensors"));
  const std::string b = fs::read_file(dir.file("cut/checkpoints/step_000005/model/model.safetensors"));
  EXPECT_TRUE(a == b) << "resumed weights differ from the uninterrupted run";
  EXPECT_NE(a, fs::read_file(dir.file("full/checkpoints/step_000003/model/model.safetensors")));
  EXPECT_EQ(fs::read_file(dir.file("full/checkpoints/step_000005/state.json")),
            fs::read_file(dir.file("cut/checkpoints/step_000005/state.json")));
  const std::vector<std::string> lines = test::read_lines(dir.file("full/metrics.jsonl"));
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_NE(lines[0].find("\"partial/carried_seqs\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"rollout/occupancy\""), std::string::npos) << lines[0];

  auto bad = test::run_r1(recipe_args(dir, "bad") + " grpo.partial_rollout_tokens=-1");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("grpo.partial_rollout_tokens"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir.file("bad")));
  auto alone = test::run_r1(recipe_args(dir, "bad") + " grpo.overprovision_prompts=3");
  EXPECT_NE(alone.exit_code, 0);
  EXPECT_NE(alone.err.find("grpo.overprovision_prompts (3) needs grpo.partial_rollout_tokens"),
            std::string::npos)
      << alone.err;
  EXPECT_FALSE(fs::exists(dir.file("bad")));
}

// run.checkpoint_contents: weights keeps the weights alone (no AdamW moments, no reference that
// never changes): a resumed run continues from them with fresh moments, so it trains on but does
// not equal the uninterrupted run; a recipe that refreshes the reference cannot resume without it.
TEST(GrpoRun, WeightsOnlyCheckpointsResumeWithFreshMoments) {
  test::TempDir dir;
  const std::string kl = " grpo.kl_coef=0.05";
  // The uninterrupted run also exports in bf16 (run.export_dtype changes the export alone): its model
  // is the last checkpoint's weights rounded.
  auto full = test::run_r1(recipe_args(dir, "full") + kl + " run.export_dtype=bfloat16");
  ASSERT_EQ(full.exit_code, 0) << full.err;
  test::expect_bf16_export(dir.file("full/model"), dir.file("full/checkpoints/step_000005/model"));
  const std::string weights = kl + " run.checkpoint_contents=weights";
  auto killed = test::run_r1(recipe_args(dir, "cut") + weights + " --stop-after 4");
  ASSERT_NE(killed.exit_code, 0);
  const std::string ck = dir.file("cut/checkpoints/step_000003");
  EXPECT_TRUE(fs::exists(ck + "/model/model.safetensors"));
  EXPECT_FALSE(fs::exists(ck + "/optimizer.safetensors"));
  EXPECT_FALSE(fs::exists(ck + "/reference"));
  EXPECT_TRUE(fs::exists(dir.file("full/checkpoints/step_000003/reference/model.safetensors")));
  EXPECT_NE(fs::read_file(ck + "/state.json").find("\"contents\": \"weights\""), std::string::npos);
  // Up to the checkpoint both runs are the same run: the same weights (the CPU's compute dtype is f32).
  EXPECT_TRUE(fs::read_file(ck + "/model/model.safetensors") ==
              fs::read_file(dir.file("full/checkpoints/step_000003/model/model.safetensors")));

  auto refreshing = test::run_r1(recipe_args(dir, "cut") + weights + " grpo.ref_refresh_steps=2 --resume");
  EXPECT_NE(refreshing.exit_code, 0);
  EXPECT_NE(refreshing.err.find("has no reference/ but grpo.ref_refresh_steps is 2"), std::string::npos)
      << refreshing.err;

  auto resumed = test::run_r1(recipe_args(dir, "cut") + weights + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("the AdamW moments restart from zero"), std::string::npos) << resumed.err;
  const std::string a = fs::read_file(dir.file("full/checkpoints/step_000005/model/model.safetensors"));
  const std::string b = fs::read_file(dir.file("cut/checkpoints/step_000005/model/model.safetensors"));
  EXPECT_EQ(a.size(), b.size());
  EXPECT_FALSE(a == b) << "fresh moments should give other weights than the uninterrupted run";
  EXPECT_FALSE(b == fs::read_file(ck + "/model/model.safetensors")) << "the resumed run did not train";
  const std::vector<std::string> lines = test::read_lines(dir.file("cut/metrics.jsonl"));
  ASSERT_EQ(lines.size(), 6u);
  // A step that saved carries the save's time (save_every 2: steps 1, 3 and 5), the others not.
  EXPECT_EQ(lines[0].find("time/checkpoint"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("\"time/checkpoint\""), std::string::npos) << lines[1];
  EXPECT_NE(lines[5].find("\"time/checkpoint\""), std::string::npos) << lines[5];

  // With a refreshed reference, the reference is part of the weights a resume needs.
  auto refreshed = test::run_r1(recipe_args(dir, "refresh") + weights + " grpo.ref_refresh_steps=2 --stop-after 2");
  ASSERT_NE(refreshed.exit_code, 0);
  EXPECT_TRUE(fs::exists(dir.file("refresh/checkpoints/step_000001/reference/model.safetensors")));

  auto bad = test::run_r1(recipe_args(dir, "bad") + " run.checkpoint_contents=half");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("recipe key 'run.checkpoint_contents' must be full or weights, not 'half'"),
            std::string::npos)
      << bad.err;
  EXPECT_FALSE(fs::exists(dir.file("bad")));
}

// With LoRA (adapters with dropout, the KL reference being the base with the adapters off), the
// checkpoint holds the adapter and its optimizer state, and a resumed run ends with the same adapter.
TEST(GrpoRun, LoraKilledAndResumedEqualsUninterrupted) {
  test::TempDir dir;
  const std::string lora =
      " train.lora.rank=4 train.lora.alpha=8 train.lora.dropout=0.1 grpo.kl_coef=0.05 train.lr=1e-2";
  auto full = test::run_r1(recipe_args(dir, "full") + lora);
  ASSERT_EQ(full.exit_code, 0) << full.err;
  auto killed = test::run_r1(recipe_args(dir, "cut") + lora + " --stop-after 4");
  ASSERT_NE(killed.exit_code, 0);
  auto resumed = test::run_r1(recipe_args(dir, "cut") + lora + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const std::string ck = "checkpoints/step_000005/";
  EXPECT_FALSE(fs::exists(dir.file("full/" + ck + "model")));
  EXPECT_FALSE(fs::exists(dir.file("full/" + ck + "reference"))) << "no second copy for the KL reference";
  const std::string a = fs::read_file(dir.file("full/" + ck + "adapter/adapter_model.safetensors"));
  EXPECT_TRUE(a == fs::read_file(dir.file("cut/" + ck + "adapter/adapter_model.safetensors")))
      << "resumed adapter differs from the uninterrupted run";
  EXPECT_NE(a, fs::read_file(dir.file("full/checkpoints/step_000003/adapter/adapter_model.safetensors")));
  EXPECT_EQ(fs::read_file(dir.file("full/" + ck + "optimizer.safetensors")),
            fs::read_file(dir.file("cut/" + ck + "optimizer.safetensors")));
  EXPECT_TRUE(fs::exists(dir.file("full/model/adapter_config.json")));
}

// train.lora.rslora reaches the model: the adapter trains at scale alpha / sqrt(r) (so it ends
// elsewhere than at alpha / r) and is written with PEFT's use_rslora, which loading honours.
TEST(GrpoRun, RsLoraKeyScalesTheAdapter) {
  test::TempDir dir;
  const std::string lora = " train.lora.rank=4 train.lora.alpha=8 train.lr=1e-2 train.steps=2";
  auto plain = test::run_r1(recipe_args(dir, "plain") + lora);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  auto rs = test::run_r1(recipe_args(dir, "rs") + lora + " train.lora.rslora=true");
  ASSERT_EQ(rs.exit_code, 0) << rs.err;
  const std::string cfg = fs::read_file(dir.file("rs/model/adapter_config.json"));
  EXPECT_NE(cfg.find("\"use_rslora\": true"), std::string::npos) << cfg;
  const model::Transformer m = model::load_adapted_model(dir.file("rs/model"), "", Device::CPU);
  EXPECT_FLOAT_EQ(m.lora().scale(), 4.0f);  // 8 / sqrt(4), not 8 / 4
  EXPECT_NE(fs::read_file(dir.file("rs/model/adapter_model.safetensors")),
            fs::read_file(dir.file("plain/model/adapter_model.safetensors")));
}

TEST(GrpoRun, RecipeTypoNamesTheNearestKey) {
  test::TempDir dir;
  auto r = test::run_r1(recipe_args(dir, "x") + " grpo.group_sise=4");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("grpo.group_size"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("x")));
}

TEST(GrpoRun, UnknownRewardIsAnErrorBeforeCompute) {
  test::TempDir dir;
  auto r = test::run_r1(recipe_args(dir, "x") + " reward.spec=math+style");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("style"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("x")));
}

TEST(GrpoRun, DatasetRowWithoutAnswerNamesTheLine) {
  test::TempDir dir;
  std::ofstream(dir.file("d.jsonl")) << "{\"question\": \"1+1\", \"answer\": \"#### 2\"}\n{\"question\": \"2+2\"}\n";
  auto r = test::run_r1(recipe_args(dir, "x") + " data.path=" + dir.file("d.jsonl"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("d.jsonl line 2: missing answer field 'answer'"), std::string::npos) << r.err;
}

}  // namespace

// r1 grpo end to end on a small random deepseek_v3 model (MLA + DeepSeekMoE) on the CPU: rollouts
// through the KV cache, rewards, updates through the routers and experts, checkpoints in the HF
// layout; the reward rises on a task the random model can learn, with routing replay on and off;
// and with DeepSeek-V3's bias update on, a run killed mid-way and resumed ends bit for bit where
// the uninterrupted one does (the bias is in the checkpoint).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "test_util.h"

using namespace r1;

TEST(MoeGrpo, DeepseekV3RunsEndToEnd) {
  test::TempDir dir;
  const std::string args = "grpo " + test::source_path("recipes/tiny_byte_gsm8k.yaml") + " data.path=" +
                           test::source_path("data/gsm8k_train.jsonl") + " run.dir=" + dir.path() +
                           " run.name=ds model.init_preset=tiny-deepseek-v3 train.steps=2 train.seed=3";
  auto r = test::run_r1(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = test::read_lines(dir.file("ds/metrics.jsonl"));
  ASSERT_GE(lines.size(), 2u);
  int updates = 0;
  for (const auto& l : lines) {
    const auto j = nlohmann::json::parse(l);
    if (!j.contains("grad_norm")) continue;
    EXPECT_GT(j["grad_norm"].get<double>(), 0.0) << l;
    updates += int(j.value("updates", 0.0));
  }
  EXPECT_GE(updates, 1);
  // The trained model is a deepseek_v3 checkpoint in the HF layout, and the routers were trained.
  model::Transformer m = model::load_model(dir.file("ds/model"));
  EXPECT_EQ(m.config().model_type, "deepseek_v3");
  model::SafetensorsReader st(dir.file("ds/model"));
  EXPECT_TRUE(st.contains("model.layers.1.mlp.gate.e_score_correction_bias"));
  EXPECT_TRUE(st.contains("model.layers.1.mlp.experts.0.gate_proj.weight"));
  EXPECT_TRUE(st.contains("model.layers.0.self_attn.kv_a_proj_with_mqa.weight"));
  model::Transformer init(m.config());
  init.init_random(3);  // the run's initial weights (train.seed)
  const auto& spec = m.specs();
  bool router_moved = false;
  for (const auto& s : spec)
    if (s.name == "model.layers.1.mlp.gate.weight")
      for (int64_t i = 0; i < s.numel() && !router_moved; ++i)
        router_moved = m.params().flat.f32()[s.offset + i] != init.params().flat.f32()[s.offset + i];
  EXPECT_TRUE(router_moved);
}

namespace {

// Short prompts ("Say 3:") and the language reward (the share of the completion's words written in
// Latin letters): a random byte-level model starts near 0.1, writing mostly bytes above 127, and
// learns to write letters. Fast settings: 4 prompts x 8 samples of 12 tokens a step.
std::string learnable_args(const test::TempDir& dir, const std::string& name) {
  const std::string data = dir.file("say.jsonl");
  if (!fs::exists(data)) {
    std::ofstream f(data);
    for (int i = 0; i < 32; ++i) f << "{\"question\": \"Say " << i << ":\", \"answer\": \"" << i << "\"}\n";
  }
  return "grpo " + test::source_path("recipes/tiny_byte_gsm8k.yaml") + " data.path=" + data +
         " data.preset=custom model.init_preset=tiny-deepseek-v3 reward.spec=language reward.deadline_s=0"
         " grpo.prompts_per_step=4 grpo.group_size=8 grpo.max_completion_tokens=12 train.lr=1e-2"
         " run.dir=" +
         dir.path() + " run.name=" + name;
}

std::vector<nlohmann::json> metrics(const test::TempDir& dir, const std::string& name) {
  std::vector<nlohmann::json> out;
  for (const auto& l : test::read_lines(dir.file(name + "/metrics.jsonl")))
    out.push_back(nlohmann::json::parse(l));
  return out;
}

}  // namespace

TEST(MoeGrpo, RewardRisesWithRoutingReplayOnAndOff) {
  test::TempDir dir;
  for (const std::string replay : {"true", "false"}) {
    const std::string name = "replay_" + replay;
    auto r = test::run_r1(learnable_args(dir, name) +
                          " train.steps=16 run.save_every=0 train.moe.routing_replay=" + replay);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto m = metrics(dir, name);
    ASSERT_EQ(m.size(), 16u);
    double first = 0, last = 0;
    for (size_t s = 0; s < 3; ++s) first += m[s]["reward/mean"].get<double>() / 3;
    for (size_t s = 13; s < 16; ++s) last += m[s]["reward/mean"].get<double>() / 3;
    EXPECT_GT(last, first + 0.3) << name << ": reward " << first << " -> " << last;
    for (const auto& j : m) {
      for (const char* key : {"moe/logp_gap/replay", "moe/logp_gap/router", "moe/route_mismatch",
                              "moe/load_max/layer_1", "moe/load_cv/layer_2"})
        ASSERT_TRUE(j.contains(key)) << key << " missing from " << j.dump();
      // On the CPU the sampler and the trainer agree either way (a GPU's kernels would not).
      EXPECT_LT(j["moe/logp_gap/replay_max"].get<double>(), 1e-4);
      EXPECT_LT(j["moe/logp_gap/router_max"].get<double>(), 1e-4);
      if (replay == "true")
        EXPECT_GT(j["moe/replayed_frac"].get<double>(), 0.9);
      else
        EXPECT_EQ(j["moe/replayed_frac"].get<double>(), 0.0);
    }
  }
}

TEST(MoeGrpo, BiasUpdateIsCheckpointedAndResumesExactly) {
  test::TempDir dir;
  const std::string opts =
      " train.steps=4 run.save_every=2 train.moe.bias_update_speed=0.01 train.moe.routing_replay=true";
  auto full = test::run_r1(learnable_args(dir, "full") + opts);
  ASSERT_EQ(full.exit_code, 0) << full.err;
  auto killed = test::run_r1(learnable_args(dir, "cut") + opts + " --stop-after 2");
  ASSERT_NE(killed.exit_code, 0);  // ended abruptly after step 2; the last checkpoint is step 1
  auto resumed = test::run_r1(learnable_args(dir, "cut") + opts + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const std::string ck = "/checkpoints/step_000003/model";
  EXPECT_TRUE(fs::read_file(dir.file("full" + ck + "/model.safetensors")) ==
              fs::read_file(dir.file("cut" + ck + "/model.safetensors")))
      << "resumed weights differ from the uninterrupted run";
  // The bias moved by the speed's multiples, and is not where it was at step 1.
  const std::string bias = "model.layers.1.mlp.gate.e_score_correction_bias";
  model::Transformer at3 = model::load_model(dir.file("full" + ck));
  model::Transformer at1 = model::load_model(dir.file("full/checkpoints/step_000001/model"));
  std::vector<float> b3, b1;
  for (const auto& s : at3.specs())
    if (s.name == bias) {
      b3.assign(at3.params().flat.f32() + s.offset, at3.params().flat.f32() + s.offset + s.numel());
      b1.assign(at1.params().flat.f32() + s.offset, at1.params().flat.f32() + s.offset + s.numel());
    }
  ASSERT_EQ(b3.size(), 8u);
  EXPECT_NE(b3, b1);
  for (float v : b3)
    EXPECT_NEAR(std::remainder(double(v), 0.01), 0.0, 1e-6) << v;  // 4 steps of +-0.01 from 0
}

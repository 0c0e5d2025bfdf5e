// r1 grpo end to end on a small random deepseek_v3 model (MLA + DeepSeekMoE) on the CPU: rollouts
// through the KV cache, rewards, updates through the routers and experts, checkpoints in the HF
// layout. (That the reward rises on a learnable task with this architecture is not shown here.)
#include <gtest/gtest.h>

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

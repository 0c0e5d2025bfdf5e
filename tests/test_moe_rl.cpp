// Mixture-of-experts models in RL (train/grpo_moe.h): the sampler records the experts of every
// token, the training forward replays them (and so uses the sampler's experts even where its own
// router would choose others), the GRPO update replays them when asked, the metrics report the
// log-prob gap both ways and the load per layer, and DeepSeek-V3's bias update follows the loads.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>

#include "base/error.h"
#include "base/rng.h"
#include "grpo_test_util.h"
#include "model/kv_cache.h"
#include "model/train_state.h"
#include "rollout/engine.h"
#include "tensor/device_memory.h"
#include "train/grpo_moe.h"

using namespace r1;

namespace {

model::Transformer tiny_moe(const std::string& preset = "tiny-deepseek-v3", uint64_t seed = 5) {
  model::ModelConfig c = model::preset_config(preset);
  model::override_config(c, "vocab_size", "257");  // the byte codec's ids
  model::Transformer m(c);
  m.init_random(seed, 0.1f);
  return m;
}

// Prompts sampled G times with the experts recorded.
std::vector<rollout::Completion> sample(const model::Transformer& m,
                                        const std::vector<std::vector<int32_t>>& prompts, int n,
                                        int max_new) {
  rollout::Engine engine(m, {4, 64, 256});
  rollout::GenerateParams gp;
  gp.sampling.seed = 7;
  gp.max_new_tokens = max_new;
  gp.record_routes = true;
  std::vector<rollout::Request> reqs;
  for (const auto& p : prompts) reqs.push_back({p, n});
  return engine.generate(reqs, gp);
}

std::vector<int32_t> sequence(const std::vector<int32_t>& prompt, const rollout::Completion& c) {
  std::vector<int32_t> s = prompt;
  s.insert(s.end(), c.tokens.begin(), c.tokens.end());
  return s;
}

// Tokens sent to each expert by `routes` (every row recorded), per MoE layer.
std::vector<std::vector<int64_t>> counts_of(const model::ExpertRoutes& r, int64_t E) {
  std::vector<std::vector<int64_t>> out;
  for (const auto& layer : r.experts) {
    out.emplace_back(size_t(E), 0);
    for (int32_t e : layer) ++out.back()[size_t(e)];
  }
  return out;
}

std::vector<std::vector<int64_t>> moe_counts(const model::TrainState& st, const model::ExpertRoutes& r) {
  std::vector<std::vector<int64_t>> out;
  for (int l : r.layers) out.push_back(st.expert_counts()[size_t(l)]);
  return out;
}

}  // namespace

// Every token fed to the sampler has its experts recorded (the last token of a completion, never
// fed, has none), and replaying them in the training forward reproduces the sampler's log-probs.
TEST(MoeRl, SamplerRecordsTheRoutersChoiceOfEveryFedToken) {
  model::Transformer m = tiny_moe();
  const std::vector<std::vector<int32_t>> prompts = {{10, 20, 30}, {40, 50, 60, 70, 80}};
  const auto outs = sample(m, prompts, 3, 6);
  ASSERT_EQ(outs.size(), 6u);
  const int64_t K = m.config().moe.num_experts_per_tok;
  for (const auto& c : outs) {
    const auto& prompt = prompts[size_t(c.prompt_index)];
    const int64_t N = int64_t(prompt.size() + c.tokens.size());
    ASSERT_EQ(c.routes.layers, (std::vector<int>{1, 2}));  // first_k_dense_replace = 1
    ASSERT_EQ(c.routes.tokens(), N);
    for (const auto& layer : c.routes.experts) {
      for (int64_t t = 0; t + 1 < N; ++t)
        EXPECT_GE(layer[size_t(t * K)], 0) << "token " << t << " unrecorded";
      EXPECT_EQ(layer[size_t((N - 1) * K)], model::kUnrouted) << "the last token was never fed";
    }
    model::Batch b = model::pack_sequences({sequence(prompt, c)});
    b.replay = c.routes;
    model::TrainState st;
    const std::vector<float> lp = [&] {
      st.forward(m, b);
      return st.logp_host();
    }();
    // The same weights: the trainer's router agrees with every recorded choice.
    EXPECT_EQ(st.replay_counts().replayed, 2 * (N - 1));
    EXPECT_EQ(st.replay_counts().replaced, 0);
    EXPECT_EQ(st.replay_counts().routed, 2 * N);
    for (size_t t = 0; t < c.tokens.size(); ++t)
      EXPECT_NEAR(lp[prompt.size() - 1 + t], c.logprobs[t], 1e-4) << "token " << t;
  }
}

// After the router changes (as an update changes it), the replayed forward still computes with
// the sampler's experts, while the router's own choice differs: the test fails if the replay is
// ignored.
TEST(MoeRl, ReplayedForwardUsesTheSamplersExperts) {
  model::Transformer m = tiny_moe();
  const std::vector<int32_t> prompt = {3, 1, 4, 1, 5};
  const auto outs = sample(m, {prompt}, 2, 8);
  model::ExpertRoutes routes;
  std::vector<std::vector<int32_t>> seqs;
  for (const auto& c : outs) {
    seqs.push_back(sequence(prompt, c));
    model::append_routes(routes, c.routes);
  }
  // Replay every row: the never-fed last tokens go to experts 0 and 1.
  for (auto& layer : routes.experts)
    for (size_t i = 0; i < layer.size(); i += 2)
      if (layer[i] < 0) layer[i] = 0, layer[i + 1] = 1;
  // A new router: every router weight drawn again.
  float* w = m.params().flat.f32();
  Rng rng(123);
  for (const auto& s : m.specs())
    if (s.name.ends_with("mlp.gate.weight"))
      for (int64_t i = 0; i < s.numel(); ++i) w[s.offset + i] = 0.5f * rng.normal();
  const int64_t E = m.config().moe.num_experts;
  const auto want = counts_of(routes, E);
  model::Batch b = model::pack_sequences(seqs);
  b.replay = routes;
  model::TrainState st;
  st.forward(m, b);
  EXPECT_EQ(moe_counts(st, routes), want)
      << "the replayed forward must send each token to the sampler's experts";
  EXPECT_GT(st.replay_counts().replaced, 0) << "the new router should disagree somewhere";
  b.replay = {};
  st.forward(m, b);
  EXPECT_NE(moe_counts(st, routes), want) << "without replay the new router chooses";
  EXPECT_EQ(st.replay_counts().replayed, 0);
}

TEST(MoeRl, ReplayOfTheWrongShapeIsAnError) {
  model::Transformer m = tiny_moe();
  model::Batch b = model::pack_sequences({{1, 2, 3}});
  b.replay = model::unrecorded_routes(m.config(), 4);  // 4 rows for 3 tokens
  model::TrainState st;
  try {
    st.forward(m, b);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Batch::replay"), std::string::npos) << e.what();
  }
}

// DeepSeek-V3's rule: an under-loaded expert's bias rises by the speed, an over-loaded one's falls,
// one at the mean load stays; dense layers (no counts) are left alone.
TEST(MoeRl, ScoreBiasUpdateFollowsTheSignOfTheLoad) {
  model::Transformer m = tiny_moe();
  std::vector<std::vector<int64_t>> counts(3);
  counts[1] = {4, 4, 0, 8, 4, 4, 4, 4};  // mean 4
  counts[2] = {1, 2, 3, 4, 5, 6, 7, 4};  // mean 4
  const std::vector<float> b1 = to_host_f32(m.params().layers[1].moe.score_bias);
  train::update_score_bias(m, counts, 0.25);
  const std::vector<float> a1 = to_host_f32(m.params().layers[1].moe.score_bias);
  const std::vector<float> a2 = to_host_f32(m.params().layers[2].moe.score_bias);
  const std::vector<float> want1 = {0, 0, 0.25f, -0.25f, 0, 0, 0, 0};
  const std::vector<float> want2 = {0.25f, 0.25f, 0.25f, 0, -0.25f, -0.25f, -0.25f, 0};
  for (size_t e = 0; e < 8; ++e) {
    EXPECT_FLOAT_EQ(a1[e] - b1[e], want1[e]) << "layer 1 expert " << e;
    EXPECT_FLOAT_EQ(a2[e], want2[e]) << "layer 2 expert " << e;  // init zeroes the bias
  }
}

TEST(MoeRl, OptionsNameTheKeyWhenTheModelCannotUseThem) {
  auto message = [](const train::MoeRlConfig& c, const model::Transformer& m) {
    try {
      train::check_moe_options(c, m);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  train::MoeRlConfig replay, bias;
  replay.routing_replay = true;
  bias.bias_update_speed = 1e-3;
  model::Transformer dense = test::byte_model(1);
  EXPECT_NE(message(replay, dense).find("train.moe.routing_replay"), std::string::npos);
  EXPECT_NE(message(bias, dense).find("train.moe.bias_update_speed"), std::string::npos);
  model::Transformer qwen = tiny_moe("tiny-qwen3-moe");
  EXPECT_EQ(message(replay, qwen), "");
  EXPECT_NE(message(bias, qwen).find("e_score_correction_bias"), std::string::npos);
  model::Transformer ds = tiny_moe();
  EXPECT_EQ(message(bias, ds), "");
  ds.add_lora({.rank = 2, .targets = {"o_proj"}}, 1);
  EXPECT_NE(message(bias, ds).find("train.lora"), std::string::npos);
}

// One GRPO step on a deepseek_v3 model: the update replays the sampler's experts only when asked,
// and the step's metrics carry the log-prob gap both ways and each MoE layer's load.
TEST(MoeRl, GrpoStepReplaysWhenAskedAndReportsTheMoeMetrics) {
  text::ByteCodec codec;
  test::LetterReward reward;
  for (bool replay : {false, true}) {
    model::Transformer m = tiny_moe();
    train::GrpoConfig gc = test::small_grpo(2, 4, 6);
    gc.moe.routing_replay = replay;
    train::GrpoTrainer trainer(m, codec, reward, test::letter_problems(8), test::question, gc, 1);
    const train::StepStats st = trainer.step(0);
    std::map<std::string, double> got(st.moe.begin(), st.moe.end());
    for (const char* key :
         {"moe/logp_gap/replay", "moe/logp_gap/router", "moe/logp_gap/replay_max", "moe/logp_gap/router_max",
          "moe/route_mismatch", "moe/replayed_frac", "moe/load_max/layer_1", "moe/load_cv/layer_1",
          "moe/load_max/layer_2", "moe/load_cv/layer_2"})
      EXPECT_TRUE(got.count(key)) << key << (replay ? " (replay)" : "");
    EXPECT_FALSE(got.count("moe/load_max/layer_0")) << "layer 0 is dense";
    // The sampler and the trainer compute the same thing on the CPU, both ways.
    EXPECT_LT(got["moe/logp_gap/replay_max"], 1e-4);
    EXPECT_LT(got["moe/logp_gap/router_max"], 1e-4);
    EXPECT_EQ(got["moe/route_mismatch"], 0.0);
    EXPECT_GE(got["moe/load_max/layer_1"], 1.0);
    // Every token but each sequence's last is replayed in the update, or none.
    if (replay)
      EXPECT_GT(got["moe/replayed_frac"], 0.7);
    else
      EXPECT_EQ(got["moe/replayed_frac"], 0.0);
    // The metrics reach metrics.jsonl through step_metrics.
    const run::Scalars all = train::step_metrics(st);
    EXPECT_TRUE(std::any_of(all.begin(), all.end(),
                            [](const auto& kv) { return kv.first == "moe/logp_gap/router"; }));
  }
}

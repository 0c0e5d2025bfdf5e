// The mixture-of-experts and multi-head latent attention architectures (qwen3_moe, deepseek_v3) on
// the CPU: the backward against central finite differences of the forward, decoding through the KV
// cache against the training forward, checkpoints in the HF layout, the plan's block kinds, the
// per-expert load statistics. The CUDA path against this: test_cuda_moe.cpp.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <set>

#include "base/error.h"
#include "base/rng.h"
#include "kernels/ops.h"
#include "kernels/supports.h"
#include "model/checkpoint.h"
#include "model/kv_cache.h"
#include "model/safetensors.h"
#include "model/train_state.h"
#include "tensor/device_memory.h"
#include "lora_util.h"
#include "moe_util.h"
#include "test_util.h"

using namespace r1;

namespace {

using test::random_ids;
using test::tiny_moe;

// sum_t w_t * logp_t in double, for fixed weights w.
double weighted_logp(model::Transformer& m, const model::Batch& b, const std::vector<float>& w) {
  model::TrainState st;
  Tensor logp = st.forward(m, b);
  double s = 0;
  for (size_t t = 0; t < w.size(); ++t) s += double(w[t]) * logp.f32()[t];
  return s;
}

class MoeArch : public ::testing::TestWithParam<std::string> {};

// The analytic gradient of sum_t w_t logp_t against central differences, for sampled elements of
// every kind of parameter (router, experts, shared experts, MLA projections and norms, dense layers).
TEST_P(MoeArch, BackwardMatchesFiniteDifferences) {
  model::Transformer m = tiny_moe(GetParam());
  const int V = m.config().vocab_size;
  model::Batch batch = model::pack_sequences({random_ids(3, 11, V), random_ids(4, 6, V)});
  Rng rng(5);
  std::vector<float> w(batch.targets.size());
  for (size_t t = 0; t < w.size(); ++t) w[t] = batch.targets[t] >= 0 ? rng.normal() : 0.0f;
  model::TrainState st;
  st.forward(m, batch);
  m.zero_grads();
  st.backward(m, w);
  const std::vector<float> grads(m.grads().flat.f32(), m.grads().flat.f32() + m.grads().flat.numel());

  // A routing choice is a discontinuity: when a step of h flips one, the central difference is
  // meaningless, but the derivative on the side without the flip still equals the gradient (each
  // piece is smooth). So an element whose central difference disagrees is checked once more with
  // one-sided differences of a smaller step, one of which must agree; few may need it.
  float* p = m.params().flat.f32();
  const float h = 2e-3f;
  const double f0 = weighted_logp(m, batch, w);
  int checked = 0, router_checked = 0, one_sided = 0;
  auto near = [](double got, double fd, double rel) { return std::abs(got - fd) <= 2e-3 + rel * std::abs(fd); };
  for (const auto& s : m.specs()) {
    if (s.name.ends_with("e_score_correction_bias")) continue;  // the choice only: no gradient
    // Two elements of every tensor: the one with the largest gradient and one at random.
    int64_t big = 0;
    for (int64_t i = 1; i < s.numel(); ++i)
      if (std::abs(grads[size_t(s.offset + i)]) > std::abs(grads[size_t(s.offset + big)])) big = i;
    for (int64_t i : {big, int64_t(rng.next_u32() % uint64_t(s.numel()))}) {
      float& x = p[s.offset + i];
      const float x0 = x;
      auto f_at = [&](float step) {
        x = x0 + step;
        const double f = weighted_logp(m, batch, w);
        x = x0;
        return f;
      };
      const double got = grads[size_t(s.offset + i)];
      const double fd = (f_at(h) - f_at(-h)) / (2.0 * h);
      ++checked;
      router_checked += s.name.ends_with("mlp.gate.weight") && std::abs(fd) > 1e-4;
      if (near(got, fd, 2e-2)) continue;
      ++one_sided;
      const float hs = h / 4;
      const double right = (f_at(hs) - f0) / hs, left = (f0 - f_at(-hs)) / hs;
      EXPECT_TRUE(near(got, right, 5e-2) || near(got, left, 5e-2))
          << s.name << "[" << i << "]: gradient " << got << ", central difference " << fd << ", one-sided " << left
          << " and " << right;
    }
  }
  EXPECT_LE(one_sided * 5, checked) << one_sided << " of " << checked << " elements needed one-sided differences";
  EXPECT_GT(checked, 20);
  EXPECT_GT(router_checked, 0) << "no router weight had a gradient: the routing weights are not differentiated";
  // e_score_correction_bias is never trained.
  for (const auto& s : m.specs())
    if (s.name.ends_with("e_score_correction_bias"))
      for (int64_t i = 0; i < s.numel(); ++i) EXPECT_EQ(grads[size_t(s.offset + i)], 0.0f) << s.name;
}

// Decoding through the cache (the latent cache for MLA) gives the training forward's log-probs
// (moe_util.h's cached_forward_gap: one prefill, a chunk, then single steps).
void expect_cached_forward_matches_training(const model::Transformer& m, const std::string& what) {
  const test::CachedGap g = test::cached_forward_gap(m);
  ASSERT_GT(g.gap.size(), 20u);
  for (size_t i = 0; i < g.gap.size(); ++i) EXPECT_LT(g.gap[i], 2e-5) << what << ": " << g.where[i];
}

TEST_P(MoeArch, CachedForwardMatchesTrainingForward) {
  expect_cached_forward_matches_training(tiny_moe(GetParam()), GetParam());
}

// MLA's cache holds the compressed latent (kv_lora_rank + qk_rope_head_dim per token and layer, no
// value pool), and the absorbed decode applies kv_b_proj's LoRA adapter as the training forward
// does (merged into the absorbed weights).
TEST(MoeModel, LatentCacheHoldsTheLatentAndDecodesWithAdapters) {
  for (const bool plain : {false, true}) {  // plain: one q_proj and rotate_half's rope
    model::ModelConfig cfg = model::preset_config("tiny-deepseek-v3");
    if (plain) {
      cfg.mla.q_lora_rank = 0;
      cfg.mla.rope_interleave = false;
    }
    model::Transformer m(cfg);
    m.init_random(11, 0.2f);
    const std::string preset = plain ? "deepseek_v3 plain" : "deepseek_v3";
    const model::ModelConfig& c = m.config();
    ASSERT_TRUE(c.is_mla());
    const model::KVCache cache(m, 1, 16);
    EXPECT_TRUE(cache.heads.latent);
    EXPECT_EQ(cache.k_t[0].shape[2], 1);
    EXPECT_EQ(cache.k_t[0].shape[3], c.mla.kv_lora_rank + c.mla.qk_rope_head_dim);
    EXPECT_TRUE(cache.v_t[0].empty());
    test::add_random_lora(m);
    expect_cached_forward_matches_training(m, preset + " with adapters");
  }
}

// With KVCache::keep_routes the cached forward writes each token's experts beside its row, in every
// MoE layer (the GPU engine's routing-replay record: no host read in a decode step), a block copy
// takes them along, and read_routes gives back what the forward chose.
TEST_P(MoeArch, CacheRecordsTheRoutesBesideItsRows) {
  const model::Transformer m = tiny_moe(GetParam());
  const int V = m.config().vocab_size, n = 11;
  const std::vector<int32_t> seq = random_ids(6, n, V);
  model::KVCache cache(m, 2, 32);
  EXPECT_TRUE(cache.route_t.empty());
  cache.keep_routes(m.config());
  ASSERT_EQ(cache.route_t.size(), model::unrecorded_routes(m.config()).layers.size());
  Arena arena;
  model::ExpertRoutes want;
  for (int i = 0; i < n; ++i) {  // a prefill of 4 tokens, then one token at a time, in slot 1
    if (i > 0 && i < 4) continue;
    const int count = i == 0 ? 4 : 1;
    std::vector<int32_t> ids(seq.begin() + i, seq.begin() + i + count), slots(size_t(count), 1), pos, rows{0};
    for (int k = 0; k < count; ++k) pos.push_back(i + k);
    arena.reset();
    model::ExpertRoutes r;
    model::forward_cached(m, cache, ids, slots, pos, rows, arena, std::nullopt, &r);
    model::append_routes(want, r);
  }
  const int64_t BS = cache.layout.block_size, MB = cache.layout.max_blocks;
  std::vector<int32_t> rows;
  for (int64_t r = 0; r < n; ++r) rows.push_back(int32_t((MB + r / BS) * BS + r % BS));  // slot 1's blocks
  const model::ExpertRoutes got = model::read_routes(cache, rows, arena);
  ASSERT_EQ(got.layers, want.layers);
  ASSERT_EQ(got.tokens(), n);
  EXPECT_EQ(got.experts, want.experts);
  // Block MB (slot 1's first) copied over block 0: its rows' experts come along.
  cache.copy_block(int32_t(MB), 0);
  std::vector<int32_t> first(rows.begin(), rows.begin() + std::min<int64_t>(BS, n));
  for (int32_t& r : first) r -= int32_t(MB * BS);
  const model::ExpertRoutes copied = model::read_routes(cache, first, arena);
  for (size_t l = 0; l < want.layers.size(); ++l)
    EXPECT_TRUE(std::equal(copied.experts[l].begin(), copied.experts[l].end(), want.experts[l].begin()));
}

TEST_P(MoeArch, SaveLoadRoundTripInHfLayout) {
  model::Transformer m = tiny_moe(GetParam());
  test::TempDir dir;
  model::save_model(m, dir.path());
  model::Transformer back = model::load_model(dir.path());
  ASSERT_EQ(back.params().flat.numel(), m.params().flat.numel());
  EXPECT_EQ(0, std::memcmp(back.params().flat.data, m.params().flat.data, m.params().flat.nbytes()));
  EXPECT_EQ(model::config_to_json(back.config()), model::config_to_json(m.config()));
  model::SafetensorsReader st(dir.path());
  EXPECT_TRUE(st.contains("model.layers.2.mlp.experts.7.down_proj.weight"));
  EXPECT_TRUE(st.contains("model.layers.2.mlp.gate.weight"));
}

// Recomputing the cheap activations (experts' SwiGLU products, norms) in the backward gives the
// same gradients, bit for bit.
TEST_P(MoeArch, RecomputeMatchesSaving) {
  model::Transformer m = tiny_moe(GetParam());
  model::Batch batch = model::pack_sequences({random_ids(21, 9, m.config().vocab_size)});
  std::vector<float> w(batch.targets.size(), 0.5f);
  std::vector<std::vector<float>> g;
  for (model::Recompute r : {model::Recompute::Off, model::Recompute::On}) {
    model::TrainState st;
    st.recompute = r;
    st.forward(m, batch);
    m.zero_grads();
    st.backward(m, w);
    g.emplace_back(m.grads().flat.f32(), m.grads().flat.f32() + m.grads().flat.numel());
  }
  EXPECT_TRUE(g[0] == g[1]);
}

INSTANTIATE_TEST_SUITE_P(Model, MoeArch, ::testing::Values("tiny-qwen3-moe", "tiny-deepseek-v3"));

// Every block takes the residual stream: MLA sums it in o_proj's product as the dense attention
// does, a mixture of experts in its shared experts' down_proj product. So the only adds left are a
// MoE layer's one (its routed experts' sum plus the shared experts', or plus the residual when it has
// no shared experts), in training and decoding alike.
TEST(MoeModel, EachBlockTakesTheResidual) {
  for (const char* preset : {"tiny-deepseek-v3", "tiny-qwen3-moe"}) {
    model::Transformer m = tiny_moe(preset);
    const model::ModelConfig& c = m.config();
    int moe_layers = 0;
    for (int l = 0; l < c.num_hidden_layers; ++l) moe_layers += c.is_moe_layer(l);
    ASSERT_GT(moe_layers, 0) << preset;
    const model::Batch batch = model::pack_sequences({random_ids(1, 9, c.vocab_size)});
    model::TrainState state;
    ops::reset_path_counts();
    state.forward(m, batch);
    EXPECT_EQ(ops::path_count(ops::Op::add, ops::Path::native), moe_layers) << preset << ": training forward";
    model::KVCache cache(m, 1, 8);
    Arena arena;
    model::forward_cached(m, cache, {1, 2, 3}, {0, 0, 0}, {0, 1, 2}, {2}, arena);
    ops::reset_path_counts();
    arena.reset();
    model::forward_cached(m, cache, {4}, {0}, {3}, {0}, arena);
    EXPECT_EQ(ops::path_count(ops::Op::add, ops::Path::native), moe_layers) << preset << ": a decode step";
  }
}

TEST(MoeModel, PlanAndNamesFollowTheConfig) {
  const model::ModelConfig q = model::preset_config("tiny-qwen3-moe");
  const model::ModelPlan qp = model::make_plan(q);
  EXPECT_EQ(qp.layers[0].mlp, model::MlpKind::MixtureOfExperts);
  EXPECT_EQ(qp.layers[1].mlp, model::MlpKind::SwiGLU);  // mlp_only_layers
  EXPECT_EQ(qp.layers[0].attention, model::AttentionKind::GroupedQuery);
  const model::ModelConfig d = model::preset_config("tiny-deepseek-v3");
  const model::ModelPlan dp = model::make_plan(d);
  EXPECT_EQ(dp.layers[0].mlp, model::MlpKind::SwiGLU);  // first_k_dense_replace
  EXPECT_EQ(dp.layers[1].mlp, model::MlpKind::MixtureOfExperts);
  EXPECT_EQ(dp.layers[0].attention, model::AttentionKind::Latent);
  std::set<std::string> names;
  for (const auto& s : dp.specs) names.insert(s.name);
  for (const char* n : {"model.layers.0.self_attn.q_a_proj.weight", "model.layers.0.self_attn.q_a_layernorm.weight",
                        "model.layers.0.self_attn.q_b_proj.weight", "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
                        "model.layers.0.self_attn.kv_a_layernorm.weight", "model.layers.0.self_attn.kv_b_proj.weight",
                        "model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.gate.e_score_correction_bias",
                        "model.layers.1.mlp.shared_experts.down_proj.weight",
                        "model.layers.2.mlp.experts.3.up_proj.weight"})
    EXPECT_TRUE(names.count(n)) << n;
  // Without q_lora_rank: one q_proj.
  model::ModelConfig plain = d;
  model::apply_config_settings(plain, {"q_lora_rank=0"}, "test");
  bool has_q = false;
  for (const auto& s : model::param_specs(plain)) has_q |= s.name == "model.layers.0.self_attn.q_proj.weight";
  EXPECT_TRUE(has_q);
  EXPECT_TRUE(model::config_to_json(plain)["q_lora_rank"].is_null());
}

// Multi-token-prediction layers in a checkpoint (model.layers.L and up) are loaded and ignored;
// without num_nextn_predict_layers the same tensor is an error.
TEST(MoeModel, MtpLayersAreIgnoredAtLoad) {
  model::Transformer m = tiny_moe("tiny-deepseek-v3");
  test::TempDir dir;
  model::ModelConfig cfg = m.config();
  cfg.mla.num_nextn_predict_layers = 1;
  std::vector<model::NamedTensor> tensors;
  for (const auto& s : m.specs()) tensors.push_back({s.name, s.shape, m.params().flat.f32() + s.offset});
  const std::vector<float> extra(64, 1.0f);
  tensors.push_back({"model.layers.3.eh_proj.weight", {1, 64}, extra.data()});  // layer 3 of 3: MTP
  model::save_safetensors(dir.path() + "/model.safetensors", tensors, DType::F32);
  model::save_config(cfg, dir.path() + "/config.json");
  model::Transformer back = model::load_model(dir.path());
  EXPECT_EQ(0, std::memcmp(back.params().flat.data, m.params().flat.data, m.params().flat.nbytes()));
  model::save_config(m.config(), dir.path() + "/config.json");  // no MTP layers declared
  EXPECT_THROW(model::load_model(dir.path()), r1::Error);
}

TEST(MoeModel, ExpertCountsAreTheRoutedTokens) {
  model::Transformer m = tiny_moe("tiny-qwen3-moe");
  model::Batch batch = model::pack_sequences({random_ids(9, 13, m.config().vocab_size)});
  model::TrainState st;
  st.forward(m, batch);
  const auto& counts = st.expert_counts();
  ASSERT_EQ(counts.size(), 3u);
  EXPECT_TRUE(counts[1].empty());  // the dense layer
  int64_t total = 0;
  for (int64_t n : counts[0]) total += n;
  EXPECT_EQ(total, 13 * 2);  // every token to K = 2 experts
}

// The real shapes' parameter counts (e_score_correction_bias not counted, as transformers counts
// buffers): Qwen3-30B-A3B 30.53B, Moonlight-16B-A3B 15.96B, summed by hand from their config.json.
TEST(MoeModel, RealPresetsHaveThePublishedSizes) {
  EXPECT_EQ(model::preset_config("qwen3-30b-a3b").num_parameters(), 30532122624LL);
  EXPECT_EQ(model::preset_config("moonlight-16b-a3b").num_parameters(), 15960108544LL);
  const model::ModelConfig m = model::preset_config("moonlight-16b-a3b");
  EXPECT_EQ(m.mla.q_lora_rank, 0);
  EXPECT_EQ(m.head_dim, 64);  // the rotary part's width
  EXPECT_FLOAT_EQ(m.attention_scale(), float(1.0 / std::sqrt(192.0)));
}

// yarn as transformers applies it to DeepSeek-V3: cos and sin scaled by
// mscale(factor, mscale) / mscale(factor, mscale_all_dim), the softmax scale by mscale(factor,
// mscale_all_dim)^2; the highest frequency kept and the lowest divided by factor.
TEST(MoeModel, YarnScalesAsTransformers) {
  const model::ModelConfig c = model::preset_config("tiny-deepseek-v3");  // factor 4, mscale 1, all_dim 0.8
  auto ms = [](double f, double m) { return 0.1 * m * std::log(f) + 1.0; };
  EXPECT_NEAR(c.rope_attention_factor(), ms(4, 1.0) / ms(4, 0.8), 1e-6);
  EXPECT_NEAR(c.attention_scale(), ms(4, 0.8) * ms(4, 0.8) / std::sqrt(24.0), 1e-6);
  const std::vector<float> inv = c.rope_inv_freq(), plain = [&] {
    model::ModelConfig d = c;
    d.rope_scaling = {};
    return d.rope_inv_freq();
  }();
  ASSERT_EQ(inv.size(), 4u);
  EXPECT_EQ(inv[0], plain[0]);                    // below the ramp: extrapolated (kept)
  EXPECT_NEAR(inv[3], plain[3] / 4.0f, 1e-9);      // above it: interpolated (divided by factor)
}

TEST(MoeModel, BadRoutingConfigsNameTheKeys) {
  model::ModelConfig c = model::preset_config("tiny-deepseek-v3");
  auto error_of = [&](const std::vector<std::string>& kv) {
    try {
      model::apply_config_settings(c, kv, "--set");
    } catch (const r1::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of({"topk_group=5"}).find("topk_group (5) exceeds n_group (4)"), std::string::npos);
  EXPECT_NE(error_of({"n_group=3"}).find("not a multiple of n_group (3)"), std::string::npos);
  EXPECT_NE(error_of({"num_experts_per_tok=9"}).find("num_experts_per_tok"), std::string::npos);
  EXPECT_NE(error_of({"qk_rope_head_dim=16", "head_dim=8"}).find("must be qk_rope_head_dim"), std::string::npos);
  model::ModelConfig q = model::preset_config("tiny-qwen3-moe");
  try {
    model::apply_config_settings(q, {"mlp_only_layers=7"}, "--set");
    ADD_FAILURE() << "a dense layer past the model was accepted";
  } catch (const r1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("mlp_only_layers names layer 7 of 3"), std::string::npos) << e.what();
  }
}

}  // namespace

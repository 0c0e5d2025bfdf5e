// Per-layer activation checkpointing (model/train_state.h) on the CPU: the checkpointed backward
// gives the saving backward's gradients bit for bit (every architecture, recomputed norms or not,
// LoRA adapters with dropout, the score head), its activation arena holds the layers' inputs and
// little else (the prediction of model/activation_memory.h, to the byte), Auto follows its rule,
// and passes that no backward follows save nothing.
#include <gtest/gtest.h>

#include <cstring>
#include <tuple>

#include "base/error.h"
#include "base/rng.h"
#include "lora_util.h"
#include "model/activation_memory.h"
#include "model/train_state.h"
#include "model/transformer.h"
#include "tensor/device_memory.h"

using namespace r1;

namespace {

model::ModelConfig config(const std::string& arch, int layers = 4) {
  model::ModelConfig c = model::preset_config("tiny", arch);
  model::override_config(c, "num_hidden_layers", std::to_string(layers));
  return c;
}

model::Transformer make_model(const model::ModelConfig& c, uint64_t seed) {
  model::Transformer m(c);
  m.init_random(seed, 0.2f);
  return m;
}

model::Batch random_batch(uint64_t seed, int vocab, std::vector<int> lens = {17, 5, 30}) {
  Rng rng(seed);
  std::vector<std::vector<int32_t>> seqs;
  for (int len : lens) {
    seqs.emplace_back();
    for (int i = 0; i < len; ++i) seqs.back().push_back(int32_t(rng.next_u32() % uint32_t(vocab)));
  }
  return model::pack_sequences(seqs);
}

std::vector<float> dlogp_for(const model::Batch& b) {
  std::vector<float> d(b.targets.size());
  for (size_t t = 0; t < d.size(); ++t) d[t] = b.targets[t] >= 0 ? -0.1f - 0.01f * float(t % 7) : 0.0f;
  return d;
}

// Forward and backward of `batch` through `st` with its switch set; returns the log-probs.
std::vector<float> train_pass(model::Transformer& m, model::TrainState& st, const model::Batch& batch) {
  m.zero_grads();
  st.forward(m, batch, 0.9f);
  st.backward(m, dlogp_for(batch));
  return st.logp_host();
}

struct Case {
  std::string arch;
  model::Recompute recompute;
};

class CheckpointingArch : public ::testing::TestWithParam<Case> {};

TEST_P(CheckpointingArch, BackwardEqualsTheSavingBackwardToTheBit) {
  const model::ModelConfig c = config(GetParam().arch);
  model::Transformer m = make_model(c, 11);
  const model::Batch batch = random_batch(4, c.vocab_size);
  model::TrainState save, ckpt;
  save.recompute = ckpt.recompute = GetParam().recompute;
  save.checkpointing = model::Checkpointing::Off;
  ckpt.checkpointing = model::Checkpointing::On;
  const std::vector<float> lp_save = train_pass(m, save, batch);
  const std::vector<float> g_save = to_host_f32(m.grads().flat);
  const std::vector<float> lp_ckpt = train_pass(m, ckpt, batch);
  EXPECT_FALSE(save.checkpointed());
  EXPECT_TRUE(ckpt.checkpointed());
  EXPECT_EQ(lp_save, lp_ckpt);
  EXPECT_EQ(save.entropy_host(), ckpt.entropy_host());
  const std::vector<float> g_ckpt = to_host_f32(m.grads().flat);
  ASSERT_EQ(g_save.size(), g_ckpt.size());
  EXPECT_EQ(0, std::memcmp(g_save.data(), g_ckpt.data(), g_save.size() * sizeof(float)))
      << "checkpointed gradients differ from the saving ones";
  double norm = 0;
  for (float g : g_save) norm += double(g) * g;
  EXPECT_GT(norm, 0.0);
  EXPECT_LT(ckpt.activation_bytes() + ckpt.recomputed_layer_bytes(), save.activation_bytes());
}

INSTANTIATE_TEST_SUITE_P(
    Model, CheckpointingArch,
    ::testing::Values(Case{"qwen2", model::Recompute::Off}, Case{"llama", model::Recompute::Off},
                      Case{"qwen3", model::Recompute::Off}, Case{"qwen2", model::Recompute::On},
                      Case{"qwen3", model::Recompute::On}),
    [](const auto& info) {
      return info.param.arch + (info.param.recompute == model::Recompute::On ? "_recompute" : "");
    });

// The recomputed layers draw the forward's dropout masks again: the adapters' gradients (A and B
// of every linear) are the saving backward's, bit for bit.
TEST(Checkpointing, LoraWithDropoutEqualsTheSavingBackwardToTheBit) {
  const model::ModelConfig c = config("qwen3");
  model::Transformer m = make_model(c, 5);
  test::add_random_lora(m, 0.3);
  const model::Batch batch = random_batch(8, c.vocab_size);
  auto grads = [&](model::Checkpointing mode, bool dropout) {
    model::TrainState st;
    st.checkpointing = mode;
    st.dropout = dropout;
    st.dropout_seed = 99;
    st.dropout_step = 7;
    train_pass(m, st, batch);
    EXPECT_EQ(st.checkpointed(), mode == model::Checkpointing::On);
    return to_host_f32(m.grads().flat);
  };
  const std::vector<float> save = grads(model::Checkpointing::Off, true);
  const std::vector<float> ckpt = grads(model::Checkpointing::On, true);
  ASSERT_EQ(save.size(), size_t(m.grads().flat.numel()));
  EXPECT_EQ(0, std::memcmp(save.data(), ckpt.data(), save.size() * sizeof(float)))
      << "checkpointed LoRA gradients differ from the saving ones";
  // Dropout is really on (its masks change the gradients), and every adapter gets a gradient.
  EXPECT_NE(save, grads(model::Checkpointing::Off, false));
  for (const model::ParamSpec& s : m.adapter_specs()) {
    double n = 0;
    for (int64_t i = s.offset; i < s.offset + s.numel(); ++i) n += double(save[size_t(i)]) * save[size_t(i)];
    EXPECT_GT(n, 0.0) << s.name;
  }
}

// Mixture-of-experts and latent-attention layers (qwen3_moe, deepseek_v3: MLA, shared experts,
// dense first layers) recompute the same routing and activations: bitwise the saving gradients,
// with and without LoRA on every linear (experts included) with dropout, and the load statistics
// are the forward's (the recomputation does not count its tokens again).
class CheckpointingMoe : public ::testing::TestWithParam<std::string> {};

TEST_P(CheckpointingMoe, BackwardEqualsTheSavingBackwardToTheBit) {
  for (const bool lora : {false, true}) {
    model::Transformer m(model::preset_config(GetParam()));
    m.init_random(11, 0.2f);
    if (lora) test::add_random_lora(m, 0.2);
    const model::Batch batch = random_batch(21, m.config().vocab_size, {9, 14});
    auto run = [&](model::Checkpointing mode) {
      model::TrainState st;
      st.checkpointing = mode;
      st.dropout_seed = 4;
      const std::vector<float> lp = train_pass(m, st, batch);
      return std::make_tuple(lp, to_host_f32(m.grads().flat), st.expert_counts());
    };
    const auto save = run(model::Checkpointing::Off), ckpt = run(model::Checkpointing::On);
    EXPECT_EQ(std::get<0>(save), std::get<0>(ckpt)) << "lora " << lora;
    EXPECT_TRUE(std::get<1>(save) == std::get<1>(ckpt)) << "checkpointed gradients differ, lora " << lora;
    EXPECT_EQ(std::get<2>(save), std::get<2>(ckpt)) << "lora " << lora;
    int64_t routed = 0;
    for (const auto& layer : std::get<2>(ckpt))
      for (int64_t n : layer) routed += n;
    EXPECT_GT(routed, 0);
  }
}

// The memory model for these blocks: exact for the checkpointed arena, and an upper bound within
// the rounding of the experts' tensors (their rows follow the routing) for what a layer saves.
TEST_P(CheckpointingMoe, ActivationMemoryMatchesTheModel) {
  for (const bool lora : {false, true}) {
    model::Transformer m(model::preset_config(GetParam()));
    m.init_random(2, 0.2f);
    if (lora) test::add_random_lora(m, 0.1);
    const model::ModelConfig& c = m.config();
    const model::Batch batch = random_batch(5, c.vocab_size, {40, 23});
    model::TrainState save, ckpt;
    save.checkpointing = model::Checkpointing::Off;
    ckpt.checkpointing = model::Checkpointing::On;
    train_pass(m, save, batch);
    train_pass(m, ckpt, batch);
    const model::ActivationEstimate e =
        model::estimate_activations(m, batch.tokens(), batch.sequences(), false, true);
    EXPECT_EQ(ckpt.activation_bytes(), e.checkpointed) << "lora " << lora;
    // Per MoE layer at most 64 bytes for each of an expert's tensors (gate, up, act, adapters' h).
    const size_t slack = size_t(c.num_hidden_layers) * size_t(c.moe.num_experts) * 64 * (3 + 3);
    EXPECT_LE(save.activation_bytes(), e.saving) << "lora " << lora;
    EXPECT_GE(save.activation_bytes() + slack, e.saving) << "lora " << lora;
    EXPECT_LE(ckpt.recomputed_layer_bytes(), e.layer) << "lora " << lora;
    EXPECT_GT(save.activation_bytes(), 2 * ckpt.activation_bytes());
  }
}

INSTANTIATE_TEST_SUITE_P(Model, CheckpointingMoe, ::testing::Values("tiny-qwen3-moe", "tiny-deepseek-v3"));

// The reward model's score head goes back through the same checkpointed trunk.
TEST(Checkpointing, ScoreHeadEqualsTheSavingBackwardToTheBit) {
  const model::ModelConfig lm_cfg = config("qwen2");
  const model::Transformer lm = make_model(lm_cfg, 2);
  model::ModelConfig rc = lm_cfg;
  rc.num_labels = 1;
  model::Transformer rm = model::classifier_from(lm, rc, 4, Device::CPU, 0.2f);
  const model::Batch batch = random_batch(6, lm_cfg.vocab_size);
  auto grads = [&](model::Checkpointing mode) {
    model::TrainState st;
    st.checkpointing = mode;
    rm.zero_grads();
    const std::vector<float> score = st.score_forward(rm, batch);
    std::vector<float> d(score.size());
    for (size_t i = 0; i < d.size(); ++i) d[i] = 0.05f * float(int(i % 5) - 2);
    st.score_backward(rm, d);
    return std::make_pair(score, to_host_f32(rm.grads().flat));
  };
  const auto save = grads(model::Checkpointing::Off), ckpt = grads(model::Checkpointing::On);
  EXPECT_EQ(save.first, ckpt.first);
  EXPECT_EQ(0, std::memcmp(save.second.data(), ckpt.second.data(), save.second.size() * sizeof(float)));
}

// ---- memory ----

// Checkpointing, the activation arena holds the L + 1 residual-stream tensors, the final norm, the
// two (T, C) gradients that run down the layers and a few (T) rows: nothing per layer beyond its
// input. The arenas' peaks equal the memory model's prediction to the byte.
TEST(Checkpointing, ActivationMemoryIsTheLayerInputs) {
  for (const bool lora : {false, true}) {
    const model::ModelConfig c = config("qwen3", 6);
    model::Transformer m = make_model(c, 1);
    if (lora) test::add_random_lora(m, 0.1);
    const model::Batch batch = random_batch(3, c.vocab_size, {60, 40, 28});
    const int64_t T = batch.tokens(), C = c.hidden_size, L = c.num_hidden_layers;
    model::TrainState save, ckpt;
    save.checkpointing = model::Checkpointing::Off;
    ckpt.checkpointing = model::Checkpointing::On;
    train_pass(m, save, batch);
    train_pass(m, ckpt, batch);
    const model::ActivationEstimate e =
        model::estimate_activations(m, T, batch.sequences(), /*recompute=*/false, /*adapters=*/true);
    EXPECT_EQ(save.activation_bytes(), e.saving) << "lora " << lora;
    EXPECT_EQ(ckpt.activation_bytes(), e.checkpointed) << "lora " << lora;
    EXPECT_EQ(ckpt.recomputed_layer_bytes(), e.layer) << "lora " << lora;
    EXPECT_EQ(save.recomputed_layer_bytes(), 0u);
    // (L + 1) inputs/outputs + lnf + dlnf + dres of (T, C) f32, and 8 rows of T (ids, positions,
    // targets, rstd, logp, lse, entropy, dlogp) plus cu_seqlens, each rounded up to 64 bytes.
    const size_t inputs = size_t((L + 4) * T * C) * 4, rows = 8 * ((size_t(T) * 4 + 63) / 64 * 64) + 64;
    EXPECT_EQ(ckpt.activation_bytes(), inputs + rows);
    // Saving keeps several times that; checkpointing adds one layer's worth for its recomputation.
    EXPECT_GT(save.activation_bytes(), 3 * ckpt.activation_bytes());
    EXPECT_EQ(e.saving - e.checkpointed, size_t(L) * e.layer);  // every layer of this model alike
  }
}

// Auto checkpoints exactly when saving every layer plus one more would exceed the budget.
TEST(Checkpointing, AutoFollowsTheMemoryBudget) {
  const model::ModelConfig c = config("llama");
  model::Transformer m = make_model(c, 3);
  const model::Batch batch = random_batch(2, c.vocab_size);
  const model::ActivationEstimate e =
      model::estimate_activations(m, batch.tokens(), batch.sequences(), false, true);
  const size_t need = e.saving + e.layer;
  EXPECT_TRUE(model::checkpointing_needed(e, need - 1));
  EXPECT_FALSE(model::checkpointing_needed(e, need));
  model::TrainState st;  // Auto by default
  ASSERT_EQ(st.checkpointing, model::Checkpointing::Auto);
  st.memory_budget = need;
  train_pass(m, st, batch);
  EXPECT_FALSE(st.checkpointed());
  const std::vector<float> g_save = to_host_f32(m.grads().flat);
  st.memory_budget = need - 1;
  train_pass(m, st, batch);
  EXPECT_TRUE(st.checkpointed());
  EXPECT_EQ(g_save, to_host_f32(m.grads().flat));
  // Not even checkpointing fits: an error before any compute, with the sizes.
  st.memory_budget = e.checkpointed;
  try {
    st.forward(m, batch);
    ADD_FAILURE() << "a forward that cannot fit ran";
  } catch (const Error& err) {
    const std::string msg = err.what();
    EXPECT_NE(msg.find("even with per-layer checkpointing"), std::string::npos) << msg;
    EXPECT_NE(msg.find("micro_batch_tokens"), std::string::npos) << msg;
  }
  // A tiny model on this host's free memory: no checkpointing.
  st.memory_budget = 0;
  train_pass(m, st, batch);
  EXPECT_FALSE(st.checkpointed());
  EXPECT_GT(model::free_memory(Device::CPU), need);
}

// A forward that no backward follows (reference log-probs, evaluation) saves nothing, even of a
// trainable model, and its log-probs are the training forward's.
TEST(Checkpointing, PassesWithoutBackwardSaveNothing) {
  const model::ModelConfig c = config("qwen2");
  model::Transformer m = make_model(c, 8);
  test::add_random_lora(m, 0.2);
  const model::Batch batch = random_batch(1, c.vocab_size);
  model::TrainState train, infer;
  train.dropout = false;  // the inference pass never drops out; compare like with like
  train.forward(m, batch);
  infer.forward(m, batch, 1.0f, model::Backward::None);
  EXPECT_EQ(train.logp_host(), infer.logp_host());
  const int64_t T = batch.tokens(), C = c.hidden_size;
  // One (T, C) residual stream and lnf, the batch's rows, the head's outputs.
  EXPECT_LE(infer.activation_bytes(), size_t(2 * T * C * 4 + 12 * 256));
  EXPECT_GT(train.activation_bytes(), 4 * infer.activation_bytes());
  EXPECT_FALSE(infer.checkpointed());
  try {
    infer.backward(m, dlogp_for(batch));
    ADD_FAILURE() << "backward after a Backward::None forward";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("saved nothing"), std::string::npos) << e.what();
  }
}

// The bytes per token docs/MEMORY.md gives for real shapes on CUDA (bf16, norms and SwiGLU
// recomputed), from the memory model that the tests above hold to the arenas: KiB per token of
// the activation arena saving, checkpointing, and of one recomputed layer.
TEST(ActivationMemory, DocumentedBytesPerToken) {
  struct Row {
    const char* preset;
    double saving, checkpointed, layer;
  };
  for (const Row& r : {Row{"qwen2.5-1.5b", 1357.6, 96.0, 45.1}, Row{"qwen2.5-7b", 2943.3, 224.0, 97.1},
                       Row{"qwen2.5-14b", 4751.9, 520.0, 88.2}, Row{"qwen2.5-32b", 9778.5, 680.0, 142.2}}) {
    const model::ModelConfig c = model::preset_config(r.preset, "qwen2");
    const int64_t T = 8192;
    const model::ActivationEstimate e = model::estimate_activations(c, model::ActivationSetup{}, T, 1);
    EXPECT_NEAR(double(e.saving) / 1024.0 / double(T), r.saving, 0.05) << r.preset;
    EXPECT_NEAR(double(e.checkpointed) / 1024.0 / double(T), r.checkpointed, 0.05) << r.preset;
    EXPECT_NEAR(double(e.layer) / 1024.0 / double(T), r.layer, 0.05) << r.preset;
  }
}

TEST(Checkpointing, ParseNamesTheKey) {
  EXPECT_EQ(model::parse_checkpointing("auto", "k"), model::Checkpointing::Auto);
  EXPECT_EQ(model::parse_checkpointing("on", "k"), model::Checkpointing::On);
  EXPECT_EQ(model::parse_checkpointing("off", "k"), model::Checkpointing::Off);
  try {
    model::parse_checkpointing("yes", "recipe key 'train.activation_checkpointing'");
    ADD_FAILURE() << "'yes' was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.activation_checkpointing"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("'yes'"), std::string::npos);
  }
}

}  // namespace

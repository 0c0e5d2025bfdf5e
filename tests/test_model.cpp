// The transformer on CPU: cached decoding equals the training forward, checkpoints round-trip,
// a tiny model overfits a batch, and bad inputs fail cleanly.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/rng.h"
#include "kernels/ops.h"
#include "kernels/supports.h"
#include "tensor/device_memory.h"
#include "model/checkpoint.h"
#include "test_util.h"
#include "optim/optimizer.h"
#include "model/train_state.h"
#include "model/kv_cache.h"

using namespace r1;

namespace {

model::Transformer tiny(const std::string& arch, uint64_t seed = 7) {
  model::ModelConfig c = model::preset_config("tiny", arch);
  model::Transformer m(c);
  m.init_random(seed, 0.2f);
  return m;
}

std::vector<int32_t> random_ids(uint64_t seed, int n, int vocab) {
  Rng rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& x : ids) x = int32_t(rng.next_u32() % uint32_t(vocab));
  return ids;
}

std::vector<double> log_softmax_at(const float* z, int64_t V, int32_t target) {
  double mx = z[0];
  for (int64_t i = 1; i < V; ++i) mx = std::max(mx, double(z[i]));
  double s = 0;
  for (int64_t i = 0; i < V; ++i) s += std::exp(double(z[i]) - mx);
  return {double(z[target]) - mx - std::log(s)};
}

class Arch : public ::testing::TestWithParam<std::string> {};

// Logits from one prefill over the KV cache, and from a prefill of half followed by single-token
// decode steps, both give the training forward's log-probs.
TEST_P(Arch, CachedForwardMatchesTrainingForward) {
  model::Transformer m = tiny(GetParam());
  const int V = m.config().vocab_size, n = 23;
  std::vector<std::vector<int32_t>> seqs = {random_ids(1, n, V), random_ids(2, 9, V)};
  model::Batch batch = model::pack_sequences(seqs);
  model::TrainState state;
  Tensor logp = state.forward(m, batch);

  model::KVCache cache(m, 2, 32);
  Arena arena;
  // Slot 1 holds the second sequence, prefilled whole; slot 0 the first, half then decoded.
  std::vector<int32_t> ids, slots, pos, rows;
  for (int i = 0; i < 9; ++i) {
    ids.push_back(seqs[1][size_t(i)]);
    slots.push_back(1);
    pos.push_back(i);
    rows.push_back(i);
  }
  const int half = n / 2;
  for (int i = 0; i < half; ++i) {
    ids.push_back(seqs[0][size_t(i)]);
    slots.push_back(0);
    pos.push_back(i);
  }
  rows.push_back(int32_t(ids.size()) - 1);
  Tensor logits = model::forward_cached(m, cache, ids, slots, pos, rows, arena);
  for (int i = 0; i + 1 < 9; ++i)
    EXPECT_NEAR(log_softmax_at(logits.f32() + int64_t(i) * V, V, seqs[1][size_t(i) + 1])[0],
                logp.f32()[n + i], 2e-5);
  EXPECT_NEAR(log_softmax_at(logits.f32() + 9LL * V, V, seqs[0][size_t(half)])[0], logp.f32()[half - 1], 2e-5);
  for (int i = half; i + 1 < n; ++i) {
    arena.reset();
    Tensor z = model::forward_cached(m, cache, {seqs[0][size_t(i)]}, {0}, {i}, {0}, arena);
    EXPECT_NEAR(log_softmax_at(z.f32(), V, seqs[0][size_t(i) + 1])[0], logp.f32()[i], 2e-5) << "position " << i;
  }
}

TEST_P(Arch, SaveLoadRoundTrip) {
  model::Transformer m = tiny(GetParam());
  test::TempDir dir;
  model::save_model(m, dir.path());
  model::Transformer back = model::load_model(dir.path());
  ASSERT_EQ(back.params().flat.numel(), m.params().flat.numel());
  EXPECT_EQ(0, std::memcmp(back.params().flat.data, m.params().flat.data, m.params().flat.nbytes()));
  EXPECT_EQ(model::config_to_json(back.config()), model::config_to_json(m.config()));

  model::save_model(m, dir.path(), DType::BF16);
  model::Transformer b16 = model::load_model(dir.path());
  const float* a = m.params().flat.f32();
  const float* b = b16.params().flat.f32();
  for (int64_t i = 0; i < m.params().flat.numel(); ++i) ASSERT_NEAR(a[i], b[i], std::abs(a[i]) / 128 + 1e-30);
}

INSTANTIATE_TEST_SUITE_P(Model, Arch, ::testing::Values("qwen2", "llama", "qwen3"));

// The MLP's gate and up projections run as one GEMM of their adjacent weights, forward and backward,
// in every layer; an adapter on either that takes part falls back to two (here fresh adapters,
// B = 0, so the model computes the same function), and gives the same log-probs.
TEST(ModelMlp, GateAndUpRunAsOneGemmUnlessAnAdapterTakesPart) {
  model::Transformer m = tiny("qwen2", 5), adapted = tiny("qwen2", 5);
  model::LoraConfig lora;
  lora.rank = 4;
  lora.targets = {"gate_proj", "up_proj"};
  adapted.add_lora(lora, 9);
  const int64_t L = m.config().num_hidden_layers;
  const model::Batch batch = model::pack_sequences({random_ids(1, 13, m.config().vocab_size), random_ids(2, 6, m.config().vocab_size)});
  const std::vector<float> dlogp(batch.targets.size(), -0.5f);
  using ops::Op;
  using ops::Path;
  model::TrainState packed, plain;
  ops::reset_path_counts();
  const std::vector<float> lp = to_host_f32(packed.forward(m, batch));
  m.zero_grads();
  packed.backward(m, dlogp);
  EXPECT_EQ(ops::path_count(Op::swiglu_packed_forward, Path::native), L);
  EXPECT_EQ(ops::path_count(Op::swiglu_packed_backward, Path::native), L);
  EXPECT_EQ(ops::path_count(Op::swiglu_forward, Path::native), 0);
  ops::reset_path_counts();
  const std::vector<float> la = to_host_f32(plain.forward(adapted, batch));
  plain.backward(adapted, dlogp);
  EXPECT_EQ(ops::path_count(Op::swiglu_packed_forward, Path::native), 0);
  EXPECT_EQ(ops::path_count(Op::swiglu_forward, Path::native), L);
  EXPECT_EQ(ops::path_count(Op::swiglu_backward, Path::native), L);
  ASSERT_EQ(lp.size(), la.size());
  for (size_t t = 0; t < lp.size(); ++t) EXPECT_NEAR(lp[t], la[t], 1e-5f) << "token " << t;
}

// A dense decoder layer sums its residual stream in o_proj's and down_proj's GEMMs
// (ops::linear_forward's residual): no add op runs in the training forward or in a decode step,
// in every architecture (CachedForwardMatchesTrainingForward and the transformers parity tests hold
// the values). An adapter on those projections adds its product after the base one.
TEST(ModelResidual, DenseLayersSumTheResidualInTheirOutputProjections) {
  using ops::Op;
  using ops::Path;
  for (const char* arch : {"qwen2", "llama", "qwen3"}) {
    model::Transformer m = tiny(arch, 5);
    const int V = m.config().vocab_size;
    const model::Batch batch = model::pack_sequences({random_ids(1, 13, V), random_ids(2, 6, V)});
    model::TrainState state;
    ops::reset_path_counts();
    state.forward(m, batch);
    EXPECT_EQ(ops::path_count(Op::add, Path::native), 0) << arch << ": training forward";
    model::KVCache cache(m, 1, 8);
    Arena arena;
    ops::reset_path_counts();
    model::forward_cached(m, cache, {1, 2, 3}, {0, 0, 0}, {0, 1, 2}, {2}, arena);
    EXPECT_EQ(ops::path_count(Op::add, Path::native), 0) << arch << ": cached forward";
  }
  model::Transformer adapted = tiny("qwen2", 5);
  model::LoraConfig lora;
  lora.rank = 4;
  lora.targets = {"o_proj", "down_proj"};
  adapted.add_lora(lora, 9);
  const model::Batch batch = model::pack_sequences({random_ids(1, 13, adapted.config().vocab_size)});
  model::TrainState state;
  ops::reset_path_counts();
  state.forward(adapted, batch);
  EXPECT_EQ(ops::path_count(Op::add, Path::native), 2 * adapted.config().num_hidden_layers)
      << "one adapter add per adapted projection";
}

// A layer's q, k and v are one op over its input: ops::linear_forward_each in training and
// prefill, and with adapters on them (each adapter's product follows the base ones); at a decode
// step without adapters, one linear_forward of their adjacent weights and rope_qkv_attention_cached
// (RoPE, the cache write and the attention: rope_qkv_cache_write and attention_cached on the CPU).
// The values are held by CachedForwardMatchesTrainingForward, OneDecodeProductEqualsThree, the LoRA
// tests and the transformers parity tests.
// The norms: in a cached forward each dense block's output projection writes the next block's norm
// too (ops::linear_rmsnorm_forward: o_proj the post-attention norm, down_proj the next layer's input
// norm or the final norm; the CPU runs the two ops, bitwise), so only the first layer's input norm
// is left: a decode step's q/k/v product takes it in (ops::rmsnorm_linear_forward), a prefill's
// attention (the packed kernel's own products) runs it alone. An adapter on o_proj keeps that
// product apart: the gate/up product then takes the post-attention norm in. Training fuses none.
TEST(ModelQkv, ALayersQueriesKeysAndValuesAreOneOp) {
  using ops::Op;
  using ops::Path;
  for (const bool lora_on : {false, true}) {
    model::Transformer m = tiny("qwen2", 5);
    if (lora_on) {
      model::LoraConfig lora;
      lora.rank = 4;
      lora.targets = {"q_proj", "v_proj", "o_proj"};
      m.add_lora(lora, 9);
    }
    const int L = m.config().num_hidden_layers, V = m.config().vocab_size;
    model::TrainState state;
    ops::reset_path_counts();
    state.forward(m, model::pack_sequences({random_ids(1, 13, V), random_ids(2, 6, V)}));
    EXPECT_EQ(ops::path_count(Op::linear_forward_each, Path::native), L) << "training forward, lora " << lora_on;
    EXPECT_EQ(ops::path_count(Op::rmsnorm_linear_forward, Path::native), 0) << "training, lora " << lora_on;
    EXPECT_EQ(ops::path_count(Op::linear_rmsnorm_forward, Path::native), 0) << "training, lora " << lora_on;
    EXPECT_EQ(ops::path_count(Op::rmsnorm_forward, Path::native), 2 * L + 1) << "training, lora " << lora_on;
    model::KVCache cache(m, 1, 8);
    Arena arena;
    ops::reset_path_counts();
    model::forward_cached(m, cache, {1, 2, 3}, {0, 0, 0}, {0, 1, 2}, {2}, arena);
    EXPECT_EQ(ops::path_count(Op::linear_forward_each, Path::native), L) << "cached forward, lora " << lora_on;
    EXPECT_EQ(ops::path_count(Op::rope_qkv_attention_cached, Path::native), 0) << "three tokens of one slot";
    const std::string prefill = "prefill, lora " + std::to_string(lora_on);
    EXPECT_EQ(ops::path_count(Op::rmsnorm_linear_forward, Path::native), lora_on ? L : 0) << prefill;
    EXPECT_EQ(ops::path_count(Op::linear_rmsnorm_forward, Path::native), lora_on ? L : 2 * L) << prefill;
    EXPECT_EQ(ops::path_count(Op::rmsnorm_forward, Path::native), 1) << "prefill, lora " << lora_on;
    // A decode step: one product of the adjacent q/k/v weights and the packed RoPE + cache write;
    // an adapter on q or v that takes part keeps the three products.
    arena.reset();
    ops::reset_path_counts();
    model::forward_cached(m, cache, {4}, {0}, {3}, {0}, arena);
    EXPECT_EQ(ops::path_count(Op::linear_forward_each, Path::native), lora_on ? L : 0) << "decode, lora " << lora_on;
    EXPECT_EQ(ops::path_count(Op::rope_qkv_cache_write, Path::native), lora_on ? 0 : L) << "decode, lora " << lora_on;
    EXPECT_EQ(ops::path_count(Op::rope_kv_cache_write, Path::native), lora_on ? L : 0) << "decode, lora " << lora_on;
    // ... whose RoPE, cache write and attention are one op (a token per slot)
    EXPECT_EQ(ops::path_count(Op::rope_qkv_attention_cached, Path::native), lora_on ? 0 : L) << "decode, lora " << lora_on;
    const std::string decode = "decode, lora " + std::to_string(lora_on);
    EXPECT_EQ(ops::path_count(Op::rmsnorm_linear_forward, Path::native), lora_on ? L : 1) << decode;
    EXPECT_EQ(ops::path_count(Op::linear_rmsnorm_forward, Path::native), lora_on ? L : 2 * L) << decode;
    EXPECT_EQ(ops::path_count(Op::rmsnorm_forward, Path::native), lora_on ? 1 : 0) << "decode, lora " << lora_on;
  }
}

// A decode step's one q/k/v product (and, with qk_norm, the normed RoPE and cache write in one op)
// gives the three products' logits (the same sums; the CPU's GEMM may order a row's sum by its width,
// hence the tolerance): the same model with a zero adapter on q_proj, which keeps them apart, decodes
// the same tokens alike. Qwen2 (biases), Qwen3 (qk_norm) and Llama.
TEST(ModelQkv, OneDecodeProductEqualsThree) {
  for (const std::string arch : {"qwen2", "qwen3", "llama"}) {
    model::Transformer packed = tiny(arch, 5), apart = tiny(arch, 5);
    model::LoraConfig lora;
    lora.rank = 4;
    lora.targets = {"q_proj"};
    apart.add_lora(lora, 9);  // B = 0: the adapter adds exactly nothing
    const int V = packed.config().vocab_size;
    const std::vector<int32_t> ids = random_ids(3, 12, V);
    std::vector<std::vector<float>> logits(2);
    for (int which = 0; which < 2; ++which) {
      model::Transformer& m = which == 0 ? packed : apart;
      model::KVCache cache(m, 1, 16);
      Arena arena;
      model::forward_cached(m, cache, {ids.begin(), ids.begin() + 4}, {0, 0, 0, 0}, {0, 1, 2, 3}, {3}, arena);
      ops::reset_path_counts();
      for (int i = 4; i < 12; ++i) {
        arena.reset();
        const Tensor z = model::forward_cached(m, cache, {ids[size_t(i)]}, {0}, {i}, {0}, arena);
        logits[size_t(which)].insert(logits[size_t(which)].end(), z.f32(), z.f32() + V);
      }
      EXPECT_EQ(ops::path_count(ops::Op::rope_qkv_cache_write, ops::Path::native) > 0, which == 0) << arch;
      // The heads' norms inside the op, the layers' inside their products (above): packed, none
      // runs alone; apart, the first layer's input norm and each layer's two head norms.
      if (arch == "qwen3")
        EXPECT_EQ(ops::path_count(ops::Op::rmsnorm_forward, ops::Path::native),
                  which == 0 ? 0 : (2 * m.config().num_hidden_layers + 1) * 8)
            << "rmsnorms over 8 decode steps, " << (which == 0 ? "packed" : "apart");
    }
    double worst = 0, scale = 0;
    for (size_t i = 0; i < logits[0].size(); ++i) {
      worst = std::max(worst, std::abs(double(logits[0][i]) - double(logits[1][i])));
      scale = std::max(scale, std::abs(double(logits[1][i])));
    }
    EXPECT_LE(worst, 1e-5 * scale) << arch << ": largest logit " << scale;
  }
}

// A tiny model memorises a small batch: the loss falls by more than 90%.
TEST(ModelTraining, TinyModelOverfitsABatch) {
  model::Transformer m = tiny("qwen2", 3);
  m.init_random(3);  // the usual 0.02 init
  std::vector<std::vector<int32_t>> seqs;
  for (int i = 0; i < 4; ++i) seqs.push_back(random_ids(100 + uint64_t(i), 24, m.config().vocab_size));
  model::Batch batch = model::pack_sequences(seqs);
  std::vector<optim::ParamSlice> slices;
  for (const auto& s : m.specs()) slices.push_back({s.name, s.offset, s.numel(), s.shape.size() > 1});
  optim::AdamW opt(slices, {});
  model::TrainState state;
  float first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    Tensor logp = state.forward(m, batch);
    int64_t count = 0;
    double loss = 0;
    for (size_t t = 0; t < batch.targets.size(); ++t)
      if (batch.targets[t] >= 0) {
        loss -= logp.f32()[t];
        ++count;
      }
    std::vector<float> dlogp(batch.targets.size());
    for (size_t t = 0; t < dlogp.size(); ++t) dlogp[t] = batch.targets[t] >= 0 ? -1.0f / float(count) : 0.0f;
    last = float(loss / double(count));
    if (step == 0) first = last;
    m.zero_grads();
    state.backward(m, dlogp);
    opt.step(m.params().flat, m.grads().flat, 1e-2f);
  }
  EXPECT_LT(last, 0.1f * first) << "loss " << first << " -> " << last;
}

// ---- bad input: a clear error, a non-zero exit, nothing written --------------------------------

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = test::run_r1("init --preset tiny --out " + dir.file("m"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  test::TempDir dir;
};

TEST_F(BadInput, EmptyLineIsAnError) {
  auto r = test::run_r1("logprobs --model " + dir.file("m"), "{\"ids\": [1, 2, 3]}\n\n{\"ids\": [4, 5]}\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(r.err.find("line 2: empty line"), std::string::npos) << r.err;
}

TEST_F(BadInput, IdOutOfVocabularyIsAnError) {
  auto r = test::run_r1("logprobs --model " + dir.file("m"), "{\"ids\": [1, 999]}\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(r.err.find("line 1: ids[1] = 999"), std::string::npos) << r.err;
}

TEST_F(BadInput, TruncatedSafetensorsIsAnError) {
  std::filesystem::resize_file(dir.file("m/model.safetensors"),
                               std::filesystem::file_size(dir.file("m/model.safetensors")) - 100);
  auto r = test::run_r1("logprobs --model " + dir.file("m"), "{\"ids\": [1, 2]}\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(r.err.find("model.safetensors"), std::string::npos) << r.err;
}

TEST_F(BadInput, CorruptHeaderIsAnError) {
  {
    std::fstream f(dir.file("m/model.safetensors"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(10);
    f.write("\x01\x02garbage", 9);
  }
  auto r = test::run_r1("logprobs --model " + dir.file("m"), "{\"ids\": [1, 2]}\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("model.safetensors"), std::string::npos) << r.err;
}

TEST_F(BadInput, ConfigMissingKeyNamesTheKey) {
  std::string cfg = dir.file("m/config.json");
  std::ifstream in(cfg);
  nlohmann::json j = nlohmann::json::parse(in);
  j.erase("hidden_size");
  std::ofstream(cfg) << j.dump(2);
  auto r = test::run_r1("logprobs --model " + dir.file("m"), "{\"ids\": [1, 2]}\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("hidden_size"), std::string::npos) << r.err;
}

TEST_F(BadInput, WrongShapeNamesTheTensor) {
  // A checkpoint saved with a wider MLP does not load under the original config.
  auto r0 = test::run_r1("init --preset tiny --set intermediate_size=64 --out " + dir.file("wide"));
  ASSERT_EQ(r0.exit_code, 0) << r0.err;
  std::filesystem::copy_file(dir.file("wide/model.safetensors"), dir.file("m/model.safetensors"),
                             std::filesystem::copy_options::overwrite_existing);
  auto r = test::run_r1("logprobs --model " + dir.file("m"), "{\"ids\": [1, 2]}\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("mlp"), std::string::npos) << r.err;
}

TEST_F(BadInput, InitRefusesToOverwrite) {
  auto r = test::run_r1("init --preset tiny --out " + dir.file("m"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
}

}  // namespace

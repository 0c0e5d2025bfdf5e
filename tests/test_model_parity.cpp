// Parity with transformers: fixtures in tests/fixtures/parity were written by
// tools/parity/make_fixtures.py (transformers 5.17, float64 oracle) for qwen2, llama (llama3 rope
// scaling, untied embeddings) and qwen3 (q/k norm, explicit head_dim), and by
// tools/parity/make_moe_fixtures.py for qwen3_moe, deepseek_v3 (MLA with q_lora_rank, yarn,
// group-limited sigmoid routing, shared experts) and deepseek_v3_plain (q_proj, rotate_half rope).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "kernels/invariance.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "test_util.h"
#include "model/train_state.h"

using namespace r1;

namespace {

struct Fixture {
  std::string dir;
  std::vector<std::vector<int32_t>> inputs;
  std::vector<std::vector<double>> expected;
};

Fixture load_fixture(const std::string& arch) {
  Fixture f;
  f.dir = test::source_path("tests/fixtures/parity/" + arch);
  for (const auto& l : test::read_lines(f.dir + "/inputs.jsonl"))
    f.inputs.push_back(nlohmann::json::parse(l)["ids"].get<std::vector<int32_t>>());
  for (const auto& l : test::read_lines(f.dir + "/expected.jsonl"))
    f.expected.push_back(nlohmann::json::parse(l)["logprobs"].get<std::vector<double>>());
  return f;
}

class Parity : public ::testing::TestWithParam<std::string> {};

// Within 1e-4 of transformers' fp64 log-probs, with the plain forward and with the batch-invariant
// one (rollout.exact_logprobs: another summation order, the same parity).
TEST_P(Parity, LogprobsMatchTransformers) {
  Fixture f = load_fixture(GetParam());
  model::Transformer m = model::load_model(f.dir);
  model::Batch batch = model::pack_sequences(f.inputs);
  for (const bool exact : {false, true}) {
    ops::BatchInvariantScope mode(exact);
    model::TrainState state;
    state.vocab_chunk = 100;  // does not divide V = 256: exercises the chunk tail
    Tensor logp = state.forward(m, batch);
    double max_err = 0;
    for (size_t b = 0; b < f.inputs.size(); ++b) {
      ASSERT_EQ(f.expected[b].size() + 1, f.inputs[b].size());
      for (size_t i = 0; i < f.expected[b].size(); ++i)
        max_err = std::max(max_err, std::abs(logp.f32()[batch.cu_seqlens[b] + int32_t(i)] - f.expected[b][i]));
    }
    EXPECT_LT(max_err, 1e-4) << GetParam() << (exact ? " (batch-invariant)" : "");
    std::printf("[ PARITY ] %s%s: max |logp - transformers| %.3g\n", GetParam().c_str(),
                exact ? " batch-invariant" : "", max_err);
  }
}

TEST_P(Parity, CliLogprobsMatchTransformers) {
  Fixture f = load_fixture(GetParam());
  std::string input;
  for (const auto& l : test::read_lines(f.dir + "/inputs.jsonl")) input += l + "\n";
  test::RunResult r = test::run_r1("logprobs --model " + f.dir, input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream out(r.out);
  std::string line;
  size_t b = 0;
  while (std::getline(out, line)) {
    ASSERT_LT(b, f.expected.size());
    auto got = nlohmann::json::parse(line)["logprobs"].get<std::vector<double>>();
    ASSERT_EQ(got.size(), f.expected[b].size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], f.expected[b][i], 1e-4) << "seq " << b << " tok " << i;
    ++b;
  }
  EXPECT_EQ(b, f.expected.size());
}

// loss = -mean(logp over all predicted tokens); gradients against torch autograd in float64.
TEST_P(Parity, GradientsMatchAutograd) {
  Fixture f = load_fixture(GetParam());
  model::Transformer m = model::load_model(f.dir);
  model::Batch batch = model::pack_sequences(f.inputs);
  model::TrainState state;
  state.forward(m, batch);
  int64_t count = 0;
  for (int32_t t : batch.targets) count += t >= 0;
  std::vector<float> dlogp(batch.targets.size());
  for (size_t t = 0; t < dlogp.size(); ++t) dlogp[t] = batch.targets[t] >= 0 ? -1.0f / float(count) : 0.0f;
  m.zero_grads();
  state.backward(m, dlogp);

  model::SafetensorsReader ref(f.dir + "/grads.safetensors");
  const float* g = m.grads().flat.f32();
  for (const auto& s : m.specs()) {
    if (s.name.ends_with("e_score_correction_bias")) {  // a buffer in transformers: never trained
      for (int64_t i = 0; i < s.numel(); ++i) EXPECT_EQ(g[s.offset + i], 0.0f) << s.name;
      continue;
    }
    std::vector<float> want(size_t(s.numel()));
    ref.read_f32(s.name, s.shape, want.data());
    double num = 0, den = 0;
    for (int64_t i = 0; i < s.numel(); ++i) {
      double d = double(g[s.offset + i]) - want[size_t(i)];
      num += d * d;
      den += double(want[size_t(i)]) * want[size_t(i)];
    }
    EXPECT_LT(std::sqrt(num / std::max(den, 1e-30)), 1e-4) << GetParam() << " " << s.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Model, Parity,
                         ::testing::Values("qwen2", "llama", "qwen3", "qwen3_moe", "deepseek_v3", "deepseek_v3_plain"));

}  // namespace

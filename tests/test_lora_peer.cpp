// LoRA against PEFT (fixtures in tests/fixtures/lora_peer, written by tools/parity/lora_peer.py with
// transformers + PEFT, float64): adapters PEFT saved load here and give PEFT's log-probs and adapter
// gradients, and an adapter r1 saved, loaded by PeftModel.from_pretrained, gives what r1 computes.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "model/adapter_checkpoint.h"
#include "model/safetensors.h"
#include "model/train_state.h"
#include "tensor/device_memory.h"
#include "test_util.h"

using namespace r1;

namespace {

const std::string kDir = "tests/fixtures/lora_peer";

std::vector<std::vector<int32_t>> inputs() {
  std::vector<std::vector<int32_t>> out;
  for (const auto& l : test::read_lines(test::source_path(kDir + "/inputs.jsonl")))
    out.push_back(nlohmann::json::parse(l).at("ids").get<std::vector<int32_t>>());
  return out;
}

std::vector<std::vector<double>> expected(const std::string& dir) {
  std::vector<std::vector<double>> out;
  for (const auto& l : test::read_lines(dir + "/expected.jsonl"))
    out.push_back(nlohmann::json::parse(l).at("logprobs").get<std::vector<double>>());
  return out;
}

// max |r1 - peer| over every predicted token of the fixture's sequences (packed in `batch`, which
// must outlive a backward after this forward).
double logprob_error(model::TrainState& st, const model::Transformer& m, const model::Batch& batch,
                     const std::string& dir) {
  const auto seqs = inputs();
  const auto want = expected(dir);
  const std::vector<float> lp = to_host_f32(st.forward(m, batch));
  double err = 0;
  for (size_t b = 0; b < seqs.size(); ++b) {
    EXPECT_EQ(want[b].size() + 1, seqs[b].size());
    for (size_t i = 0; i < want[b].size(); ++i)
      err = std::max(err, std::abs(double(lp[size_t(batch.cu_seqlens[b]) + i]) - want[b][i]));
  }
  return err;
}

class LoraPeer : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraPeer, PeftAdapterLogprobsAndGradients) {
  const std::string dir = test::source_path(kDir + "/peft_" + GetParam());
  model::Transformer m = model::load_adapted_model(dir);  // the base from base_model_name_or_path
  model::TrainState st;
  const model::Batch batch = model::pack_sequences(inputs());
  const double err = logprob_error(st, m, batch, dir);
  std::printf("[ PARITY ] %s max |logp - peft| = %.3e\n", GetParam().c_str(), err);
  EXPECT_LT(err, 1e-4);

  // d(-mean logp)/d adapter, against PEFT's autograd in float64.
  int64_t n = 0;
  for (int32_t t : batch.targets) n += t >= 0;
  std::vector<float> d(batch.targets.size());
  for (size_t t = 0; t < d.size(); ++t) d[t] = batch.targets[t] >= 0 ? -1.0f / float(n) : 0.0f;
  m.zero_grads();
  st.backward(m, d);
  const std::vector<float> g = to_host_f32(m.trainable_weights().grads);
  model::SafetensorsReader want(dir + "/grads.safetensors");
  ASSERT_EQ(want.names().size(), m.adapter_specs().size());
  double worst = 0;
  for (const model::ParamSpec& s : m.adapter_specs()) {
    ASSERT_TRUE(want.contains(s.name)) << s.name;
    std::vector<float> w(size_t(s.numel()));
    want.read_f32(s.name, s.shape, w.data());
    double num = 0, den = 0;
    for (int64_t i = 0; i < s.numel(); ++i) {
      const double x = g[size_t(s.offset + i)], y = w[size_t(i)];
      num += (x - y) * (x - y);
      den += y * y;
    }
    const double e = std::sqrt(num / std::max(den, 1e-30));
    worst = std::max(worst, e);
    EXPECT_LT(e, 1e-4) << s.name;
  }
  std::printf("[ PARITY ] %s worst adapter gradient rel L2 = %.3e\n", GetParam().c_str(), worst);
}

INSTANTIATE_TEST_SUITE_P(Cases, LoraPeer, ::testing::Values("all_linear", "rslora_qvd"));

// The adapter r1 wrote (r1 sft with train.lora.*), as PeftModel.from_pretrained computes with it.
TEST(LoraPeerR1Adapter, PeftLoadsItAndAgrees) {
  const std::string dir = test::source_path(kDir + "/r1_adapter");
  const model::Transformer m = model::load_adapted_model(dir, test::source_path(kDir + "/base"));
  ASSERT_GT(m.lora().dropout, 0.0) << "the fixture's adapter was trained with dropout";
  model::TrainState st;
  st.dropout = false;  // as PEFT evaluates (model.eval())
  const model::Batch batch = model::pack_sequences(inputs());
  const double err = logprob_error(st, m, batch, dir);
  std::printf("[ PARITY ] r1 adapter in PEFT: max |logp r1 - peft| = %.3e\n", err);
  EXPECT_LT(err, 1e-4);
}

}  // namespace

// GRPO against a peer: one update's loss and gradient on a tiny Qwen2 model, as TRL's GRPO loss
// computes them in PyTorch (float64; tools/parity/grpo_peer.py wrote tests/fixtures/grpo_peer on
// the GPU machine), for TRL's "grpo", "dapo" and "dr_grpo" settings. r1 runs the same batch
// through its own update phase (packing, micro-batches, the loss, the backward) in fp32 and must
// agree to 1e-5: the loss, and the gradient of every weight (relative to the largest).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "base/fs.h"
#include "dist/world.h"
#include "grpo_test_util.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "tensor/device_memory.h"
#include "test_util.h"

using namespace r1;
using namespace r1::train;
using nlohmann::json;

namespace {

std::string fixture(const std::string& file) { return test::source_path("tests/fixtures/grpo_peer/" + file); }

// The batch as groups, with the peer's old and reference log-probs.
std::vector<Group> peer_groups(const json& batch) {
  const int G = batch.at("group_size").get<int>();
  const auto prompts = batch.at("prompts").get<std::vector<std::vector<int32_t>>>();
  const auto completions = batch.at("completions").get<std::vector<std::vector<int32_t>>>();
  const auto old = batch.at("old_logps").get<std::vector<std::vector<float>>>();
  const auto ref = batch.at("ref_logps").get<std::vector<std::vector<float>>>();
  const auto rewards = batch.at("rewards").get<std::vector<double>>();
  std::vector<Group> groups;
  for (size_t i = 0; i < prompts.size(); i += size_t(G)) {
    std::vector<std::vector<int32_t>> comps(completions.begin() + int64_t(i), completions.begin() + int64_t(i) + G);
    std::vector<double> r(rewards.begin() + int64_t(i), rewards.begin() + int64_t(i) + G);
    groups.push_back(test::make_group(int64_t(groups.size()), prompts[i], comps, r));
    for (int s = 0; s < G; ++s) {
      EXPECT_EQ(prompts[i + size_t(s)], prompts[i]) << "a group shares its prompt";
      groups.back().seqs[size_t(s)].out.logprobs = old[i + size_t(s)];
      groups.back().seqs[size_t(s)].ref_logp = ref[i + size_t(s)];
    }
  }
  return groups;
}

GrpoConfig peer_config(const json& setting, const json& batch) {
  GrpoConfig c;
  c.group_size = batch.at("group_size").get<int>();
  c.max_completion_tokens = batch.at("max_completion_length").get<int>();
  c.temperature = batch.at("temperature").get<float>();
  c.loss.clip_low = setting.at("eps_low").get<double>();
  c.loss.clip_high = setting.at("eps_high").get<double>();
  c.loss.kl_coef = setting.at("beta").get<double>();
  c.scale_advantage_by_std = setting.at("scale_rewards").get<bool>();
  const std::string type = setting.at("loss_type").get<std::string>();
  c.loss.reduction = type == "grpo"   ? LossReduction::SeqMeanTokenMean
                     : type == "dapo" ? LossReduction::TokenMean
                                      : LossReduction::SeqMeanTokenSumNorm;  // dr_grpo: / (B x max length)
  return c;
}

class GrpoPeer : public ::testing::TestWithParam<std::string> {};

TEST_P(GrpoPeer, LossAndGradientMatchTrl) {
  ASSERT_TRUE(fs::exists(fixture("expected.json"))) << "missing fixture: run tools/parity/grpo_peer.py";
  const json batch = json::parse(fs::read_file(fixture("batch.json")));
  const json expected = json::parse(fs::read_file(fixture("expected.json"))).at("settings").at(GetParam());
  const GrpoConfig cfg = peer_config(expected.at("setting"), batch);
  model::Transformer m = model::load_model(fixture("model"));
  std::vector<Group> kept = peer_groups(batch);

  // Advantages: r1's group normalisation against the peer's (same eps).
  assign_advantages(kept, cfg.scale_advantage_by_std);
  const auto want_adv = expected.at("advantages").get<std::vector<double>>();
  size_t i = 0;
  for (const Group& g : kept)
    for (const Sequence& s : g.seqs) EXPECT_NEAR(s.advantage, want_adv[i++], 1e-9);

  const double want_loss = expected.at("loss").get<double>();
  model::SafetensorsReader grads(fixture("grads.safetensors"));
  for (int64_t budget : {int64_t(1) << 20, int64_t(12)}) {  // one micro-batch, and several
    const std::vector<MiniBatch> plan =
        plan_mini_batches(kept, int64_t(kept.size()), cfg.group_size, 1, budget, dist::host_comm());
    ASSERT_EQ(plan.size(), 1u);
    model::TrainState st;
    m.zero_grads();
    const MiniBatchStats got = accumulate_gradients(m, st, plan[0], update_loss_config(cfg), cfg.temperature, false);
    std::printf("[ PEER ] %-8s budget %7lld: loss r1 %.9f peer %.9f |diff| %.2e\n", GetParam().c_str(),
                static_cast<long long>(budget), got.loss, want_loss, std::abs(got.loss - want_loss));
    EXPECT_NEAR(got.loss, want_loss, 1e-5 * std::max(1.0, std::abs(want_loss)));

    const std::vector<float> g = to_host_f32(m.grads().flat);
    double max_want = 0, max_diff = 0, num = 0, den = 0;
    for (const auto& spec : m.specs()) {
      std::vector<float> want(size_t(spec.numel()));
      grads.read_f32(GetParam() + "/" + spec.name, spec.shape, want.data());
      for (int64_t k = 0; k < spec.numel(); ++k) {
        const double d = double(g[size_t(spec.offset + k)]) - want[size_t(k)];
        max_want = std::max(max_want, std::abs(double(want[size_t(k)])));
        max_diff = std::max(max_diff, std::abs(d));
        num += d * d;
        den += double(want[size_t(k)]) * want[size_t(k)];
      }
    }
    std::printf("[ PEER ] %-8s budget %7lld: gradient max|diff| / max|g| %.2e, relative L2 %.2e, norm %.6f (peer %.6f)\n",
                GetParam().c_str(), static_cast<long long>(budget), max_diff / max_want, std::sqrt(num / den),
                std::sqrt(den), expected.at("grad_norm").get<double>());
    EXPECT_GT(max_want, 0.0);
    EXPECT_LT(max_diff, 1e-5 * max_want);
    EXPECT_LT(std::sqrt(num / den), 1e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Settings, GrpoPeer, ::testing::Values("grpo", "dapo", "dr_grpo"));

}  // namespace

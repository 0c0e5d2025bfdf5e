// GRPO against a peer: one update's loss and gradient on a tiny Qwen2 model, as TRL's GRPO loss
// computes them in PyTorch (float64; tools/parity/grpo_peer.py wrote tests/fixtures/grpo_peer with
// torch 2.11 and transformers 5.17), for TRL's "grpo", "dapo" and "dr_grpo" settings. r1 runs the
// same batch through its own phases (advantages; packing, micro-batches, the loss and the backward
// of the update) in fp32. The loss agrees to 1e-5. The gradient's error follows the fp32 error of
// the log-probs, which sit at -5 to -26 here (a random model with large weights) and agree to
// 8.6e-6 at most: every ratio exp(logp - old) carries that relative error into the gradient.
// Measured on a Zen CPU: relative L2 3.3e-6 to 9.3e-6; the gate is 2e-5, for other CPUs' rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

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

// The fixture's batch: six (prompt, completion) sequences whose rewards form two groups of three
// (each sequence has its own random prompt; the loss does not depend on prompts being shared).
struct PeerBatch {
  std::vector<Group> by_prompt;  // one Group per sequence: what the update packs and trains on
  std::vector<Group> by_reward;  // the reward groups: what the advantages are computed over
};

PeerBatch peer_batch(const json& batch) {
  const int G = batch.at("group_size").get<int>();
  const auto prompts = batch.at("prompts").get<std::vector<std::vector<int32_t>>>();
  const auto completions = batch.at("completions").get<std::vector<std::vector<int32_t>>>();
  const auto old = batch.at("old_logps").get<std::vector<std::vector<float>>>();
  const auto ref = batch.at("ref_logps").get<std::vector<std::vector<float>>>();
  const auto rewards = batch.at("rewards").get<std::vector<double>>();
  PeerBatch b;
  for (size_t i = 0; i < prompts.size(); ++i) {
    b.by_prompt.push_back(test::make_group(int64_t(i), prompts[i], {completions[i]}, {rewards[i]}));
    b.by_prompt.back().seqs[0].out.logprobs = old[i];
    b.by_prompt.back().seqs[0].ref_logp = ref[i];
  }
  for (size_t i = 0; i < rewards.size(); i += size_t(G))
    b.by_reward.push_back(test::make_group(int64_t(i) / G, {}, std::vector<std::vector<int32_t>>(size_t(G)),
                                           {rewards.begin() + int64_t(i), rewards.begin() + int64_t(i) + G}));
  return b;
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
  PeerBatch b = peer_batch(batch);

  // Advantages: r1's group normalisation against the peer's (same eps).
  assign_advantages(b.by_reward, cfg.scale_advantage_by_std);
  const auto want_adv = expected.at("advantages").get<std::vector<double>>();
  size_t i = 0;
  for (const Group& g : b.by_reward)
    for (const Sequence& s : g.seqs) {
      EXPECT_NEAR(s.advantage, want_adv[i], 1e-9);
      b.by_prompt[i++].seqs[0].advantage = s.advantage;
    }

  const double want_loss = expected.at("loss").get<double>();
  model::SafetensorsReader grads(fixture("grads.safetensors"));
  for (int64_t budget : {int64_t(1) << 20, int64_t(12)}) {  // one micro-batch, and several
    const std::vector<MiniBatch> plan =
        plan_mini_batches(b.by_prompt, int64_t(b.by_prompt.size()), 1, 1, budget, dist::host_comm());
    ASSERT_EQ(plan.size(), 1u);
    model::TrainState st;
    m.zero_grads();
    const MiniBatchStats got =
        accumulate_gradients(m, st, plan[0], update_loss_config(cfg), cfg.temperature, false);
    std::printf("[ PEER ] %-8s budget %7lld: loss r1 %.9f peer %.9f |diff| %.2e\n", GetParam().c_str(),
                static_cast<long long>(budget), got.loss, want_loss, std::abs(got.loss - want_loss));
    EXPECT_NEAR(got.loss, want_loss, 1e-5);

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
    std::printf(
        "[ PEER ] %-8s budget %7lld: gradient max|diff| / max|g| %.2e, relative L2 %.2e, norm %.6f (peer "
        "%.6f)\n",
        GetParam().c_str(), static_cast<long long>(budget), max_diff / max_want, std::sqrt(num / den),
        std::sqrt(den), expected.at("grad_norm").get<double>());
    EXPECT_GT(max_want, 0.0);
    EXPECT_LT(max_diff, 2e-5 * max_want);
    EXPECT_LT(std::sqrt(num / den), 2e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Settings, GrpoPeer, ::testing::Values("grpo", "dapo", "dr_grpo"));

}  // namespace

// The update phase on hand-made groups through a tiny model: the loss it accumulates over
// micro-batches is each reduction's formula computed by hand (so a reduction that is ignored or
// normalised by the wrong counts fails), its gradient does not depend on the micro-batch split,
// and ppo_epochs x mini_batches optimizer steps are taken, the later passes on moved weights.
#include <gtest/gtest.h>

#include <cmath>

#include "dist/world.h"
#include "grpo_test_util.h"
#include "tensor/device_memory.h"

using namespace r1;
using namespace r1::train;

namespace {

// Two groups of three with varied lengths; old log-probs are the model's own moved by fixed
// offsets (ratios from 0.7 to 1.3, both clip bounds crossed), the reference's by others.
struct Batch {
  model::Transformer m = test::byte_model(7);
  std::vector<Group> kept;
  std::vector<std::vector<float>> logp;  // each sequence's own, alone in its batch
};

Batch make_batch() {
  Batch b;
  b.kept = {test::make_group(0, {5, 9, 14}, {{3, 7, 7, 1}, {40, 2}, {8, 8, 8, 8, 8, 9}}),
            test::make_group(1, {100, 4}, {{11, 12, 13}, {200}, {66, 67, 68, 69, 70}})};
  const double adv[] = {1.2, -0.4, -0.8, 0.5, -1.5, 1.0};
  const double ratio[] = {1.3, 0.7, 1.1, 0.95, 1.25, 0.8, 1.02};
  const double ref_shift[] = {0.3, -0.2, 0.05, -0.4};
  int k = 0, i = 0;
  for (Group& g : b.kept)
    for (Sequence& s : g.seqs) {
      std::vector<float> lp = test::completion_logprobs(b.m, g, s);
      s.advantage = adv[i++];
      s.ref_logp.resize(lp.size());
      for (size_t t = 0; t < lp.size(); ++t, ++k) {
        s.out.logprobs[t] = float(lp[t] - std::log(ratio[k % 7]));
        s.ref_logp[t] = float(lp[t] + ref_shift[k % 4]);
      }
      b.logp.push_back(lp);
    }
  return b;
}

// The mini-batch loss by the formulas, in double.
double hand_loss(const Batch& b, const GrpoLossConfig& c) {
  int64_t tokens = 0, seqs = 0;
  for (const auto& lp : b.logp) tokens += int64_t(lp.size()), ++seqs;
  double loss = 0;
  size_t i = 0;
  for (const Group& g : b.kept)
    for (const Sequence& s : g.seqs) {
      const std::vector<float>& lp = b.logp[i++];
      const double n = double(lp.size());
      const double w = c.reduction == LossReduction::SeqMeanTokenMean ? 1.0 / (n * double(seqs))
                       : c.reduction == LossReduction::TokenMean      ? 1.0 / double(tokens)
                                                                 : 1.0 / (c.norm_constant * double(seqs));
      for (size_t t = 0; t < lp.size(); ++t) {
        const double r = std::exp(double(lp[t]) - s.out.logprobs[t]), A = s.advantage;
        double l = -std::min(r * A, std::clamp(r, 1 - c.clip_low, 1 + c.clip_high) * A);
        const double d = double(s.ref_logp[t]) - lp[t];
        l += c.kl_coef * (std::exp(d) - d - 1);
        loss += w * l;
      }
    }
  return loss;
}

TEST(GrpoUpdate, LossIsEachReductionsFormulaAcrossMicroBatches) {
  Batch b = make_batch();
  dist::Comm& single = dist::host_comm();
  std::vector<double> losses;
  for (auto red :
       {LossReduction::SeqMeanTokenMean, LossReduction::TokenMean, LossReduction::SeqMeanTokenSumNorm})
    for (double beta : {0.0, 0.05}) {
      GrpoConfig cfg = test::small_grpo(2, 3, 10);
      cfg.loss.reduction = red;
      cfg.loss.kl_coef = beta;
      cfg.loss.clip_high = 0.28;
      const GrpoLossConfig lc = update_loss_config(cfg);  // Dr. GRPO: divided by 10
      // 9-token budget: the six sequences in several micro-batches.
      const std::vector<MiniBatch> plan = plan_mini_batches(b.kept, 2, 3, 1, 9, single);
      ASSERT_EQ(plan.size(), 1u);
      ASSERT_GT(plan[0].micro.size(), 2u);
      model::TrainState st;
      b.m.zero_grads();
      const MiniBatchStats got = accumulate_gradients(b.m, st, plan[0], lc, 1.0f, false);
      const double want = hand_loss(b, lc);
      EXPECT_NEAR(got.loss, want, 1e-5 * std::max(1.0, std::abs(want)))
          << reduction_name(red) << " beta " << beta;
      EXPECT_EQ(got.tokens, 21);
      losses.push_back(got.loss);
    }
  // The reductions differ on this batch, so the check above tells them apart.
  for (size_t i = 0; i < losses.size(); i += 2)
    for (size_t j = i + 2; j < losses.size(); j += 2) EXPECT_GT(std::abs(losses[i] - losses[j]), 1e-3);
}

TEST(GrpoUpdate, GradientDoesNotDependOnTheMicroBatchSplit) {
  Batch b = make_batch();
  dist::Comm& single = dist::host_comm();
  GrpoConfig cfg = test::small_grpo(2, 3, 10);
  cfg.loss.kl_coef = 0.05;
  auto gradient = [&](int64_t budget) {
    const std::vector<MiniBatch> plan = plan_mini_batches(b.kept, 2, 3, 1, budget, single);
    model::TrainState st;
    b.m.zero_grads();
    accumulate_gradients(b.m, st, plan[0], update_loss_config(cfg), 1.0f, false);
    return to_host_f32(b.m.grads().flat);
  };
  const std::vector<float> one = gradient(1 << 20), many = gradient(6);
  double num = 0, den = 0;
  for (size_t i = 0; i < one.size(); ++i) {
    num += (double(one[i]) - many[i]) * (double(one[i]) - many[i]);
    den += double(one[i]) * one[i];
  }
  EXPECT_GT(den, 0.0);
  EXPECT_LT(std::sqrt(num / den), 1e-5);
}

TEST(GrpoUpdate, PpoEpochsRepeatThePassOnMovedWeights) {
  for (int epochs : {1, 3}) {
    Batch b = make_batch();
    GrpoConfig cfg = test::small_grpo(2, 3, 10);
    cfg.ppo_epochs = epochs;
    cfg.mini_batches = 2;
    cfg.lr = 1e-2;
    optim::DataParallel dp(b.m, cfg.adamw);
    const std::vector<MiniBatch> plan =
        plan_mini_batches(b.kept, 2, 3, cfg.mini_batches, 8192, dist::host_comm());
    ASSERT_EQ(plan.size(), 2u);
    model::TrainState st;
    int bad = 0;
    const UpdateStats u = update_policy(b.m, st, dp, plan, cfg, cfg.lr, 0, bad);
    EXPECT_EQ(u.updates, 2 * epochs);
    ASSERT_EQ(u.epoch_loss.size(), size_t(epochs));
    // The later passes see the weights the earlier ones moved (the old log-probs stay the
    // sampler's): their losses differ.
    for (int e = 1; e < epochs; ++e)
      EXPECT_GT(std::abs(u.epoch_loss[size_t(e)] - u.epoch_loss[0]), 1e-4) << e;
    EXPECT_EQ(dp.steps_taken(), 2 * epochs);
  }
}

}  // namespace

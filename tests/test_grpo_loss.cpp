// The GRPO loss against hand-computed values for each reduction and KL estimator, its gradient
// against finite differences (w.r.t. log-probs, and through a tiny model to its weights).
#include <gtest/gtest.h>

#include <cmath>

#include "base/error.h"
#include "model/transformer.h"
#include "model/train_state.h"
#include "train/grpo_loss.h"

using namespace r1;
using namespace r1::train;

namespace {

// Two completions in one packed array: tokens 1..2 (A = +1) and token 4 (A = -0.5); 0 and 3 are
// prompt tokens outside any span.
const std::vector<float> kLogp = {-9.f, -1.0f, -2.0f, -9.f, -0.5f};
const std::vector<float> kOld = {-9.f, -1.1f, -1.7f, -9.f, -0.9f};
const std::vector<float> kRef = {-9.f, -1.2f, -2.1f, -9.f, -0.4f};
const std::vector<SeqSpan> kSpans = {{1, 2, 1.0}, {4, 1, -0.5}};
const ReductionScale kScale{2, 3};

TEST(GrpoLoss, HandComputedClippedTerms) {
  // ratios: e^{0.1} = 1.10517 (A=+1: min(1.10517, 1.2) -> unclipped, -1.10517),
  //         e^{-0.3} = 0.74082 (A=+1: min(0.74082, 0.8) -> unclipped, -0.74082),
  //         e^{0.4} = 1.49182 (A=-0.5: min(-0.74591, -0.6) -> unclipped, +0.74591).
  const double l1 = -std::exp(0.1), l2 = -std::exp(-0.3), l3 = 0.5 * std::exp(0.4);
  GrpoLossConfig cfg;
  std::vector<float> d;
  cfg.reduction = LossReduction::SeqMeanTokenMean;
  EXPECT_NEAR(grpo_loss(kLogp, kOld, {}, kSpans, cfg, kScale, d).loss, ((l1 + l2) / 2 + l3) / 2, 1e-6);
  cfg.reduction = LossReduction::TokenMean;
  EXPECT_NEAR(grpo_loss(kLogp, kOld, {}, kSpans, cfg, kScale, d).loss, (l1 + l2 + l3) / 3, 1e-6);
  cfg.reduction = LossReduction::SeqMeanTokenSumNorm;
  cfg.norm_constant = 8;
  EXPECT_NEAR(grpo_loss(kLogp, kOld, {}, kSpans, cfg, kScale, d).loss, ((l1 + l2) / 8 + l3 / 8) / 2, 1e-6);

  // Tighter clip (0.05): token 1 ratio 1.105 > 1.05 with A > 0 -> clipped at 1.05 (no gradient);
  // token 3 ratio 1.49 with A < 0 stays unclipped (pessimistic bound).
  cfg = {};
  cfg.clip_low = cfg.clip_high = 0.05;
  cfg.reduction = LossReduction::TokenMean;
  auto st = grpo_loss(kLogp, kOld, {}, kSpans, cfg, kScale, d);
  EXPECT_NEAR(st.loss, (-1.05 + l2 + l3) / 3, 1e-6);
  EXPECT_EQ(st.clip_frac, 1.0);
  EXPECT_EQ(d[1], 0.0f);
  EXPECT_NE(d[2], 0.0f);
  EXPECT_EQ(d[0], 0.0f);  // prompt tokens get no gradient
}

// Clip-higher (DAPO): the upper bound is 1 + clip_high, the lower 1 - clip_low, each on its own.
TEST(GrpoLoss, AsymmetricClipBoundsEachSide) {
  const ReductionScale one{1, 1};
  std::vector<float> d;
  auto run = [&](double ratio, double A, double lo, double hi) {
    GrpoLossConfig cfg;
    cfg.reduction = LossReduction::TokenMean;
    cfg.clip_low = lo;
    cfg.clip_high = hi;
    return grpo_loss({float(std::log(ratio))}, {0.0f}, {}, {{0, 1, A}}, cfg, one, d);
  };
  // Ratio 1.25, advantage +1: clipped at 1.2 with clip_high 0.2 (no gradient) ...
  GrpoLossStats st = run(1.25, 1.0, 0.2, 0.2);
  EXPECT_NEAR(st.loss, -1.2, 1e-6);
  EXPECT_EQ(st.clip_frac, 1.0);
  EXPECT_EQ(d[0], 0.0f);
  // ... and not at clip_high 0.28: the full ratio and its gradient -A * ratio.
  st = run(1.25, 1.0, 0.2, 0.28);
  EXPECT_NEAR(st.loss, -1.25, 1e-6);
  EXPECT_EQ(st.clip_frac, 0.0);
  EXPECT_NEAR(d[0], -1.25, 1e-6);
  // The lower side follows clip_low alone: ratio 0.75 with advantage -1 is clipped at 0.8 ...
  st = run(0.75, -1.0, 0.2, 0.28);
  EXPECT_NEAR(st.loss, 0.8, 1e-6);
  EXPECT_EQ(d[0], 0.0f);
  // ... and not at clip_low 0.28 (floor 0.72).
  st = run(0.75, -1.0, 0.28, 0.28);
  EXPECT_NEAR(st.loss, 0.75, 1e-6);
  EXPECT_NEAR(d[0], 0.75, 1e-6);
}

TEST(GrpoLoss, HandComputedKlEstimators) {
  for (auto [est, name] : {std::pair{KlEstimator::K1, "k1"}, {KlEstimator::K2, "k2"}, {KlEstimator::K3, "k3"}}) {
    double kl_sum = 0;
    for (int t : {1, 2, 4}) {
      const double dd = double(kRef[size_t(t)]) - kLogp[size_t(t)];
      kl_sum += est == KlEstimator::K1 ? -dd : est == KlEstimator::K2 ? 0.5 * dd * dd : std::exp(dd) - dd - 1;
    }
    GrpoLossConfig cfg;
    cfg.kl_coef = 0.1;
    cfg.kl_estimator = est;
    cfg.reduction = LossReduction::TokenMean;
    std::vector<float> d;
    auto with = grpo_loss(kLogp, kOld, kRef, kSpans, cfg, kScale, d);
    cfg.kl_coef = 0;
    auto without = grpo_loss(kLogp, kOld, {}, kSpans, cfg, kScale, d);
    EXPECT_NEAR(with.kl_sum, kl_sum, 1e-6) << name;
    EXPECT_NEAR(with.loss - without.loss, 0.1 * kl_sum / 3, 1e-6) << name;
  }
  EXPECT_EQ(kl_estimate(KlEstimator::K3, -1.0, -1.0), 0.0);
  EXPECT_GE(kl_estimate(KlEstimator::K3, -1.0, -3.0), 0.0);
}

TEST(GrpoLoss, GradientMatchesFiniteDifferences) {
  for (auto red : {LossReduction::SeqMeanTokenMean, LossReduction::TokenMean, LossReduction::SeqMeanTokenSumNorm})
    for (auto est : {KlEstimator::K1, KlEstimator::K2, KlEstimator::K3}) {
      GrpoLossConfig cfg;
      cfg.reduction = red;
      cfg.kl_coef = 0.05;
      cfg.kl_estimator = est;
      cfg.norm_constant = 5;
      std::vector<float> d, tmp;
      grpo_loss(kLogp, kOld, kRef, kSpans, cfg, kScale, d);
      for (int t : {1, 2, 4}) {
        const float h = 1e-3f;
        std::vector<float> up = kLogp, dn = kLogp;
        up[size_t(t)] += h;
        dn[size_t(t)] -= h;
        const double fd = (grpo_loss(up, kOld, kRef, kSpans, cfg, kScale, tmp).loss -
                           grpo_loss(dn, kOld, kRef, kSpans, cfg, kScale, tmp).loss) / (2 * double(h));
        EXPECT_NEAR(d[size_t(t)], fd, 1e-4 * std::max(1.0, std::abs(fd))) << reduction_name(red) << " token " << t;
      }
    }
}

TEST(GrpoLoss, GroupAdvantages) {
  auto a = group_advantages({1, 0, 0, 1, 0.5, 0.5, 0.5, 0.5}, 4, true);
  const double sd = std::sqrt(1.0 / 3.0);  // unbiased std of {1, 0, 0, 1}
  EXPECT_NEAR(a[0], 0.5 / (sd + 1e-6), 1e-9);
  EXPECT_NEAR(a[1], -0.5 / (sd + 1e-6), 1e-9);
  for (int i = 4; i < 8; ++i) EXPECT_EQ(a[size_t(i)], 0.0);  // zero-variance group: no signal
  auto b = group_advantages({1, 0, 0, 1}, 4, false);         // Dr. GRPO: no division by std
  EXPECT_NEAR(b[0], 0.5, 1e-12);
  EXPECT_THROW(group_advantages({1, 0, 0}, 2, true), r1::Error);
  EXPECT_THROW(parse_reduction("token_sum"), r1::Error);
}

// Through a tiny model: d loss / d weight from the model's backward against central differences
// of the whole pipeline (forward -> GRPO loss), in fp32 with a step that keeps rounding small.
TEST(GrpoLoss, ModelGradientMatchesFiniteDifferences) {
  model::Transformer m(model::preset_config("tiny", "qwen3"));
  m.init_random(21, 0.3f);
  model::Batch batch = model::pack_sequences({{5, 9, 14, 3, 7, 7}, {1, 2, 200, 40}});
  // Completion tokens: logp rows 2..4 of sequence 0 and 7..8 of sequence 1 (a row predicts the next token).
  const std::vector<SeqSpan> spans = {{2, 3, 1.3}, {7, 2, -0.7}};
  GrpoLossConfig cfg;
  cfg.kl_coef = 0.1;
  cfg.clip_low = cfg.clip_high = 10;  // keep every token on the differentiable branch
  model::TrainState st;
  std::vector<float> logp0;
  {
    Tensor lp = st.forward(m, batch);
    logp0.assign(lp.f32(), lp.f32() + lp.numel());
  }
  std::vector<float> old = logp0, ref = logp0;
  for (size_t t = 0; t < old.size(); ++t) {
    old[t] -= 0.05f * float(t % 3);
    ref[t] += 0.1f * float(t % 2);
  }
  auto loss_at = [&]() {
    Tensor lp = st.forward(m, batch);
    std::vector<float> v(lp.f32(), lp.f32() + lp.numel()), d;
    return grpo_loss(v, old, ref, spans, cfg, {2, 5}, d).loss;
  };
  std::vector<float> dlogp;
  {
    Tensor lp = st.forward(m, batch);
    std::vector<float> v(lp.f32(), lp.f32() + lp.numel());
    grpo_loss(v, old, ref, spans, cfg, {2, 5}, dlogp);
  }
  m.zero_grads();
  st.backward(m, dlogp);
  float* w = m.params().flat.f32();
  const float* g = m.grads().flat.f32();
  // The largest-gradient entries of a few tensors.
  for (const auto& spec : m.specs()) {
    if (spec.name.find("layers.1.self_attn.q_proj.weight") == std::string::npos &&
        spec.name.find("layers.0.mlp.down_proj") == std::string::npos &&
        spec.name.find("q_norm") == std::string::npos && spec.name != "model.embed_tokens.weight")
      continue;
    int64_t best = spec.offset;
    for (int64_t i = spec.offset; i < spec.offset + spec.numel(); ++i)
      if (std::abs(g[i]) > std::abs(g[best])) best = i;
    const float saved = w[best], h = 1e-2f;
    w[best] = saved + h;
    const double up = loss_at();
    w[best] = saved - h;
    const double dn = loss_at();
    w[best] = saved;
    const double fd = (up - dn) / (2 * double(h));
    EXPECT_NEAR(g[best], fd, 2e-2 * std::abs(fd) + 1e-5) << spec.name;
  }
}

}  // namespace

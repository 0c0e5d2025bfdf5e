#include "train/grpo_loss.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace r1::train {

LossReduction parse_reduction(const std::string& s) {
  if (s == "seq_mean_token_mean") return LossReduction::SeqMeanTokenMean;
  if (s == "token_mean") return LossReduction::TokenMean;
  if (s == "seq_mean_token_sum_norm") return LossReduction::SeqMeanTokenSumNorm;
  fail("unknown loss reduction '{}' (valid: seq_mean_token_mean, token_mean, seq_mean_token_sum_norm)", s);
}

KlEstimator parse_kl_estimator(const std::string& s) {
  if (s == "k1") return KlEstimator::K1;
  if (s == "k2") return KlEstimator::K2;
  if (s == "k3") return KlEstimator::K3;
  fail("unknown KL estimator '{}' (valid: k1, k2, k3)", s);
}

const char* reduction_name(LossReduction r) {
  switch (r) {
    case LossReduction::SeqMeanTokenMean: return "seq_mean_token_mean";
    case LossReduction::TokenMean: return "token_mean";
    case LossReduction::SeqMeanTokenSumNorm: return "seq_mean_token_sum_norm";
  }
  return "?";
}

// With d = ref_logp - logp: k1 = -d, k2 = d^2 / 2, k3 = exp(d) - d - 1 (Schulman's estimators of
// KL(pi_theta || pi_ref) from samples of pi_theta; k3 is unbiased and never negative).
double kl_estimate(KlEstimator e, double logp, double ref_logp) {
  const double d = ref_logp - logp;
  switch (e) {
    case KlEstimator::K1: return -d;
    case KlEstimator::K2: return 0.5 * d * d;
    case KlEstimator::K3: return std::exp(d) - d - 1.0;
  }
  return 0;
}

double kl_estimate_grad(KlEstimator e, double logp, double ref_logp) {
  const double d = ref_logp - logp;  // dd/dlogp = -1
  switch (e) {
    case KlEstimator::K1: return 1.0;
    case KlEstimator::K2: return -d;
    case KlEstimator::K3: return 1.0 - std::exp(d);
  }
  return 0;
}

GrpoLossStats grpo_loss(const std::vector<float>& logp, const std::vector<float>& old_logp,
                        const std::vector<float>& ref_logp, const std::vector<SeqSpan>& spans,
                        const GrpoLossConfig& cfg, const ReductionScale& scale, std::vector<float>& dlogp) {
  const size_t T = logp.size();
  R1_CHECK(old_logp.size() == T, "grpo_loss: {} old log-probs for {} tokens", old_logp.size(), T);
  const bool use_kl = cfg.kl_coef != 0.0;
  R1_CHECK(!use_kl || ref_logp.size() == T, "grpo_loss: kl_coef is set but {} reference log-probs for {} tokens",
           ref_logp.size(), T);
  R1_CHECK(scale.sequences > 0 && scale.tokens > 0, "grpo_loss: empty mini-batch");
  R1_CHECK(cfg.reduction != LossReduction::SeqMeanTokenSumNorm || cfg.norm_constant > 0,
           "grpo_loss: seq_mean_token_sum_norm needs a positive norm constant");
  dlogp.assign(T, 0.0f);
  GrpoLossStats st;
  for (const SeqSpan& s : spans) {
    R1_CHECK(s.begin >= 0 && s.length >= 0 && size_t(s.begin + s.length) <= T, "grpo_loss: span [{}, +{}) out of range",
             s.begin, s.length);
    int64_t counted = s.length;
    if (s.in_loss) counted = std::count_if(s.in_loss, s.in_loss + s.length, [](uint8_t m) { return m != 0; });
    if (counted == 0) continue;
    double w = 0;  // the weight of each of this sequence's tokens in the mini-batch loss
    switch (cfg.reduction) {
      case LossReduction::SeqMeanTokenMean: w = 1.0 / (double(counted) * double(scale.sequences)); break;
      case LossReduction::TokenMean: w = 1.0 / double(scale.tokens); break;
      case LossReduction::SeqMeanTokenSumNorm: w = 1.0 / (cfg.norm_constant * double(scale.sequences)); break;
    }
    const double A = s.advantage;
    for (int64_t t = s.begin; t < s.begin + s.length; ++t) {
      if (s.in_loss && !s.in_loss[t - s.begin]) continue;  // an observation: not the model's
      const double lp = logp[size_t(t)];
      const double ratio = std::exp(lp - double(old_logp[size_t(t)]));
      const double clipped = std::clamp(ratio, 1.0 - cfg.clip_low, 1.0 + cfg.clip_high);
      const double iw = s.is_weight ? double(s.is_weight[t - s.begin]) : 1.0;
      const double unclipped_term = ratio * A, clipped_term = clipped * A;
      // loss = -min(ratio A, clip(ratio) A); the gradient flows only through the unclipped term.
      double l, dl;
      if (unclipped_term <= clipped_term) {
        l = -iw * unclipped_term;
        dl = -iw * A * ratio;
      } else {
        l = -iw * clipped_term;
        dl = 0.0;
        st.clip_frac += 1;
      }
      if (use_kl) {
        const double rl = ref_logp[size_t(t)];
        const double kl = kl_estimate(cfg.kl_estimator, lp, rl);
        l += cfg.kl_coef * kl;
        dl += cfg.kl_coef * kl_estimate_grad(cfg.kl_estimator, lp, rl);
        st.kl_sum += kl;
      }
      st.loss += w * l;
      st.ratio_sum += ratio;
      dlogp[size_t(t)] = float(w * dl);
      ++st.tokens;
    }
  }
  return st;
}

std::vector<double> group_advantages(const std::vector<double>& rewards, int group_size, bool scale_by_std,
                                     double eps) {
  R1_CHECK(group_size >= 1 && rewards.size() % size_t(group_size) == 0,
           "group_advantages: {} rewards do not split into groups of {}", rewards.size(), group_size);
  std::vector<double> adv(rewards.size());
  for (size_t g = 0; g < rewards.size(); g += size_t(group_size)) {
    double mean = 0;
    for (int i = 0; i < group_size; ++i) mean += rewards[g + size_t(i)];
    mean /= group_size;
    double var = 0;
    for (int i = 0; i < group_size; ++i) var += (rewards[g + size_t(i)] - mean) * (rewards[g + size_t(i)] - mean);
    const double sd = group_size > 1 ? std::sqrt(var / (group_size - 1)) : 0.0;
    for (int i = 0; i < group_size; ++i)
      adv[g + size_t(i)] = scale_by_std ? (rewards[g + size_t(i)] - mean) / (sd + eps) : rewards[g + size_t(i)] - mean;
  }
  return adv;
}

}  // namespace r1::train

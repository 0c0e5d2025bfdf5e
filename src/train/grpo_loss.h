#pragma once
// The GRPO policy loss on per-token log-probs (DESIGN.md "GRPO, precisely"): clipped importance
// ratio times the sequence's advantage, plus a KL penalty to the reference model, reduced by one of
// the three conventions in use (GRPO, DAPO, Dr. GRPO). The loss's gradient is w.r.t. logp, which
// the model's backward takes from there.
#include <cstdint>
#include <string>
#include <vector>

namespace r1::train {

enum class LossReduction {
  SeqMeanTokenMean,    // GRPO paper: mean over each sequence's tokens, then over sequences
  TokenMean,           // DAPO: mean over all tokens of the mini-batch
  SeqMeanTokenSumNorm  // Dr. GRPO: sum over each sequence's tokens / a constant, mean over sequences
};
enum class KlEstimator { K1, K2, K3 };

LossReduction parse_reduction(const std::string& s);  // "seq_mean_token_mean" | "token_mean" | "seq_mean_token_sum_norm"
KlEstimator parse_kl_estimator(const std::string& s);  // "k1" | "k2" | "k3"
const char* reduction_name(LossReduction r);

struct GrpoLossConfig {
  double clip_low = 0.2, clip_high = 0.2;  // ratio clipped to [1 - clip_low, 1 + clip_high]
  double kl_coef = 0.0;                    // beta; 0 disables the KL term in the loss
  KlEstimator kl_estimator = KlEstimator::K3;
  LossReduction reduction = LossReduction::SeqMeanTokenMean;
  // Dr. GRPO's divisor. grpo_loss needs it > 0; the trainer reads 0 as the maximum completion length.
  double norm_constant = 0.0;
};

// One completion in the packed token arrays: tokens [begin, begin + length) with one advantage.
// In multi-turn rollouts `in_loss` (length entries) marks the model's tokens; the others
// (observations) have no loss and no gradient, and do not count in the sequence's length.
struct SeqSpan {
  int64_t begin = 0, length = 0;
  double advantage = 0;
  const uint8_t* in_loss = nullptr;  // null: every token
  // length entries: each token's importance weight on its policy term (TIS), 0 drops the term (MIS);
  // null: 1. The KL term is not weighted.
  const float* is_weight = nullptr;
};

// The counts the reduction divides by, taken over the whole mini-batch so that splitting it into
// micro-batches (gradient accumulation) does not change the loss.
struct ReductionScale {
  int64_t sequences = 0, tokens = 0;
};

// Per-token KL(pi_theta || pi_ref) estimate from the log-probs of the sampled token, and its
// derivative w.r.t. logp.
double kl_estimate(KlEstimator e, double logp, double ref_logp);
double kl_estimate_grad(KlEstimator e, double logp, double ref_logp);

struct GrpoLossStats {
  double loss = 0;         // this micro-batch's share of the mini-batch loss
  double clip_frac = 0;    // tokens whose clipped term was active with zero gradient (count)
  double kl_sum = 0;       // sum of per-token KL estimates
  double ratio_sum = 0;    // sum of per-token ratios
  int64_t tokens = 0;
};

// logp, old_logp, ref_logp (empty if kl_coef == 0) and mask are per packed token; only tokens
// inside a span contribute. Writes d loss / d logp into dlogp (same length, overwritten).
GrpoLossStats grpo_loss(const std::vector<float>& logp, const std::vector<float>& old_logp,
                        const std::vector<float>& ref_logp, const std::vector<SeqSpan>& spans,
                        const GrpoLossConfig& cfg, const ReductionScale& scale, std::vector<float>& dlogp);

// Group-relative advantages: A_i = (r_i - mean) / (std + eps) within each group of `group_size`
// consecutive rewards (std unbiased, as torch.std), or r_i - mean when scale_by_std is false (Dr. GRPO).
std::vector<double> group_advantages(const std::vector<double>& rewards, int group_size, bool scale_by_std,
                                     double eps = 1e-6);

}  // namespace r1::train

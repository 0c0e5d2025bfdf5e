#include "train/grpo_offpolicy.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace r1::train {

void trainer_old_logprobs(const model::Transformer& policy, model::TrainState& state,
                          const std::vector<MiniBatch>& plan, float temperature, bool replay) {
  std::vector<int64_t> rows;
  for (const MiniBatch& mini : plan)
    for (const MicroBatch& mb : mini.micro) {
      const model::Batch b = pack(mb, rows, replay);
      state.forward(policy, b, temperature, model::Backward::None);  // nothing saved
      const std::vector<float> lp = state.logp_host();
      for (size_t i = 0; i < mb.size(); ++i) {
        const auto first = lp.begin() + rows[i];
        mb[i].seq->old_logp.assign(first, first + int64_t(mb[i].seq->out.tokens.size()));
      }
    }
}

SamplerGap correct_sampler_mismatch(std::vector<Group>& kept, IsCorrection correction, double cap) {
  SamplerGap gap;
  for (Group& g : kept)
    for (Sequence& s : g.seqs) {
      if (!s.in_loss || s.old_logp.empty()) continue;
      const size_t n = s.out.tokens.size();
      R1_CHECK(s.old_logp.size() == n && s.out.logprobs.size() == n,
               "GRPO: {} trainer and {} sampler log-probs for {} tokens", s.old_logp.size(), s.out.logprobs.size(), n);
      s.is_weight.assign(correction == IsCorrection::None ? 0 : n, 1.0f);
      for (size_t t = 0; t < n; ++t) {
        if (!rollout::is_model_token(s.out, t)) continue;
        const double d = double(s.old_logp[t]) - double(s.out.logprobs[t]);  // log w
        gap.max_abs = std::max(gap.max_abs, std::fabs(d));
        gap.sum_abs += std::fabs(d);
        ++gap.tokens;
        double w = 1.0;
        if (correction == IsCorrection::Tis) {
          w = std::min(std::exp(d), cap);
          gap.masked += std::exp(d) > cap ? 1 : 0;
        } else if (correction == IsCorrection::Mis) {
          const bool out = std::fabs(d) > std::log(cap);
          w = out ? 0.0 : 1.0;
          gap.masked += out ? 1 : 0;
        }
        if (correction != IsCorrection::None) s.is_weight[t] = float(w);
        gap.weight_sum += w;
      }
    }
  return gap;
}

}  // namespace r1::train

#include "train/rm.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "model/train_state.h"
#include "train/micro_batches.h"

namespace r1::train {

double bradley_terry_loss(double margin) {
  // log(1 + e^-x) = max(-x, 0) + log1p(e^-|x|)
  return std::max(-margin, 0.0) + std::log1p(std::exp(-std::abs(margin)));
}

RmStats rm_loss(model::Transformer& m, model::TrainState& state, const std::vector<PreferencePair>& pairs,
                int64_t micro_batch_tokens, bool backward) {
  R1_CHECK(m.config().num_labels == 1, "rm: the model must have a one-output score head (num_labels = {})",
           m.config().num_labels);
  R1_CHECK(!pairs.empty(), "rm: empty batch");
  for (const PreferencePair& p : pairs)
    R1_CHECK(!p.chosen.empty() && !p.rejected.empty(), "rm: a pair has an empty sequence");
  RmStats st;
  st.pairs = int64_t(pairs.size());
  const double inv = 1.0 / double(pairs.size());
  // A micro-batch holds whole pairs (a pair's loss needs both of its rewards), token-balanced.
  std::vector<int64_t> lengths;
  for (const PreferencePair& p : pairs) lengths.push_back(int64_t(p.chosen.size() + p.rejected.size()));
  for (const std::vector<size_t>& micro : balanced_micro_batches(lengths, micro_batch_tokens)) {
    std::vector<std::vector<int32_t>> seqs;
    for (size_t i : micro) {
      seqs.push_back(pairs[i].chosen);
      seqs.push_back(pairs[i].rejected);
    }
    const model::Batch b = model::pack_sequences(seqs);
    const std::vector<float> score =
        state.score_forward(m, b, backward ? model::Backward::Follows : model::Backward::None);
    st.micro_batches += 1;
    st.checkpointed += state.checkpointed() ? 1 : 0;
    std::vector<float> dscore(backward ? score.size() : 0, 0.0f);
    for (size_t k = 0; k < micro.size(); ++k) {
      const int32_t end_chosen = b.cu_seqlens[2 * k + 1] - 1, end_rejected = b.cu_seqlens[2 * k + 2] - 1;
      const double margin = double(score[size_t(end_chosen)]) - double(score[size_t(end_rejected)]);
      st.loss += bradley_terry_loss(margin) * inv;
      st.accuracy += (margin > 0 ? 1.0 : 0.0) * inv;
      st.margin += margin * inv;
      if (backward) {  // d/dmargin −log σ(margin) = −σ(−margin)
        const float g = float(-inv / (1.0 + std::exp(margin)));
        dscore[size_t(end_chosen)] = g;
        dscore[size_t(end_rejected)] = -g;
      }
    }
    st.tokens += b.tokens();
    if (backward) state.score_backward(m, dscore);
  }
  return st;
}

RmStepResult rm_step(model::Transformer& m, model::TrainState& state, optim::DataParallel& opt,
                     const std::vector<PreferencePair>& batch, double lr, double max_grad_norm,
                     int64_t micro_batch_tokens) {
  m.zero_grads();
  RmStepResult res;
  static_cast<RmStats&>(res) = rm_loss(m, state, batch, micro_batch_tokens, /*backward=*/true);
  const optim::UpdateResult update = opt.step(lr, max_grad_norm);
  res.grad_norm = update.grad_norm;
  res.skipped = update.skipped;
  return res;
}

}  // namespace r1::train

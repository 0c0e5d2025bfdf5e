#include "train/sft.h"

#include <cmath>

#include "base/error.h"

namespace r1::train {

SftStepResult sft_step(model::Transformer& m, model::TrainState& state, AdamW& opt,
                       const std::vector<SftExample>& batch, double lr, double max_grad_norm,
                       int64_t micro_batch_tokens) {
  SftStepResult res;
  for (const auto& e : batch) {
    R1_CHECK(!e.prompt.empty() && !e.completion.empty(), "sft: an example has an empty prompt or completion");
    res.tokens += int64_t(e.completion.size());
  }
  R1_CHECK(res.tokens > 0, "sft: empty batch");
  m.zero_grads();
  for (size_t first = 0; first < batch.size();) {
    size_t last = first;
    int64_t tokens = 0;
    std::vector<std::vector<int32_t>> seqs;
    std::vector<int64_t> prompt_len;
    while (last < batch.size()) {
      const int64_t n = int64_t(batch[last].prompt.size() + batch[last].completion.size());
      if (last > first && tokens + n > micro_batch_tokens) break;
      seqs.push_back(batch[last].prompt);
      seqs.back().insert(seqs.back().end(), batch[last].completion.begin(), batch[last].completion.end());
      prompt_len.push_back(int64_t(batch[last].prompt.size()));
      tokens += n;
      ++last;
    }
    model::Batch b = model::pack_sequences(seqs);
    state.forward(m, b);
    const std::vector<float> logp = state.logp_host();
    std::vector<float> dlogp(size_t(b.tokens()), 0.0f);
    for (size_t i = 0; i < seqs.size(); ++i) {
      // Row t predicts token t+1: completion tokens are predicted from rows [prompt_len-1, len-1).
      const int64_t begin = b.cu_seqlens[i] + prompt_len[i] - 1, end = b.cu_seqlens[i + 1] - 1;
      for (int64_t t = begin; t < end; ++t) {
        res.loss -= logp[size_t(t)];
        dlogp[size_t(t)] = -1.0f / float(res.tokens);
      }
    }
    state.backward(m, dlogp);
    first = last;
  }
  res.loss /= double(res.tokens);
  ClipResult clip = clip_grad_norm(m.grads().flat, max_grad_norm);
  res.grad_norm = clip.norm;
  if (!std::isfinite(clip.norm)) {
    res.skipped = true;
  } else {
    optimizer_step(opt, m, float(lr), clip.scale);
  }
  m.zero_grads();
  return res;
}

}  // namespace r1::train

#pragma once
// rollout.exact_logprobs tests on either device (test_exact_logprobs.cpp, test_cuda_exact.cpp):
// where the sampler's and the trainer's bits part.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "base/rng.h"
#include "model/train_state.h"
#include "model/transformer.h"
#include "rollout/engine.h"
#include "tensor/device_memory.h"

namespace r1::test {

// `count` prompts of 1 + (0 .. spread - 1) random ids below `vocab`, n samples each, ids 0 ...
inline std::vector<rollout::Request> exact_requests(int count, int n, int spread, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<rollout::Request> reqs;
  for (int i = 0; i < count; ++i) {
    rollout::Request r;
    r.n = n;
    r.id = i;
    const int len = 1 + int(rng.next_u32() % uint32_t(spread));
    for (int t = 0; t < len; ++t) r.prompt.push_back(int32_t(rng.next_u32() % uint32_t(vocab)));
    reqs.push_back(r);
  }
  return reqs;
}

struct ExactGap {
  int64_t batch = 0;   // sequences whose tokens or log-prob bits differ decoded alone and all together
  int64_t packed = 0;  // sequences whose sampler log-probs differ from the trainer's forward of all, packed
  int64_t alone = 0;   // ... from the trainer's forward of the sequence alone (when asked)
  int64_t tokens = 0;  // completion tokens compared
  double max_gap = 0;  // max |sampler - packed trainer| log-prob
};

inline bool same_bits(const std::vector<float>& a, const float* b) {
  return std::memcmp(a.data(), b, a.size() * sizeof(float)) == 0;
}

// Generates reqs with gp on an engine of 64 slots, then prompt by prompt on one of 1 slot, and scores
// the completions with the trainer's forward (all packed; with each_alone, each alone too).
inline ExactGap sampler_vs_trainer(const model::Transformer& m, const std::vector<rollout::Request>& reqs,
                                   const rollout::GenerateParams& gp, int max_seq_len, bool each_alone) {
  rollout::Engine wide(m, {64, max_seq_len, 4096});
  const std::vector<rollout::Completion> all = wide.generate(reqs, gp);
  rollout::Engine narrow(m, {1, max_seq_len, 4096});
  ExactGap g;
  std::vector<std::vector<int32_t>> seqs;
  size_t f = 0;
  for (const rollout::Request& r : reqs) {
    for (const rollout::Completion& a : narrow.generate({r}, gp)) {
      const rollout::Completion& b = all[f++];
      if (a.tokens != b.tokens || a.logprobs.size() != b.logprobs.size() || !same_bits(a.logprobs, b.logprobs.data()))
        ++g.batch;
      seqs.push_back(r.prompt);
      seqs.back().insert(seqs.back().end(), b.tokens.begin(), b.tokens.end());
    }
  }
  model::TrainState state;
  const model::Batch packed = model::pack_sequences(seqs);
  const std::vector<float> logp = to_host_f32(state.forward(m, packed, gp.sampling.temperature));
  for (size_t b = 0; b < all.size(); ++b) {
    const int64_t first = int64_t(reqs[size_t(all[b].prompt_index)].prompt.size()) - 1;
    const std::vector<float>& lp = all[b].logprobs;
    const int64_t start = packed.cu_seqlens[b] + first;
    if (!same_bits(lp, logp.data() + start)) ++g.packed;
    for (size_t t = 0; t < lp.size(); ++t)
      g.max_gap = std::max(g.max_gap, std::abs(double(lp[t]) - double(logp[size_t(start) + t])));
    g.tokens += int64_t(lp.size());
    if (each_alone) {
      const std::vector<float> own = to_host_f32(state.forward(m, model::pack_sequences({seqs[b]}), gp.sampling.temperature));
      if (!same_bits(lp, own.data() + first)) ++g.alone;
    }
  }
  return g;
}

}  // namespace r1::test

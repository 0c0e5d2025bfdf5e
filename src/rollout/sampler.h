#pragma once
// Token sampling from logits: greedy, temperature, top-k, top-p, driven by one uniform number so
// that a draw depends only on (seed, prompt, sample, step) and never on the batch it ran in.
#include <cstdint>
#include <vector>

namespace r1::rollout {

struct SamplingParams {
  float temperature = 1.0f;  // 0 means greedy
  float top_p = 1.0f;        // nucleus: the smallest set of tokens whose probability reaches top_p
  int top_k = 0;             // 0: no limit
  uint64_t seed = 0;
  // Which log-prob Draw::logprob reports (recipe key grpo.sampler_logprobs): false (`tempered`), of
  // softmax(logits / temperature), before truncation: what the trainer's forward recomputes;
  // true (`sampled`), of the distribution the token was drawn from: the tempered one renormalised
  // over the top-k/top-p kept tokens (the behaviour policy an importance weight divides by).
  bool sampled_logprobs = false;
};

struct Draw {
  int32_t token;
  float logprob;  // log softmax(logits / temperature)[token] (temperature 1 when greedy), before
                  // top-k/top-p truncation (SamplingParams::sampled_logprobs: after it)
};

// The uniform in [0, 1) for (seed, prompt, sample, step): Philox on a counter, independent of batching.
double sample_uniform(uint64_t seed, int64_t prompt, int64_t sample, int64_t step);

// Throws r1::Error naming the bad value unless temperature >= 0, top_p in (0, 1], top_k >= 0.
void check_sampling(const SamplingParams& p);

// Draws one token from logits (V). Truncation keeps the top_k most probable tokens (ties by lower
// id), then the smallest prefix of them in that order whose probability reaches top_p of their mass;
// the draw is an inverse CDF over the kept tokens in id order (what a parallel prefix sum over ids
// reproduces: cuda::sample_tokens draws the same token for the same u). Untruncated draws weigh the
// row in chunks (base/sampling_math.h), as the GPU does. `scratch` is reused between calls (the
// weights of a truncated draw, each chunk's largest logit of an untruncated one).
Draw sample_token(const float* logits, int64_t V, const SamplingParams& p, double u,
                  std::vector<float>& scratch);

}  // namespace r1::rollout

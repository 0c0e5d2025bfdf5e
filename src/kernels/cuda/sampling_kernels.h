#pragma once
// The two sampling kernels behind cuda::sample_tokens (sampling.cpp): their shared arguments and
// launches. sampling_draw.cu: untruncated and greedy draws, one read of each row;
// sampling_truncated.cu: top-k and top-p. Both queue on context().stream and allocate nothing.
#include <cstdint>

namespace r1::cuda {

// sample_tokens' arguments, as the kernels take them (kernels/sampling.h says what each means).
struct SampleArgs {
  int32_t* token;
  float* logprob;
  const float* logits;
  int64_t ld;
  int V;
  float temperature, top_p;
  int top_k;
  uint64_t seed;
  const uint64_t* stream;
  const int32_t* step;
  const int32_t* logit_row;
  const int32_t* active;
  bool sampled_logprobs;
};

// Threads of one block of the untruncated draw; a row takes 1, 2 or 4 such blocks (a cluster).
constexpr int kDrawBlock = 512;

// Untruncated and greedy draws of R rows, `ctas` blocks a row (1, 2 or 4: the same bits).
void launch_draw(const SampleArgs& p, int64_t R, int ctas);
// Top-k / top-p draws of R rows, one block a row.
void launch_truncated(const SampleArgs& p, int64_t R);

}  // namespace r1::cuda

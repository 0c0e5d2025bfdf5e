#pragma once
// Token sampling on the GPU: the draw of rollout::sample_token (the same weights by the same float
// operations for untruncated draws; the same kept set and inverse CDF in id order; the same Philox
// uniform), one row of logits per sequence, without copying logits to the host.
// Plain C++ interface, so callers need no CUDA headers. CUDA builds only; the CPU reference is
// rollout::sample_token, and tests/test_cuda_sampling.cpp holds the two to the same draws.
#include <cstdint>

namespace r1::cuda {

struct SampleConfig {
  float temperature = 1.0f;  // 0: greedy
  float top_p = 1.0f;
  int top_k = 0;  // 0: no limit
  uint64_t seed = 0;
  bool sampled_logprobs = false;  // the log-prob of the truncated, renormalised distribution (rollout::SamplingParams)
};

// One draw per row r (0 <= r < R) from row (logit_row ? logit_row[r] : r) of logits (rows of V f32,
// row stride ld floats; ld 0 makes every row read the same logits): u = sample_uniform(seed, prompt,
// sample, step) with the Philox counter hi = stream[r] (uint32(prompt) << 32 | uint32(sample)) and
// step = step[r]; token[r] and logprob[r] are what rollout::sample_token gives for the same logits
// and u. Rows with active && active[r] == 0 are skipped (outputs untouched). Device pointers; queued
// on context().stream; no allocation, no host synchronisation and no scratch, so it can be captured
// in a CUDA graph. V < 2^23.
void sample_tokens(int32_t* token, float* logprob, const float* logits, int64_t ld, int64_t R, int64_t V,
                   const SampleConfig& cfg, const uint64_t* stream, const int32_t* step,
                   const int32_t* logit_row, const int32_t* active);
// Blocks a row's draw takes: 0 (the default) for untruncated and greedy draws clusters of 4 blocks
// while they fit one wave at one block an SM, else of 2 while they fit at two an SM, else 1; one
// block for truncated draws. 1, 2 or 4 force it for untruncated draws. The draws are the same bits
// either way (tests, benchmarks' A/B).
void set_sampling_blocks_per_row(int n);
// The blocks a row's draw takes for R rows under cfg (the setting above applied).
int sampling_blocks_per_row(int64_t R, const SampleConfig& cfg);

}  // namespace r1::cuda

// cuda::sample_tokens: its checks, and the kernel and the blocks a row each draw takes
// (sampling_draw.cu: untruncated and greedy; sampling_truncated.cu: top-k and top-p).
#include "kernels/sampling.h"

#include <climits>

#include "device/cuda_check.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/cuda/sampling_kernels.h"

namespace r1::cuda {

namespace {

int g_blocks_per_row = 0;  // set_sampling_blocks_per_row

bool untruncated(const SampleConfig& cfg, int64_t V) {
  return cfg.temperature == 0.0f || ((cfg.top_k == 0 || (V > 0 && cfg.top_k >= V)) && cfg.top_p >= 1.0f);
}

}  // namespace

// Untruncated and greedy draws: clusters of 4 blocks while they fit one wave at one block an SM,
// else of 2 while they fit at two blocks an SM, else one block; truncated ones: one block. (H100,
// 0.5B rows of 151,936 ids: at 64 rows 2 blocks a row drew in 37 us where 4 took 46, and at 128
// rows in 49 where one block took 56; docs/CUDA.md, stop 59.) V: top_k >= V truncates nothing (0:
// unknown, so top_k > 0 truncates).
int sampling_blocks_per_row(int64_t R, const SampleConfig& cfg, int64_t V) {
  if (!untruncated(cfg, V)) return 1;
  if (g_blocks_per_row > 0) return g_blocks_per_row;
  const int64_t sms = context().sm_count;
  return 4 * R <= sms ? 4 : 2 * R <= 2 * sms ? 2 : 1;
}

void sample_tokens(int32_t* token, float* logprob, const float* logits, int64_t ld, int64_t R, int64_t V,
                   const SampleConfig& cfg, const uint64_t* stream, const int32_t* step,
                   const int32_t* logit_row, const int32_t* active) {
  if (R == 0) return;
  if (R < 0 || R > INT_MAX / 4) throw_error("sample_tokens: row count out of range");
  if (V <= 0 || V >= (int64_t(1) << 23)) throw_error("sample_tokens: vocabulary size must be in [1, 2^23)");
  if (!(cfg.temperature >= 0 && cfg.top_p > 0 && cfg.top_p <= 1 && cfg.top_k >= 0))
    throw_error("sample_tokens: temperature must be >= 0, top_p in (0, 1], top_k >= 0");
  const SampleArgs p{token,     logprob,  logits, ld,   int(V),    cfg.temperature, cfg.top_p,
                     cfg.top_k, cfg.seed, stream, step, logit_row, active,          cfg.sampled_logprobs};
  if (untruncated(cfg, V)) {
    launch_draw(p, R, sampling_blocks_per_row(R, cfg, V));
  } else {
    launch_truncated(p, R);
  }
}

void set_sampling_blocks_per_row(int n) { g_blocks_per_row = n == 1 || n == 2 || n == 4 ? n : 0; }

int sampling_blocks_per_row(int64_t R, const SampleConfig& cfg) { return sampling_blocks_per_row(R, cfg, 0); }

}  // namespace r1::cuda

// The split policy and the merge of split partials for the attention over the paged cache
// (decode_split.h), and the workspace it needs (attention_cached_workspace).
#include "kernels/cuda/decode_split.h"

#include <algorithm>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/decode_attention_mma.h"

namespace r1::cuda {

namespace {

constexpr int kMaxSplits = 64;
constexpr int kFillBlocksPerSm = 4;  // split until the grid has this many blocks per SM
constexpr int kMergeThreads = 128;
constexpr int kMergeRows = kMergeThreads / 32;  // one warp per (token, head) row

// out row (token, head) = sum over splits of 2^lse_s o_s / sum of 2^lse_s, one warp per row.
template <typename T>
__global__ void __launch_bounds__(kMergeThreads)
decode_merge_kernel(T* __restrict__ out, const float* __restrict__ part, int64_t rows, int HDv, int S) {
  __shared__ float w_s[kMergeRows][kMaxSplits];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row = int64_t(blockIdx.x) * kMergeRows + warp;
  if (row >= rows) return;  // warp-uniform; no block barriers below
  const float* lse = part + int64_t(S) * rows * HDv;
  float M = -INFINITY;
  for (int s = lane; s < S; s += 32) M = fmaxf(M, lse[s * rows + row]);
  M = warp_reduce(M, MaxOp{});
  float den = 0.0f;
  for (int s = lane; s < S; s += 32) {
    const float l = lse[s * rows + row];
    const float w = l == -INFINITY ? 0.0f : exp2f(l - M);  // empty splits wrote no o
    w_s[warp][s] = w;
    den += w;
  }
  den = warp_reduce(den, SumOp{});
  __syncwarp();
  const float inv = 1.0f / den;
  for (int d = lane; d < HDv; d += 32) {
    float o = 0.0f;
    // The loads are unconditional (an empty split's o is in the workspace, unwritten, and never
    // used), so the unrolled loop has several in flight.
#pragma unroll 8
    for (int s = 0; s < S; ++s) {
      const float w = w_s[warp][s], x = part[(s * rows + row) * HDv + d];
      if (w > 0.0f) o += w * x;
    }
    out[row * HDv + d] = from_f32<T>(o * inv);
  }
}

template <typename T>
void merge_t(T* out, const float* part, int64_t rows, int64_t HDv, int64_t S) {
  if (!part) return;
  const unsigned grid = unsigned((rows + kMergeRows - 1) / kMergeRows);
  decode_merge_kernel<T><<<grid, kMergeThreads, 0, context().stream>>>(out, part, rows, int(HDv), int(S));
  CUDA_CHECK_LAUNCH();
}

}  // namespace

int64_t splits_for(int64_t blocks, int64_t L, int64_t min_keys) {
  const int64_t want = (int64_t(kFillBlocksPerSm) * context().sm_count + blocks - 1) / blocks;
  return std::max<int64_t>(1, std::min({want, (L + min_keys - 1) / min_keys, int64_t(kMaxSplits)}));
}

// A grid of blocks * S blocks, `resident` at a time on each SM, takes ceil(blocks * S / (resident *
// SMs)) waves, each 1/S as long (every split reads 1/S of the keys); the fewest splits on a tie.
int64_t best_splits(int64_t blocks, int64_t L, int64_t resident, int64_t min_keys) {
  const int64_t most = splits_for(blocks, L, min_keys), cap = std::max<int64_t>(1, resident) * context().sm_count;
  int64_t best = 1, best_waves = (blocks + cap - 1) / cap;  // cost waves / S: the fraction best_waves / best
  for (int64_t s = 2; s <= most; ++s) {
    const int64_t waves = (blocks * s + cap - 1) / cap;
    if (waves * best < best_waves * s) best = s, best_waves = waves;
  }
  return best;
}

void merge_splits(float* out, const float* part, int64_t rows, int64_t HDv, int64_t S) {
  merge_t(out, part, rows, HDv, S);
}

void merge_splits(__nv_bfloat16* out, const float* part, int64_t rows, int64_t HDv, int64_t S) {
  merge_t(out, part, rows, HDv, S);
}

int64_t attention_cached_workspace(int64_t T, int64_t NH, int64_t HDv, int64_t L) {
  if (T <= 0 || NH <= 0) return 0;
  // The batch-invariant split decode (decode_exact.cu) takes its splits whatever the grid.
  if (exact_attention_split(HDv, HDv)) return flash::decode_exact_workspace(T, NH, HDv, L);
  const int64_t S = splits_for(T, L);  // the most any kernel gets: its grid has at least T blocks
  return S > 1 ? S * T * NH * (HDv + 1) : 0;
}

}  // namespace r1::cuda

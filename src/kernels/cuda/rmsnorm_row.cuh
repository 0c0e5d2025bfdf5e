#pragma once
// One row's RMSNorm forward, as a block computes it: the op's kernel (rmsnorm.cu) and the kernels
// that end in a norm (linear_norm.cu) share it, so their outputs are the same bits.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/cuda_common.cuh"

namespace r1::cuda {

// V elements per step and thread (the partition of the row's sum); PACKED: each step one vector load
// (16-byte aligned rows), else V element loads (the same sums, for rows that are not aligned).
template <int V, bool PACKED, typename T>
__device__ __forceinline__ void load_step(float (&r)[V], const T* p) {
  if constexpr (PACKED) {
    load_vec<V>(r, p);
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) r[k] = to_f32(p[k]);
  }
}

// o (C) = x * r * weight with r = 1 / sqrt(mean(x^2) + eps), by the whole block (thread t takes the
// steps at t V, (t + blockDim) V, ...); rstd (nullable) gets r. A thread reads only the elements of
// x it owns, so x may be what the same threads just wrote.
template <int V, bool PACKED, typename T>
__device__ __forceinline__ void rmsnorm_row(T* o, float* rstd, const T* x, const T* weight, int64_t C, float eps) {
  float ss = 0.0f;
  for (int64_t c = threadIdx.x * int64_t(V); c < C; c += int64_t(blockDim.x) * V) {
    float xv[V];
    load_step<V, PACKED>(xv, x + c);
#pragma unroll
    for (int k = 0; k < V; ++k) ss += xv[k] * xv[k];
  }
  ss = block_reduce(ss, SumOp{}, 0.0f);
  const float r = 1.0f / sqrtf(ss / float(C) + eps);
  for (int64_t c = threadIdx.x * int64_t(V); c < C; c += int64_t(blockDim.x) * V) {
    float xv[V], wv[V];
    load_step<V, PACKED>(xv, x + c);
    load_step<V, PACKED>(wv, weight + c);
#pragma unroll
    for (int k = 0; k < V; ++k) xv[k] = xv[k] * r * wv[k];
    if constexpr (PACKED) {
      store_vec<V>(o + c, xv);
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) o[c + k] = from_f32<T>(xv[k]);
    }
  }
  if (rstd && threadIdx.x == 0) *rstd = r;
}

// Threads per row: about one pack per thread, a warp at least, 1024 at most.
inline int row_threads(int64_t packs) { return int(std::clamp<int64_t>((packs + 31) / 32 * 32, 32, 1024)); }

}  // namespace r1::cuda

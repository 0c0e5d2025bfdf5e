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

// The pieces of a row's norm, each defined once: a step's sum of squares, the block's scale
// r = 1 / sqrt(mean(x^2) + eps), and a step's output x * r * weight.
template <int V>
__device__ __forceinline__ void add_squares(float& ss, const float (&xv)[V]) {
#pragma unroll
  for (int k = 0; k < V; ++k) ss += xv[k] * xv[k];
}
// By the whole block (every thread calls it, with the sum of its own steps).
__device__ __forceinline__ float rms_scale(float ss, int64_t C, float eps) {
  ss = block_reduce(ss, SumOp{}, 0.0f);
  return 1.0f / sqrtf(ss / float(C) + eps);
}
template <int V>
__device__ __forceinline__ void scale_step(float (&xv)[V], float r, const float (&wv)[V]) {
#pragma unroll
  for (int k = 0; k < V; ++k) xv[k] = xv[k] * r * wv[k];
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
    add_squares<V>(ss, xv);
  }
  const float r = rms_scale(ss, C, eps);
  for (int64_t c = threadIdx.x * int64_t(V); c < C; c += int64_t(blockDim.x) * V) {
    float xv[V], wv[V];
    load_step<V, PACKED>(xv, x + c);
    load_step<V, PACKED>(wv, weight + c);
    scale_step<V>(xv, r, wv);
    if constexpr (PACKED) {
      store_vec<V>(o + c, xv);
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) o[c + k] = from_f32<T>(xv[k]);
    }
  }
  if (rstd && threadIdx.x == 0) *rstd = r;
}

// The same row where each thread holds at most one step in registers (C <= blockDim V): thread t's
// step t V is xv, with the weight's wv (mine: t V < C). The same sums in the same order as
// rmsnorm_row, so the same bits, with no reload of x.
template <int V, typename T>
__device__ __forceinline__ void rmsnorm_held(T* o, float (&xv)[V], const float (&wv)[V], bool mine, int64_t C,
                                             float eps) {
  float ss = 0.0f;
  if (mine) add_squares<V>(ss, xv);
  const float r = rms_scale(ss, C, eps);
  if (!mine) return;
  scale_step<V>(xv, r, wv);
  store_vec<V>(o + threadIdx.x * int64_t(V), xv);
}

// Threads per row: about one pack per thread, a warp at least, 1024 at most.
inline int row_threads(int64_t packs) { return int(std::clamp<int64_t>((packs + 31) / 32 * 32, 32, 1024)); }

}  // namespace r1::cuda

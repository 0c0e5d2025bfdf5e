#pragma once
// Shared by the .cu files: launch sizing, warp/block reductions, the f32/bf16 element helpers and
// 16-byte packed loads. Internal to the backend.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "base/bf16.h"
#include "kernels/cuda/cublas_check.h"
#include "kernels/cuda/cuda_context.h"

namespace r1::cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements: enough to fill the chip, never more than needed.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t want = (n + threads - 1) / threads;
  const int64_t cap = int64_t(context().sm_count) * 32;
  return unsigned(std::max<int64_t>(1, std::min(want, cap)));
}

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};

template <typename T, typename Op>
__device__ inline T warp_reduce(T v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Reduction over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// result. Safe to call repeatedly: it waits for the previous call's readers before reusing memory.
template <typename T, typename Op>
__device__ inline T block_reduce(T v, Op op, T identity) {
  __shared__ T partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_reduce(v, op);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < nwarps ? partial[lane] : identity;
  return warp_reduce(v, op);
}

// ---- element types: host pointers (float, r1::bf16) to device ones (float, __nv_bfloat16) ----

inline float* dp(float* p) { return p; }
inline const float* dp(const float* p) { return p; }
inline __nv_bfloat16* dp(bf16* p) { return reinterpret_cast<__nv_bfloat16*>(p); }
inline const __nv_bfloat16* dp(const bf16* p) { return reinterpret_cast<const __nv_bfloat16*>(p); }

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Elements of T in one 16-byte access.
template <typename T>
constexpr int kVec = int(16 / sizeof(T));

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// A machine word of B bytes, for packed accesses.
template <int B>
struct Word;
template <>
struct Word<16> { using type = uint4; };
template <>
struct Word<8> { using type = uint2; };
template <>
struct Word<4> { using type = uint32_t; };

// V consecutive elements at p as floats: one access when V * sizeof(T) is 4, 8 or 16 bytes (p must
// then be aligned to that size), element by element otherwise.
template <int V, typename T>
__device__ __forceinline__ void load_vec(float (&r)[V], const T* p) {
  constexpr int B = V * int(sizeof(T));
  if constexpr (V > 1 && (B == 16 || B == 8 || B == 4)) {
    using W = typename Word<B>::type;
    const W u = *reinterpret_cast<const W*>(p);
    T e[V];
    memcpy(e, &u, B);
#pragma unroll
    for (int i = 0; i < V; ++i) r[i] = to_f32(e[i]);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) r[i] = to_f32(p[i]);
  }
}

template <int V, typename T>
__device__ __forceinline__ void store_vec(T* p, const float (&r)[V]) {
  constexpr int B = V * int(sizeof(T));
  if constexpr (V > 1 && (B == 16 || B == 8 || B == 4)) {
    using W = typename Word<B>::type;
    T e[V];
#pragma unroll
    for (int i = 0; i < V; ++i) e[i] = from_f32<T>(r[i]);
    W u;
    memcpy(&u, e, B);
    *reinterpret_cast<W*>(p) = u;
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) p[i] = from_f32<T>(r[i]);
  }
}

// Elementwise maps over n elements. F has `template <int V> __device__ void apply(int64_t i) const`
// that handles elements [i, i + V). Full packs of V go through the grid-stride loop, the n % V tail
// element by element (V <= 8 < threads in the grid).
template <int V, typename F>
__global__ void packed_map_kernel(F f, int64_t n) {
  const int64_t packs = n / V, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  for (int64_t p = tid; p < packs; p += stride) f.template apply<V>(p * V);
  if (V > 1 && tid < n - packs * V) f.template apply<1>(packs * V + tid);
}

// Runs f with 16-byte packs of T when `aligned` (every pointer f touches is 16-byte aligned).
template <typename T, typename F>
void launch_packed_map(const F& f, int64_t n, bool aligned) {
  if (n == 0) return;
  constexpr int V = kVec<T>;
  if (aligned) {
    packed_map_kernel<V><<<grid_for(n / V + 1), kThreads, 0, context().stream>>>(f, n);
  } else {
    packed_map_kernel<1><<<grid_for(n), kThreads, 0, context().stream>>>(f, n);
  }
  CUDA_CHECK_LAUNCH();
}

// The paged KV cache's pool row of row j of sequence `slot` (cuda_ops.h: row j % BS of block
// block_table[slot * MB + j / BS]).
__device__ __forceinline__ int64_t paged_row(const int32_t* block_table, int32_t slot, int64_t j, int64_t BS,
                                             int64_t MB) {
  return int64_t(block_table[int64_t(slot) * MB + j / BS]) * BS + j % BS;
}

}  // namespace r1::cuda

#pragma once
// What the decode GEMM's two kernels share (decode_gemm.cu: mma.sync and cp.async, with the plans
// and the launch; decode_gemm_tma.cu: TMA and wgmma): the tile's shape, the launch parameters, the
// fused end of every plan (reduce_and_store) and the TMA kernel's entry. Internal to the backend.
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/cuda_internal.h"

namespace r1::cuda::decode_gemm {

using bfloat = __nv_bfloat16;

constexpr int kBM = 64, kBK = 64;  // rows of a tile, K per stage
// A block's columns, 16 per "warp": the mma.sync kernel's warps (4..8), the TMA kernel's 16-column
// groups (4..16; its block is always one consumer warpgroup and a producer warp).
constexpr int kMinWarps = 4, kMaxWarps = 8, kMaxTmaWarps = 16;
constexpr int kMaxSplits = 8;      // a portable cluster
constexpr int block_n(int warps) { return 16 * warps; }
constexpr int partial_ld(int warps) { return block_n(warps) + 4; }  // fp32 partial row, 16-byte aligned

struct Segment {
  const bfloat* w = nullptr;
  const bfloat* bias = nullptr;
  const bfloat* residual = nullptr;
  bfloat* out = nullptr;
  int N = 0;
  int tile0 = 0;  // its first column tile in the grid's y
};

struct Params {
  const bfloat* x = nullptr;
  int M = 0, K = 0;
  int count = 0;  // segments
  Segment seg[kMaxDecodeSegments];
  const bfloat* norm = nullptr;  // kNorm: the RMSNorm's weight (K)
  float eps = 0.0f;
};

// out = v + bias + residual, rounded once; residual may be out (each element read, then written, by
// one thread).
__device__ inline void store(const Segment& sg, int64_t row, int64_t col, float v) {
  if (sg.bias) v += __bfloat162float(sg.bias[col]);
  if (sg.residual) v += __bfloat162float(sg.residual[row + col]);
  sg.out[row + col] = __float2bfloat16_rn(v);
}
__device__ inline bool aligned8(const void* q) { return (reinterpret_cast<uintptr_t>(q) & 7) == 0; }
__device__ inline void add4(float (&v)[4], const bfloat* q) {
  const uint2 u = *reinterpret_cast<const uint2*>(q);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
  v[0] += a.x, v[1] += a.y, v[2] += b.x, v[3] += b.y;
}
// Columns col .. col + n - 1 (n <= 4) of a row: one 8-byte store (and loads) where all four are in
// the tile and aligned, else element by element; the same sums and rounding either way.
__device__ inline void store4(const Segment& sg, int64_t row, int64_t col, float (&v)[4], int n) {
  bfloat* o = sg.out + row + col;
  if (n == 4 && aligned8(o) && (!sg.bias || aligned8(sg.bias + col)) && (!sg.residual || aligned8(sg.residual + row + col))) {
    if (sg.bias) add4(v, sg.bias + col);
    if (sg.residual) add4(v, sg.residual + row + col);
    __nv_bfloat162 lo = __floats2bfloat162_rn(v[0], v[1]), hi = __floats2bfloat162_rn(v[2], v[3]);
    uint2 u;
    u.x = *reinterpret_cast<uint32_t*>(&lo);
    u.y = *reinterpret_cast<uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(o) = u;
    return;
  }
  for (int e = 0; e < n; ++e) store(sg, row, col + e, v[e]);
}

// a (bf16 pair) * b (bf16 pair), each product rounded to bf16 once.
__device__ inline uint32_t mul_bf16x2(uint32_t a, uint32_t b) {
  __nv_bfloat162 r = __hmul2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
  return *reinterpret_cast<uint32_t*>(&r);
}
__device__ inline float sum_squares_bf16x2(uint32_t a) {
  const float2 f = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&a));
  return f.x * f.x + f.y * f.y;
}

// kNorm: a warp's partial sums of squares of x's rows 16 w + g and 16 w + g + 8 (lane (g, t) holds
// its columns' share), summed over the four lanes of a row and left in part_sq.
__device__ inline void store_row_squares(float* part_sq, const float (&sq)[2], int w, int g, int t) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float v = sq[h];
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    v += __shfl_xor_sync(0xffffffffu, v, 2);
    if (t == 0) part_sq[w * 16 + g + 8 * h] = v;
  }
}

// The kernel of (warps, fusion) from a family of kernels: of(W, kNorm, kSwiglu), each an
// integral constant, returns kernel<W, kNorm, kSwiglu> for W in [kMinWarps, kMax]. fusion = kNorm +
// 2 kSwiglu; with kEvenSwiglu, SwiGLU needs an even W (nullptr otherwise).
template <int kMax, bool kEvenSwiglu, int kW = kMinWarps, typename Of>
auto kernel_of_family(int warps, int fusion, Of of) {
  using K = decltype(of(std::integral_constant<int, kMinWarps>{}, std::false_type{}, std::false_type{}));
  if constexpr (kW < kMax) {
    if (warps != kW) return kernel_of_family<kMax, kEvenSwiglu, kW + 1>(warps, fusion, of);
  }
  constexpr std::integral_constant<int, kW> w{};
  switch (fusion) {
    case 0: return of(w, std::false_type{}, std::false_type{});
    case 1: return of(w, std::true_type{}, std::false_type{});
    default:
      if constexpr (!kEvenSwiglu || kW % 2 == 0) {
        return fusion == 2 ? of(w, std::false_type{}, std::true_type{}) : of(w, std::true_type{}, std::true_type{});
      } else {
        return K(nullptr);
      }
  }
}

// The end of every plan, once each block's fp32 partial tile (rows kLdp floats apart; kNorm: and
// its rows' partial sums of squares) is in its shared memory: a barrier (the cluster's, with a
// split), then this block's share of the tile's rows, summed over the splits' partials in split
// order (distributed shared memory), finished (1 / rms, SwiGLU, bias, residual) and stored. With a
// split, the last barrier keeps every block's shared memory alive until all have read it.
template <int kOutN, int kLdp, int kThreads, bool kNorm, bool kSwiglu>
__device__ void reduce_and_store(const Params& p, const Segment& sg, float* part, float* part_sq, int tid, int m0,
                                 int n0, int rows, int cols, int splits) {
  namespace cg = cooperative_groups;
  if (splits > 1) cg::this_cluster().sync();
  else __syncthreads();
  auto partial = [&](float* at, int k) {
    return splits > 1 ? cg::this_cluster().map_shared_rank(at, k) : at;
  };
  const int q = splits > 1 ? int(cg::this_cluster().block_rank()) : 0;
  const int r0 = rows * q / splits, r1 = rows * (q + 1) / splits;
  for (int i = tid; i < (r1 - r0) * (kOutN / 4); i += kThreads) {
    const int r = r0 + i / (kOutN / 4), c = (i % (kOutN / 4)) * 4;
    if (c >= cols) continue;
    // Split 0's partial, then the others' added in split order (no 0 + x: a -0 stays -0).
    float4 sum = *reinterpret_cast<const float4*>(partial(part + r * kLdp + c, 0)), up = sum;
    if (kSwiglu) up = *reinterpret_cast<const float4*>(partial(part + r * kLdp + kOutN + c, 0));
    float ss = kNorm ? *partial(part_sq + r, 0) : 0.0f;
    for (int k = 1; k < splits; ++k) {
      const float4 v = *reinterpret_cast<const float4*>(partial(part + r * kLdp + c, k));
      sum.x += v.x, sum.y += v.y, sum.z += v.z, sum.w += v.w;
      if (kSwiglu) {
        const float4 u = *reinterpret_cast<const float4*>(partial(part + r * kLdp + kOutN + c, k));
        up.x += u.x, up.y += u.y, up.z += u.z, up.w += u.w;
      }
      if (kNorm) ss += *partial(part_sq + r, k);
    }
    // The RMSNorm's 1 / rms, as rmsnorm_forward computes it.
    const float rr = kNorm ? 1.0f / sqrtf(ss / float(p.K) + p.eps) : 1.0f;
    const int64_t row = int64_t(m0 + r) * sg.N;
    float v[4] = {rr * sum.x, rr * sum.y, rr * sum.z, rr * sum.w};
    if (kSwiglu) {  // gate and up each rounded to bf16, as the packed SwiGLU reads them
      const float u4[4] = {up.x, up.y, up.z, up.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float gate = __bfloat162float(__float2bfloat16_rn(v[e]));
        const float upv = __bfloat162float(__float2bfloat16_rn(rr * u4[e]));
        v[e] = gate / (1.0f + expf(-gate)) * upv;
      }
    }
    store4(sg, row, n0 + c, v, min(4, cols - c));  // SwiGLU's segment has no bias or residual
  }
  if (splits > 1) cg::this_cluster().sync();
}

// How many clusters of each (warps, splits) run at once: [warps][splits], 0 where they do not fit.
struct Clusters {
  int n[kMaxTmaWarps + 1][kMaxSplits + 1] = {};
};

// How many clusters of `splits` blocks (threads each, smem bytes of dynamic shared memory) of a
// kernel of one block an SM run at once (decode_gemm.cu).
int active_clusters(const void* kernel, int threads, size_t smem, int splits);

// The TMA kernel (decode_gemm_tma.cu). Its shared-memory limit raised for every (warps, fusion)
// and its clusters counted (before the first launch), and the launch of a plan whose grid, cluster
// and stream are in lc.
Clusters tma_prepare();
void tma_launch(cudaLaunchConfig_t lc, const Params& p, const DecodeProduct* products, int warps,
                const DecodeFusion& fusion);

}  // namespace r1::cuda::decode_gemm

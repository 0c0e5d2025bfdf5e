// A decode step's output projection and the RMSNorm that reads its result, in two launches where
// cuBLASLt and the norm took two or three: out = x @ W^T (+ bias) + residual, normed = rmsnorm(out).
//
// The product runs with K split S ways (2 by default) as one strided-batched cuBLASLt GEMM into fp32
// partials (gemm_split_k: S times the output tiles, so a product of a few rows reaches more SMs),
// and one block per row then sums the partials in split order, adds bias and residual, rounds out
// once, and runs the norm's row (rmsnorm_row.cuh: the same bits as rmsnorm_forward on out). This
// replaces, per projection, the norm's launch (o_proj) or the norm's and cuBLASLt's own split-K
// reduction (down_proj). Deterministic: the split and the order of the adds are fixed by the shape.
// Not batch-invariant (cuBLASLt's algorithm for the slices depends on the rows): the exact forward
// declines it, as it declines every decode fusion.
#include <algorithm>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_context.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/profiler.h"
#include "kernels/cuda/rmsnorm_row.cuh"

namespace r1::cuda {

namespace {

int g_splits = 0;  // set_linear_norm_splits: -1 off, 0 the rule below, S > 0 fixed

constexpr int kV = kVec<__nv_bfloat16>;  // 8 columns a step
constexpr int kMaxSplits = 8;

// The split of K: two slices, 16-byte aligned (IC a multiple of 16), else none (it declines). On an
// H100 (docs/CUDA.md, stop 60) two beat 1, 4 and 8 at 0.5B, 1.5B and 7B, 64 and 256 rows; one
// slice lost to cuBLASLt's own product and the norm's launch, and more slices cost the finish more
// reads than the product gains. A rule by the tiles a wave holds (6-8 slices at 64 rows) lost too.
int rule_splits(int64_t IC) { return IC % (2 * kV) == 0 ? 2 : 0; }

// 8 floats from 32-byte aligned p.
__device__ __forceinline__ void load8(float (&r)[8], const float* p) {
  const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
  r[0] = a.x, r[1] = a.y, r[2] = a.z, r[3] = a.w, r[4] = b.x, r[5] = b.y, r[6] = b.z, r[7] = b.w;
}

template <int V>
__global__ void __launch_bounds__(1024) linear_norm_finish_kernel(__nv_bfloat16* out, __nv_bfloat16* normed,
                                                                  const float* partials, int splits, int64_t plane,
                                                                  const __nv_bfloat16* bias,
                                                                  const __nv_bfloat16* residual,
                                                                  const __nv_bfloat16* norm_weight, int64_t C,
                                                                  float eps) {
  const int64_t n = blockIdx.x;
  __nv_bfloat16* o = out + n * C;
  for (int64_t c = threadIdx.x * int64_t(V); c < C; c += int64_t(blockDim.x) * V) {
    const float* p = partials + n * C + c;
    float acc[V];
    load8(acc, p);
    for (int s = 1; s < splits; ++s) {
      float v[V];
      load8(v, p + s * plane);
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] += v[k];
    }
    if (bias) {
      float b[V];
      load_vec<V>(b, bias + c);
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] += b[k];
    }
    if (residual) {
      float r[V];
      load_vec<V>(r, residual + n * C + c);
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] += r[k];
    }
    store_vec<V>(o + c, acc);
  }
  rmsnorm_row<V, true>(normed + n * C, nullptr, o, norm_weight, C, eps);
}

}  // namespace

void set_linear_norm_splits(int splits) { g_splits = std::clamp(splits, -1, kMaxSplits); }

int linear_norm_splits(int64_t N, int64_t IC, int64_t OC) {
  if (g_splits < 0 || N < 1 || N > kLinearNormMaxRows || IC < 1 || OC < 1 || OC % kV != 0 || IC % kV != 0)
    return 0;
  if (forward_order() != GemmOrder::Any || decode_gemm_on()) return 0;
  if (g_splits > 0) {
    int s = g_splits;
    while (s > 1 && IC % (int64_t(kV) * s) != 0) --s;
    return s;
  }
  return rule_splits(IC);
}

int64_t linear_norm_workspace(int64_t N, int64_t IC, int64_t OC) { return linear_norm_splits(N, IC, OC) * N * OC; }

bool linear_norm_forward(const char* op, bf16* out, bf16* normed, const bf16* x, const bf16* weight,
                         const bf16* bias, const bf16* residual, const bf16* norm_weight, float eps,
                         float* workspace, int64_t workspace_elems, int64_t N, int64_t IC, int64_t OC) {
  const int S = linear_norm_splits(N, IC, OC);
  if (S < 1 || workspace_elems < S * N * OC) return false;
  for (const void* p : {static_cast<const void*>(out), static_cast<const void*>(normed),
                        static_cast<const void*>(x), static_cast<const void*>(weight), static_cast<const void*>(bias),
                        static_cast<const void*>(residual), static_cast<const void*>(norm_weight),
                        static_cast<const void*>(workspace)})
    if (!aligned16(p)) return false;
  const ProfileScope scope(op, "bf16");
  if (!gemm_split_k(N, OC, IC, S, x, IC, weight, IC, workspace)) return false;
  linear_norm_finish_kernel<kV><<<unsigned(N), row_threads(OC / kV), 0, context().stream>>>(
      dp(out), dp(normed), workspace, S, N * OC, dp(bias), dp(residual), dp(norm_weight), OC, eps);
  CUDA_CHECK_LAUNCH();
  return true;
}

}  // namespace r1::cuda

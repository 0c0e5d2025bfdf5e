// A decode step's output projection and the RMSNorm that reads its result, in two launches where
// cuBLASLt and the norm took two or three: out = x @ W^T (+ bias) + residual, normed = rmsnorm(out).
//
// The product runs with K split S ways (2 by default) as one strided-batched cuBLASLt GEMM into fp32
// partials (gemm_split_k: S times the output tiles, so a product of a few rows reaches more SMs),
// and one block per row then sums the partials in split order, adds bias and residual, rounds out
// once, and runs the norm's row on the sums it holds (rmsnorm_row.cuh's rmsnorm_held: the same bits
// as rmsnorm_forward on out). This replaces, per projection, the norm's launch (o_proj) or the
// norm's and cuBLASLt's own split-K reduction (down_proj). Deterministic: the split and the order
// of the adds are fixed by the shape. Not batch-invariant (cuBLASLt's algorithm for the slices
// depends on the rows): the exact forward declines it, as it declines every decode fusion.
#include <algorithm>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_context.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/profiler.h"
#include "kernels/cuda/rmsnorm_row.cuh"

namespace r1::cuda {

namespace {

int g_splits = 0;       // set_linear_norm_splits: -1 off, 0 the rule below, S > 0 fixed
int g_wide_splits = 0;  // its second argument: S > 0 fixed where IC > OC (down_proj), 0 as g_splits

constexpr int kV = kVec<__nv_bfloat16>;  // 8 columns a step
constexpr int kMaxSplits = 8;

// The split of K: two slices where K halves into 16-byte-aligned slices (IC a multiple of 16), else
// K whole. On an H100 (docs/CUDA.md, stops 60 and 61) two beat 1, 3 and 4 at 0.5B, 1.5B and 7B,
// 64 and 256 rows, and 8 lost; a rule by the tiles a wave holds (6-8 slices at 64 rows) lost too.
// K whole keeps the op native on the few widths that do not halve (none of the presets).
int rule_splits(int64_t IC) { return IC % (2 * kV) == 0 ? 2 : 1; }

// 8 floats from 32-byte aligned p.
__device__ __forceinline__ void load8(float (&r)[8], const float* p) {
  const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
  r[0] = a.x, r[1] = a.y, r[2] = a.z, r[3] = a.w, r[4] = b.x, r[5] = b.y, r[6] = b.z, r[7] = b.w;
}

// One block a row, one step of kV columns a thread (OC <= 1024 kV). Every load of the row (the S
// partials, bias, residual, the norm's weight) is issued before the first add; the sum is the
// partials in split order, then bias, then residual, rounded once; the norm then reads the rounded
// sums from registers (rmsnorm_held: rmsnorm_forward's bits without reloading out). S above 4
// spills registers (only the benchmarks' fixed splits ask for it).
template <int S>
__global__ void __launch_bounds__(1024)
    linear_norm_finish_kernel(__nv_bfloat16* out, __nv_bfloat16* normed, const float* partials, int64_t plane,
                              const __nv_bfloat16* bias, const __nv_bfloat16* residual,
                              const __nv_bfloat16* norm_weight, int64_t C, float eps) {
  const int64_t n = blockIdx.x, c = threadIdx.x * int64_t(kV);
  const bool mine = c < C;
  float part[S][kV], b[kV], r[kV], w[kV], x[kV] = {};
  if (mine) {
    const float* p = partials + n * C + c;
#pragma unroll
    for (int s = 0; s < S; ++s) load8(part[s], p + s * plane);
    if (bias) load_vec<kV>(b, bias + c);
    if (residual) load_vec<kV>(r, residual + n * C + c);
    load_vec<kV>(w, norm_weight + c);
#pragma unroll
    for (int k = 0; k < kV; ++k) {
      float acc = part[0][k];
#pragma unroll
      for (int s = 1; s < S; ++s) acc += part[s][k];
      if (bias) acc += b[k];
      if (residual) acc += r[k];
      x[k] = to_f32(from_f32<__nv_bfloat16>(acc));
    }
    store_vec<kV>(out + n * C + c, x);
  }
  rmsnorm_held<kV>(normed + n * C, x, w, mine, C, eps);
}

}  // namespace

void set_linear_norm_splits(int splits, int wide_splits) {
  g_splits = std::clamp(splits, -1, kMaxSplits);
  g_wide_splits = std::clamp(wide_splits, 0, kMaxSplits);
}

int linear_norm_splits(int64_t N, int64_t IC, int64_t OC) {
  if (g_splits < 0 || N < 1 || N > kLinearNormMaxRows || IC < 1 || OC < 1 || OC % kV != 0 || IC % kV != 0 ||
      OC > kLinearNormMaxCols)
    return 0;
  if (forward_order() != GemmOrder::Any || decode_gemm_on()) return 0;
  const int fixed = IC > OC && g_wide_splits > 0 ? g_wide_splits : g_splits;
  if (fixed > 0) {
    int s = fixed;
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
  // The finish for each split (S is a template parameter, so a row's loads are all issued at once).
  static constexpr decltype(&linear_norm_finish_kernel<1>) kFinish[kMaxSplits] = {
      linear_norm_finish_kernel<1>, linear_norm_finish_kernel<2>, linear_norm_finish_kernel<3>,
      linear_norm_finish_kernel<4>, linear_norm_finish_kernel<5>, linear_norm_finish_kernel<6>,
      linear_norm_finish_kernel<7>, linear_norm_finish_kernel<8>};
  kFinish[S - 1]<<<unsigned(N), row_threads(OC / kV), 0, context().stream>>>(
      dp(out), dp(normed), workspace, N * OC, dp(bias), dp(residual), dp(norm_weight), OC, eps);
  CUDA_CHECK_LAUNCH();
  return true;
}

}  // namespace r1::cuda

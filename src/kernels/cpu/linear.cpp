#include <algorithm>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"

namespace r1::cpu {

void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                    const float* residual, int64_t N, int64_t IC, int64_t OC) {
  if (N == 0 || OC == 0) return;
  float beta = 0.0f;
  if (residual) {  // out = residual (+ bias), then the product accumulates onto it
#pragma omp parallel for schedule(static) if (N * OC >= kParallelMin)
    for (int64_t n = 0; n < N; ++n) {
      float* o = out + n * OC;
      if (o != residual + n * OC) std::memmove(o, residual + n * OC, size_t(OC) * sizeof(float));
      if (bias)
        for (int64_t j = 0; j < OC; ++j) o[j] += bias[j];
    }
    beta = 1.0f;
  } else if (bias) {
#pragma omp parallel for schedule(static) if (N * OC >= kParallelMin)
    for (int64_t n = 0; n < N; ++n) std::memcpy(out + n * OC, bias, size_t(OC) * sizeof(float));
    beta = 1.0f;
  } else if (IC == 0) {
    std::memset(out, 0, size_t(N * OC) * sizeof(float));
  }
  if (IC == 0) return;
  // out (N, OC) = inp (N, IC) @ weight (OC, IC)^T
  sgemm_forward(false, true, N, OC, IC, 1.0f, inp, IC, weight, IC, beta, out, OC);
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC) {
  if (N == 0 || OC == 0) return;
  if (dinp && IC > 0) {
    // dinp (N, IC) += dout (N, OC) @ weight (OC, IC)
    sgemm(false, false, N, IC, OC, 1.0f, dout, OC, weight, IC, 1.0f, dinp, IC);
  }
  if (dweight && IC > 0) {
    // dweight (OC, IC) += dout^T (OC, N) @ inp (N, IC)
    sgemm(true, false, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC);
  }
  if (dbias) {
    constexpr int64_t kBlock = 256;
    const int64_t nblocks = (OC + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (N * OC >= kParallelMin)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t o0 = blk * kBlock, o1 = std::min(OC, o0 + kBlock);
      for (int64_t n = 0; n < N; ++n) {
        const float* g = dout + n * OC;
#pragma omp simd
        for (int64_t o = o0; o < o1; ++o) dbias[o] += g[o];
      }
    }
  }
}

void batched_matmul(float* out, int64_t ld_out, int64_t stride_out, const float* inp, int64_t ld_inp,
                    int64_t stride_inp, const float* w, int64_t ld_w, int64_t stride_w, bool trans_w,
                    int64_t B, int64_t M, int64_t N, int64_t K) {
  if (M == 0 || N == 0) return;
  for (int64_t b = 0; b < B; ++b) {
    float* o = out + b * stride_out;
    if (K == 0) {  // an empty sum (and BLAS wants ld >= 1 even then)
      for (int64_t i = 0; i < M; ++i) std::memset(o + i * ld_out, 0, size_t(N) * sizeof(float));
      continue;
    }
    // Each product as the linears run theirs (sgemm's tiles depend on the shape only), so a
    // batch of heads gives the bits of the same products made one by one.
    sgemm(false, trans_w, M, N, K, 1.0f, inp + b * stride_inp, ld_inp, w + b * stride_w, ld_w, 0.0f, o,
          ld_out);
  }
}

}  // namespace r1::cpu

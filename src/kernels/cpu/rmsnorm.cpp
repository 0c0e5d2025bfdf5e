#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace r1::cpu {

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C,
                     float eps) {
#pragma omp parallel for schedule(static) if (N * C >= kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    float* o = out + n * C;
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; ++c) ss += x[c] * x[c];
    const float r = 1.0f / std::sqrt(ss / float(C) + eps);
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[c] = x[c] * r * weight[c];
    rstd[n] = r;
  }
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t N, int64_t C) {
  // With xh = x * rstd and out = xh * w:
  //   dx = rstd * (dout * w - xh * mean(dout * w * xh)),  dw = sum_N dout * xh.
  if (dinp) {
#pragma omp parallel for schedule(static) if (N * C >= kParallelMin)
    for (int64_t n = 0; n < N; ++n) {
      const float* x = inp + n * C;
      const float* g = dout + n * C;
      float* dx = dinp + n * C;
      const float r = rstd[n];
      float dot = 0.0f;  // sum dout * w * xh
#pragma omp simd reduction(+ : dot)
      for (int64_t c = 0; c < C; ++c) dot += g[c] * weight[c] * x[c] * r;
      const float mean = dot / float(C);
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) dx[c] += r * (g[c] * weight[c] - x[c] * r * mean);
    }
  }
  if (dweight) {
    // Column blocks per thread, rows in order: deterministic, no per-thread buffers.
    constexpr int64_t kBlock = 256;
    const int64_t nblocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (N * C >= kParallelMin)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t c0 = blk * kBlock, c1 = std::min(C, c0 + kBlock);
      for (int64_t n = 0; n < N; ++n) {
        const float* x = inp + n * C;
        const float* g = dout + n * C;
        const float r = rstd[n];
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) dweight[c] += g[c] * x[c] * r;
      }
    }
  }
}

}  // namespace r1::cpu

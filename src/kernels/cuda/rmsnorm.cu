// RMSNorm forward and backward: one block per row; dweight through the shared column sums.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* inp, const float* weight, int64_t C,
                                       float eps) {
  const int64_t n = blockIdx.x;
  const float* x = inp + n * C;
  float* o = out + n * C;
  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ss += x[c] * x[c];
  ss = block_reduce(ss, SumOp{}, 0.0f);
  const float r = 1.0f / sqrtf(ss / float(C) + eps);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) o[c] = x[c] * r * weight[c];
  if (threadIdx.x == 0) rstd[n] = r;
}

// dx = rstd * (dout * w - xh * mean(dout * w * xh)) with xh = x * rstd.
__global__ void rmsnorm_backward_kernel(float* dinp, const float* dout, const float* inp, const float* weight,
                                        const float* rstd, int64_t C) {
  const int64_t n = blockIdx.x;
  const float* x = inp + n * C;
  const float* g = dout + n * C;
  float* dx = dinp + n * C;
  const float r = rstd[n];
  float dot = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dot += g[c] * weight[c] * x[c] * r;
  dot = block_reduce(dot, SumOp{}, 0.0f);
  const float mean = dot / float(C);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dx[c] += r * (g[c] * weight[c] - x[c] * r * mean);
}

// Threads per row: a warp for narrow rows, up to 1024 for wide ones.
int row_threads(int64_t C) {
  int t = 32;
  while (t < 1024 && t * 4 < C) t *= 2;
  return t;
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C,
                     float eps) {
  if (N == 0) return;
  rmsnorm_forward_kernel<<<unsigned(N), row_threads(C), 0, context().stream>>>(out, rstd, inp, weight, C, eps);
  CUDA_CHECK_LAUNCH();
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t N, int64_t C) {
  if (N == 0) return;
  if (dinp) {
    rmsnorm_backward_kernel<<<unsigned(N), row_threads(C), 0, context().stream>>>(dinp, dout, inp, weight, rstd,
                                                                                   C);
    CUDA_CHECK_LAUNCH();
  }
  // dweight (C) += sum_N dout * x * rstd
  if (dweight) column_sum_accumulate(dweight, dout, inp, rstd, N, C);
}

}  // namespace r1::cuda

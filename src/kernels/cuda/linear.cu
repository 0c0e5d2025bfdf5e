// Linear layers through the fp32 cuBLASLt GEMM; the bias is broadcast into out first and the GEMM
// accumulates onto it (beta = 1), the same order as the CPU reference.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

__global__ void broadcast_rows_kernel(float* out, const float* bias, int64_t N, int64_t OC) {
  const int64_t n = N * OC;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = bias[i % OC];
  }
}

}  // namespace

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                    int64_t IC, int64_t OC) {
  if (N == 0 || OC == 0) return;
  float beta = 0.0f;
  if (bias) {
    broadcast_rows_kernel<<<grid_for(N * OC), kThreads, 0, context().stream>>>(out, bias, N, OC);
    CUDA_CHECK_LAUNCH();
    beta = 1.0f;
  }
  // out (N, OC) = inp (N, IC) @ weight (OC, IC)^T  (+ out when biased; IC = 0 leaves bias or zeros)
  gemm(false, true, N, OC, IC, 1.0f, inp, IC, weight, IC, beta, out, OC);
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC) {
  if (N == 0 || OC == 0) return;
  // dinp (N, IC) += dout (N, OC) @ weight (OC, IC)
  if (dinp && IC > 0) gemm(false, false, N, IC, OC, 1.0f, dout, OC, weight, IC, 1.0f, dinp, IC);
  // dweight (OC, IC) += dout^T (OC, N) @ inp (N, IC)
  if (dweight && IC > 0) gemm(true, false, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC);
  if (dbias) column_sum_accumulate(dbias, dout, nullptr, nullptr, N, OC);
}

}  // namespace r1::cuda

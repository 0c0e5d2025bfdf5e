// Linear layers through the cuBLASLt GEMMs. f32: the bias (and the residual) are put into out first
// and the GEMM accumulates onto it (beta = 1), the same order as the CPU reference. bf16: the GEMM's
// bias epilogue adds the bias and its C input is the residual (beta = 1, D = out: one rounding, no
// separate pass); parameter gradients are f32.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/profiler.h"

namespace r1::cuda {

namespace {

// out[n, j] = (residual ? residual[n, j] + bias[j] : bias[j]); residual may be out.
template <typename T>
__global__ void broadcast_rows_kernel(T* out, const T* bias, const T* residual, int64_t N, int64_t OC) {
  const int64_t n = N * OC;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = residual ? T(float(residual[i]) + float(bias[i % OC])) : bias[i % OC];
  }
}

template <typename T>
void broadcast_rows(T* out, const T* bias, const T* residual, int64_t N, int64_t OC) {
  broadcast_rows_kernel<<<grid_for(N * OC), kThreads, 0, context().stream>>>(dp(out), dp(bias), dp(residual),
                                                                             N, OC);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                    const float* residual, int64_t N, int64_t IC, int64_t OC) {
  if (N == 0 || OC == 0) return;
  float beta = 0.0f;
  if (bias) {
    broadcast_rows(out, bias, residual, N, OC);
    beta = 1.0f;
  } else if (residual) {
    if (residual != out)
      CUDA_CHECK(cudaMemcpyAsync(out, residual, size_t(N * OC) * sizeof(float), cudaMemcpyDeviceToDevice,
                                 context().stream));
    beta = 1.0f;
  }
  // out (N, OC) = inp (N, IC) @ weight (OC, IC)^T  (+ out when biased or with a residual; IC = 0
  // leaves bias, residual or zeros)
  gemm(false, true, N, OC, IC, 1.0f, inp, IC, weight, IC, beta, out, OC, forward_order());
}

void linear_forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, const bf16* residual,
                    int64_t N, int64_t IC, int64_t OC) {
  if (N == 0 || OC == 0) return;
  // out (N, OC) = inp @ weight^T + bias (+ residual), the bias added by the epilogue, the residual
  // as C. The epilogue wants a 16-byte aligned bias (and an algorithm that takes it: in the
  // batch-invariant forward, decided for every N alike by gemm.cpp's policy); otherwise broadcast
  // first (onto the residual) and accumulate, as for f32.
  const GemmOrder order = forward_order();
  // A decode step's few rows: the decode GEMM when it is on (set_decode_gemm; never in the exact
  // forward, it is not batch-invariant).
  if (order == GemmOrder::Any && N <= kDecodeGemmMaxRows) {
    const DecodeProduct d{weight, bias, residual, out, OC};
    if (decode_linear(&d, 1, inp, N, IC)) return;
  }
  const float beta_in = residual ? 1.0f : 0.0f;
  if (bias && aligned16(bias) &&
      gemm(false, true, N, OC, IC, 1.0f, inp, IC, weight, IC, beta_in, out, OC, bias, order, residual)) {
    return;
  }
  if (bias) {
    broadcast_rows(out, bias, residual, N, OC);
    gemm(false, true, N, OC, IC, 1.0f, inp, IC, weight, IC, 1.0f, out, OC, nullptr, order);
    return;
  }
  gemm(false, true, N, OC, IC, 1.0f, inp, IC, weight, IC, beta_in, out, OC, nullptr, order, residual);
}

bool linear_forward_each(const char* op, bf16* const* outs, const bf16* inp, const bf16* const* weights,
                         const bf16* const* biases, const int64_t* OCs, int count, int64_t N, int64_t IC) {
  if (forward_order() != GemmOrder::Any || count > kMaxDecodeSegments) return false;
  DecodeProduct d[kMaxDecodeSegments];
  for (int i = 0; i < count; ++i) d[i] = {weights[i], biases[i], nullptr, outs[i], OCs[i]};
  if (!decode_linear_takes(d, count, inp, N, IC)) return false;
  const ProfileScope scope(op, "bf16");
  return decode_linear(d, count, inp, N, IC);
}

bool rmsnorm_linear_forward(const char* op, bf16* out, const bf16* x, const bf16* norm_weight, float eps,
                            const bf16* weight, const bf16* bias, const bf16* residual, int64_t N, int64_t IC,
                            int64_t OC, bool swiglu) {
  if (forward_order() != GemmOrder::Any) return false;
  const DecodeProduct d{weight, bias, residual, out, OC};
  const DecodeFusion f{norm_weight, eps, swiglu};
  if (!decode_linear_takes(&d, 1, x, N, IC, f)) return false;
  const ProfileScope scope(op, "bf16");
  return decode_linear(&d, 1, x, N, IC, f);
}

void linear_forward(float* out, const bf16* inp, const bf16* weight, int64_t N, int64_t IC, int64_t OC) {
  if (N == 0 || OC == 0) return;
  gemm(false, true, N, OC, IC, 1.0f, inp, IC, weight, IC, 0.0f, out, OC, forward_order());
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

void linear_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                     const bf16* weight, int64_t N, int64_t IC, int64_t OC) {
  if (N == 0 || OC == 0) return;
  // dinp (N, IC) bf16 += dout @ weight: fp32 accumulation, one rounding of (sum + dinp).
  if (dinp && IC > 0) gemm(false, false, N, IC, OC, 1.0f, dout, OC, weight, IC, 1.0f, dinp, IC);
  // dweight (OC, IC) f32 += dout^T @ inp
  if (dweight && IC > 0) gemm(true, false, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC);
  if (dbias) column_sum_accumulate(dbias, dout, static_cast<const bf16*>(nullptr), nullptr, N, OC);
}

}  // namespace r1::cuda

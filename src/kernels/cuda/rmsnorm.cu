// RMSNorm forward and backward (f32 or bf16 rows, fp32 math, f32 rstd and dweight): one block per
// row, 16-byte packs when the rows allow; dweight through the shared column sums.
#include <initializer_list>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/rmsnorm_row.cuh"

namespace r1::cuda {

namespace {

template <int V, bool PACKED, typename T>
__global__ void rmsnorm_forward_kernel(T* out, float* rstd, const T* inp, const T* weight, int64_t C, float eps) {
  const int64_t n = blockIdx.x;
  rmsnorm_row<V, PACKED>(out + n * C, rstd + n, inp + n * C, weight, C, eps);
}

// dx += rstd * (dout * w - xh * mean(dout * w * xh)) with xh = x * rstd.
template <int V, typename T>
__global__ void rmsnorm_backward_kernel(T* dinp, const T* dout, const T* inp, const T* weight, const float* rstd,
                                        int64_t C) {
  const int64_t n = blockIdx.x;
  const T* x = inp + n * C;
  const T* g = dout + n * C;
  T* dx = dinp + n * C;
  const float r = rstd[n];
  float dot = 0.0f;
  for (int64_t c = threadIdx.x * int64_t(V); c < C; c += int64_t(blockDim.x) * V) {
    float xv[V], gv[V], wv[V];
    load_vec<V>(xv, x + c);
    load_vec<V>(gv, g + c);
    load_vec<V>(wv, weight + c);
#pragma unroll
    for (int k = 0; k < V; ++k) dot += gv[k] * wv[k] * xv[k] * r;
  }
  dot = block_reduce(dot, SumOp{}, 0.0f);
  const float mean = dot / float(C);
  for (int64_t c = threadIdx.x * int64_t(V); c < C; c += int64_t(blockDim.x) * V) {
    float xv[V], gv[V], wv[V], dv[V];
    load_vec<V>(xv, x + c);
    load_vec<V>(gv, g + c);
    load_vec<V>(wv, weight + c);
    load_vec<V>(dv, dx + c);
#pragma unroll
    for (int k = 0; k < V; ++k) dv[k] += r * (gv[k] * wv[k] - xv[k] * r * mean);
    store_vec<V>(dx + c, dv);
  }
}

template <typename T>
bool packable(int64_t C, std::initializer_list<const void*> ps) {
  if (C % kVec<T> != 0) return false;
  for (const void* p : ps) {
    if (!aligned16(p)) return false;
  }
  return true;
}

template <typename T>
void rmsnorm_forward_t(T* out, float* rstd, const T* inp, const T* weight, int64_t N, int64_t C, float eps) {
  if (N == 0) return;
  constexpr int V = kVec<T>;
  cudaStream_t s = context().stream;
  if (packable<T>(C, {out, inp, weight})) {
    rmsnorm_forward_kernel<V, true><<<unsigned(N), row_threads(C / V), 0, s>>>(out, rstd, inp, weight, C, eps);
  } else if (forward_order() == GemmOrder::RowInvariant && C % V == 0) {
    // The batch-invariant forward: the packed path's sums whatever the rows' alignment.
    rmsnorm_forward_kernel<V, false><<<unsigned(N), row_threads(C / V), 0, s>>>(out, rstd, inp, weight, C, eps);
  } else {
    rmsnorm_forward_kernel<1, false><<<unsigned(N), row_threads(C), 0, s>>>(out, rstd, inp, weight, C, eps);
  }
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void rmsnorm_dinp_t(T* dinp, const T* dout, const T* inp, const T* weight, const float* rstd, int64_t N,
                    int64_t C) {
  constexpr int V = kVec<T>;
  cudaStream_t s = context().stream;
  if (packable<T>(C, {dinp, dout, inp, weight})) {
    rmsnorm_backward_kernel<V><<<unsigned(N), row_threads(C / V), 0, s>>>(dinp, dout, inp, weight, rstd, C);
  } else {
    rmsnorm_backward_kernel<1><<<unsigned(N), row_threads(C), 0, s>>>(dinp, dout, inp, weight, rstd, C);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C,
                     float eps) {
  rmsnorm_forward_t(out, rstd, inp, weight, N, C, eps);
}

void rmsnorm_forward(bf16* out, float* rstd, const bf16* inp, const bf16* weight, int64_t N, int64_t C,
                     float eps) {
  rmsnorm_forward_t(dp(out), rstd, dp(inp), dp(weight), N, C, eps);
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t N, int64_t C) {
  if (N == 0) return;
  if (dinp) rmsnorm_dinp_t(dinp, dout, inp, weight, rstd, N, C);
  // dweight (C) += sum_N dout * x * rstd
  if (dweight) column_sum_accumulate(dweight, dout, inp, rstd, N, C);
}

void rmsnorm_backward(bf16* dinp, float* dweight, const bf16* dout, const bf16* inp, const bf16* weight,
                      const float* rstd, int64_t N, int64_t C) {
  if (N == 0) return;
  if (dinp) rmsnorm_dinp_t(dp(dinp), dp(dout), dp(inp), dp(weight), rstd, N, C);
  if (dweight) column_sum_accumulate(dweight, dout, inp, rstd, N, C);
}

}  // namespace r1::cuda

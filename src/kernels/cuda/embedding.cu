// Embedding lookup and its scatter-add backward (f32 or bf16 activations, f32 dtable).
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

// V elements per thread: 16-byte packs when rows are aligned (C a multiple of V, aligned bases).
template <int V, typename T>
__global__ void embedding_forward_kernel(T* out, const int32_t* ids, const T* table, int64_t T_, int64_t C) {
  const int64_t cp = C / V, n = T_ * cp;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / cp, c = (i - t * cp) * V;
    float r[V];
    load_vec<V>(r, table + int64_t(ids[t]) * C + c);
    store_vec<V>(out + t * C + c, r);
  }
}

// Tokens sharing an id add into the same row; atomics keep that correct (order of adds not fixed).
template <int V, typename T>
__global__ void embedding_backward_kernel(float* dtable, const T* dout, const int32_t* ids, int64_t T_,
                                          int64_t C) {
  const int64_t cp = C / V, n = T_ * cp;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / cp, c = (i - t * cp) * V;
    float g[V];
    load_vec<V>(g, dout + t * C + c);
    float* row = dtable + int64_t(ids[t]) * C + c;
#pragma unroll
    for (int k = 0; k < V; ++k) atomicAdd(row + k, g[k]);
  }
}

template <typename T>
bool rows_packable(int64_t C, const void* a, const void* b) {
  return C % kVec<T> == 0 && aligned16(a) && aligned16(b);
}

template <typename T>
void embedding_forward_t(T* out, const int32_t* ids, const T* table, int64_t T_, int64_t C) {
  if (T_ * C == 0) return;
  constexpr int V = kVec<T>;
  if (rows_packable<T>(C, out, table)) {
    embedding_forward_kernel<V><<<grid_for(T_ * C / V), kThreads, 0, context().stream>>>(out, ids, table, T_, C);
  } else {
    embedding_forward_kernel<1><<<grid_for(T_ * C), kThreads, 0, context().stream>>>(out, ids, table, T_, C);
  }
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void embedding_backward_t(float* dtable, const T* dout, const int32_t* ids, int64_t T_, int64_t C) {
  if (T_ * C == 0) return;
  constexpr int V = kVec<T>;
  if (C % V == 0 && aligned16(dout)) {
    embedding_backward_kernel<V><<<grid_for(T_ * C / V), kThreads, 0, context().stream>>>(dtable, dout, ids, T_, C);
  } else {
    embedding_backward_kernel<1><<<grid_for(T_ * C), kThreads, 0, context().stream>>>(dtable, dout, ids, T_, C);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T, int64_t C) {
  embedding_forward_t(out, ids, table, T, C);
}
void embedding_forward(bf16* out, const int32_t* ids, const bf16* table, int64_t T, int64_t C) {
  embedding_forward_t(dp(out), ids, dp(table), T, C);
}
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t T, int64_t C) {
  embedding_backward_t(dtable, dout, ids, T, C);
}
void embedding_backward(float* dtable, const bf16* dout, const int32_t* ids, int64_t T, int64_t C) {
  embedding_backward_t(dtable, dp(dout), ids, T, C);
}

}  // namespace r1::cuda

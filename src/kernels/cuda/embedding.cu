// Embedding lookup and its scatter-add backward.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

__global__ void embedding_forward_kernel(float* out, const int32_t* ids, const float* table, int64_t T,
                                         int64_t C) {
  const int64_t n = T * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / C, c = i - t * C;
    out[i] = table[int64_t(ids[t]) * C + c];
  }
}

// Tokens sharing an id add into the same row; atomics keep that correct (order of adds not fixed).
__global__ void embedding_backward_kernel(float* dtable, const float* dout, const int32_t* ids, int64_t T,
                                          int64_t C) {
  const int64_t n = T * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / C, c = i - t * C;
    atomicAdd(dtable + int64_t(ids[t]) * C + c, dout[i]);
  }
}

}  // namespace

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T, int64_t C) {
  if (T * C == 0) return;
  embedding_forward_kernel<<<grid_for(T * C), kThreads, 0, context().stream>>>(out, ids, table, T, C);
  CUDA_CHECK_LAUNCH();
}

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t T, int64_t C) {
  if (T * C == 0) return;
  embedding_backward_kernel<<<grid_for(T * C), kThreads, 0, context().stream>>>(dtable, dout, ids, T, C);
  CUDA_CHECK_LAUNCH();
}

}  // namespace r1::cuda

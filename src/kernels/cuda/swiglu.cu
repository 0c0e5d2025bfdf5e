// SwiGLU: out = silu(gate) * up, and its backward. expf at full precision, as on the CPU.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

__global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

// silu(g) = g * sig(g); silu'(g) = sig(g) * (1 + g * (1 - sig(g))).
__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate,
                                       const float* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    const float sig = 1.0f / (1.0f + expf(-g));
    dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
    dup[i] += dout[i] * g * sig;
  }
}

}  // namespace

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  if (n == 0) return;
  swiglu_forward_kernel<<<grid_for(n), kThreads, 0, context().stream>>>(out, gate, up, n);
  CUDA_CHECK_LAUNCH();
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     int64_t n) {
  if (n == 0) return;
  swiglu_backward_kernel<<<grid_for(n), kThreads, 0, context().stream>>>(dgate, dup, dout, gate, up, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace r1::cuda

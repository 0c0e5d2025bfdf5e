// AdamW with decoupled weight decay; the same fp32 update as the CPU reference.
#include <cmath>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                             float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2,
                             float grad_scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = grad[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bc1, vhat = vi / bc2;
    param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * param[i]);
  }
}

}  // namespace

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step, float grad_scale) {
  if (n == 0) return;
  // Bias corrections on the host in double, exactly as the CPU reference computes them.
  const float bc1 = float(1.0 - std::pow(double(beta1), double(step)));
  const float bc2 = float(1.0 - std::pow(double(beta2), double(step)));
  adamw_kernel<<<grid_for(n), kThreads, 0, context().stream>>>(param, grad, m, v, n, lr, beta1, beta2, eps,
                                                               weight_decay, bc1, bc2, grad_scale);
  CUDA_CHECK_LAUNCH();
}

}  // namespace r1::cuda

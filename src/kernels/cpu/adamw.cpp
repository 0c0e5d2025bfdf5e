#include <algorithm>
#include <cmath>

#include "base/bf16.h"
#include "kernels/cpu/cpu_ops.h"

namespace r1::cpu {

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step, float grad_scale, float* copy_f32,
                  uint16_t* copy_bf16) {
  // Bias corrections in double, then the per-element update in fp32:
  //   m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (m_hat / (sqrt(v_hat) + eps) + wd p).
  const float bc1 = float(1.0 - std::pow(double(beta1), double(step)));
  const float bc2 = float(1.0 - std::pow(double(beta2), double(step)));
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bc1, vhat = vi / bc2;
    param[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + weight_decay * param[i]);
  }
  if (copy_f32) std::copy(param, param + n, copy_f32);
  if (copy_bf16) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) copy_bf16[i] = f32_to_bf16(param[i]);
  }
}

}  // namespace r1::cpu

// AdamW with decoupled weight decay; the same fp32 update as the CPU reference, fused with the
// optional rounded copy of the updated parameter (the bf16 weights a model computes with), so the
// optimizer step is one pass over param, grad, m, v (+ copy).
#include <cmath>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

// C: the copy's element type; copy may be null.
template <typename C>
struct AdamWF {
  float* param;
  const float* grad;
  float* m;
  float* v;
  C* copy;
  float lr, beta1, beta2, eps, weight_decay, bc1, bc2, grad_scale;
  template <int V>
  __device__ void apply(int64_t i) const {
    float p[V], g[V], mi[V], vi[V];
    load_vec<V>(p, param + i);
    load_vec<V>(g, grad + i);
    load_vec<V>(mi, m + i);
    load_vec<V>(vi, v + i);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float gk = g[k] * grad_scale;
      mi[k] = beta1 * mi[k] + (1.0f - beta1) * gk;
      vi[k] = beta2 * vi[k] + (1.0f - beta2) * gk * gk;
      const float mhat = mi[k] / bc1, vhat = vi[k] / bc2;
      p[k] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * p[k]);
    }
    store_vec<V>(m + i, mi);
    store_vec<V>(v + i, vi);
    store_vec<V>(param + i, p);
    if (copy) store_vec<V>(copy + i, p);
  }
};

template <typename C>
void adamw_t(float* param, const float* grad, float* m, float* v, C* copy, int64_t n, float lr, float beta1,
             float beta2, float eps, float weight_decay, int64_t step, float grad_scale) {
  if (n == 0) return;
  // Bias corrections on the host in double, exactly as the CPU reference computes them.
  const float bc1 = float(1.0 - std::pow(double(beta1), double(step)));
  const float bc2 = float(1.0 - std::pow(double(beta2), double(step)));
  // Packs of 4 floats; the copy's pack is 4 elements too (8 bytes for bf16).
  const auto copy_ok = !copy || reinterpret_cast<uintptr_t>(copy) % (4 * sizeof(C)) == 0;
  const bool al = aligned16(param) && aligned16(grad) && aligned16(m) && aligned16(v) && copy_ok;
  launch_packed_map<float>(
      AdamWF<C>{param, grad, m, v, copy, lr, beta1, beta2, eps, weight_decay, bc1, bc2, grad_scale}, n, al);
}

}  // namespace

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step, float grad_scale, float* copy) {
  adamw_t(param, grad, m, v, copy, n, lr, beta1, beta2, eps, weight_decay, step, grad_scale);
}

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step, float grad_scale, bf16* copy) {
  adamw_t(param, grad, m, v, dp(copy), n, lr, beta1, beta2, eps, weight_decay, step, grad_scale);
}

}  // namespace r1::cuda

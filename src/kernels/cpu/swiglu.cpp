#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace r1::cpu {

// Both loops are one parallel range (rows may be 1: a flat tensor).
void swiglu_forward(float* out, const float* gate, const float* up, int64_t rows, int64_t F, int64_t stride) {
#pragma omp parallel for simd collapse(2) schedule(static) if (rows * F >= kParallelMin)
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t j = 0; j < F; ++j) {
      const float g = gate[t * stride + j];
      out[t * F + j] = g / (1.0f + std::exp(-g)) * up[t * stride + j];
    }
  }
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     int64_t rows, int64_t F, int64_t stride) {
  // silu(g) = g * sig(g); silu'(g) = sig(g) * (1 + g * (1 - sig(g))).
#pragma omp parallel for simd collapse(2) schedule(static) if (rows * F >= kParallelMin)
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t j = 0; j < F; ++j) {
      const int64_t a = t * stride + j;
      const float g = gate[a], d = dout[t * F + j];
      const float sig = 1.0f / (1.0f + std::exp(-g));
      dgate[a] += d * up[a] * sig * (1.0f + g * (1.0f - sig));
      dup[a] += d * g * sig;
    }
  }
}

}  // namespace r1::cpu

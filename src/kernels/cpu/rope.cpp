#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace r1::cpu {

namespace {

// sign = +1 rotates by +angle (forward), -1 by -angle (backward: the transpose of the rotation).
void rope_apply(float* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H, int64_t HD,
                float sign) {
  const int64_t half = HD / 2;
#pragma omp parallel if (T * H * HD >= kParallelMin)
  {
    std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      const float p = float(positions[t]);
      for (int64_t j = 0; j < half; ++j) {
        const float a = p * inv_freq[j];  // fp32 angle, as HF computes it
        cs[size_t(j)] = float(std::cos(double(a)));
        sn[size_t(j)] = sign * float(std::sin(double(a)));
      }
      for (int64_t h = 0; h < H; ++h) {
        float* x1 = x + (t * H + h) * HD;
        float* x2 = x1 + half;
#pragma omp simd
        for (int64_t j = 0; j < half; ++j) {
          const float a = x1[j], b = x2[j];
          x1[j] = a * cs[size_t(j)] - b * sn[size_t(j)];
          x2[j] = b * cs[size_t(j)] + a * sn[size_t(j)];
        }
      }
    }
  }
}

}  // namespace

void rope_forward(float* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                  int64_t HD) {
  rope_apply(x, positions, inv_freq, T, H, HD, 1.0f);
}

void rope_backward(float* dx, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                   int64_t HD) {
  rope_apply(dx, positions, inv_freq, T, H, HD, -1.0f);
}

}  // namespace r1::cpu

#include <algorithm>
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

// The interleaved layout: pair j is (x_{2j}, x_{2j+1}) on the way in and (out_j, out_{j+HD/2}) on
// the way out. Forward rotates by +angle and un-interleaves; backward (sign -1) rotates the
// gradient by -angle and interleaves it back.
void rope_interleaved_apply(float* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                            int64_t HD, float sign) {
  const int64_t half = HD / 2;
#pragma omp parallel if (T * H * HD >= kParallelMin)
  {
    std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half)), row(static_cast<size_t>(HD));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      const float p = float(positions[t]);
      for (int64_t j = 0; j < half; ++j) {
        const float a = p * inv_freq[j];
        cs[size_t(j)] = float(std::cos(double(a)));
        sn[size_t(j)] = float(std::sin(double(a)));
      }
      for (int64_t h = 0; h < H; ++h) {
        float* xr = x + (t * H + h) * HD;
        std::copy(xr, xr + HD, row.begin());
        for (int64_t j = 0; j < half; ++j) {
          const float c = cs[size_t(j)], s = sn[size_t(j)];
          if (sign > 0) {
            const float a = row[size_t(2 * j)], b = row[size_t(2 * j + 1)];
            xr[j] = a * c - b * s;
            xr[j + half] = b * c + a * s;
          } else {
            const float a = row[size_t(j)], b = row[size_t(j + half)];
            xr[2 * j] = a * c + b * s;
            xr[2 * j + 1] = b * c - a * s;
          }
        }
      }
    }
  }
}

}  // namespace

void rope_interleaved_forward(float* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                              int64_t HD) {
  rope_interleaved_apply(x, positions, inv_freq, T, H, HD, 1.0f);
}

void rope_interleaved_backward(float* dx, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                               int64_t HD) {
  rope_interleaved_apply(dx, positions, inv_freq, T, H, HD, -1.0f);
}

void rope_forward(float* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                  int64_t HD) {
  rope_apply(x, positions, inv_freq, T, H, HD, 1.0f);
}

void rope_backward(float* dx, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                   int64_t HD) {
  rope_apply(dx, positions, inv_freq, T, H, HD, -1.0f);
}

}  // namespace r1::cpu

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/bf16.h"
#include "kernels/cpu/cpu_ops.h"

namespace r1::cpu {

void add(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void add_inplace(float* dst, const float* src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

void scale_inplace(float* x, float s, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void zero(float* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 64 * kParallelMin)
  for (int64_t b = 0; b < n; b += kParallelMin)
    std::memset(x + b, 0, size_t(std::min(kParallelMin, n - b)) * sizeof(float));
}

void copy(float* dst, const float* src, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 64 * kParallelMin)
  for (int64_t b = 0; b < n; b += kParallelMin)
    std::memcpy(dst + b, src + b, size_t(std::min(kParallelMin, n - b)) * sizeof(float));
}

void convert_to_bf16(uint16_t* dst, const float* src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}

double sum_squares(const float* x, int64_t n) {
  // A fixed reduction tree: blocks of kBlock elements (each summed in order), then the block sums
  // in order. An OpenMP reduction would add per-thread partial sums, whose split follows the thread
  // count, and the gradient norm (hence every clipped update) would change with the machine.
  constexpr int64_t kBlock = 1 << 14;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i1 = std::min(n, (b + 1) * kBlock);
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = b * kBlock; i < i1; ++i) acc += double(x[i]) * double(x[i]);
    partial[size_t(b)] = acc;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace r1::cpu

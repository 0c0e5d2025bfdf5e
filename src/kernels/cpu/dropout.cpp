#include "base/rng.h"
#include "kernels/cpu/cpu_ops.h"

namespace r1::cpu {

namespace {
// Each Philox call gives the words of four consecutive elements.
template <class F>
void for_each_kept(uint64_t seed, uint64_t stream, float p, int64_t n, F&& f) {
  const int64_t groups = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t g = 0; g < groups; ++g) {
    uint32_t w[4];
    Philox::generate(seed, stream, uint64_t(g), w);
    for (int64_t i = 4 * g; i < n && i < 4 * g + 4; ++i) f(i, dropout_keep(w, uint64_t(i), p));
  }
}
}  // namespace

void dropout_forward(float* out, const float* x, float p, uint64_t seed, uint64_t stream, int64_t n) {
  const float scale = 1.0f / (1.0f - p);
  for_each_kept(seed, stream, p, n, [&](int64_t i, bool keep) { out[i] = keep ? x[i] * scale : 0.0f; });
}

void dropout_backward(float* dx, const float* dout, float p, uint64_t seed, uint64_t stream, int64_t n) {
  const float scale = 1.0f / (1.0f - p);
  for_each_kept(seed, stream, p, n, [&](int64_t i, bool keep) {
    if (keep) dx[i] += dout[i] * scale;
  });
}

}  // namespace r1::cpu

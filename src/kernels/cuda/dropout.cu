// Inverted dropout with the counter-based mask of base/rng.h (dropout_keep): one thread per group of
// four elements, one Philox call per group, the same mask as the CPU's.
#include "base/rng.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

// out = keep ? x * scale : 0 (forward), or out += keep ? x * scale : 0 (backward, accumulate).
template <typename T, bool kAccumulate>
__global__ void dropout_kernel(T* out, const T* x, float p, float scale, uint64_t seed, uint64_t stream,
                               int64_t n) {
  const int64_t groups = (n + 3) / 4, step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups; g += step) {
    uint32_t w[4];
    Philox::generate(seed, stream, uint64_t(g), w);
    for (int64_t i = 4 * g; i < n && i < 4 * g + 4; ++i) {
      const float v = dropout_keep(w, uint64_t(i), p) ? to_f32(x[i]) * scale : 0.0f;
      out[i] = from_f32<T>(kAccumulate ? to_f32(out[i]) + v : v);
    }
  }
}

template <typename T, bool kAccumulate>
void dropout_t(T* out, const T* x, float p, uint64_t seed, uint64_t stream, int64_t n) {
  if (n == 0) return;
  dropout_kernel<T, kAccumulate>
      <<<grid_for((n + 3) / 4), kThreads, 0, context().stream>>>(out, x, p, 1.0f / (1.0f - p), seed, stream, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void dropout_forward(float* out, const float* x, float p, uint64_t seed, uint64_t stream, int64_t n) {
  dropout_t<float, false>(out, x, p, seed, stream, n);
}
void dropout_forward(bf16* out, const bf16* x, float p, uint64_t seed, uint64_t stream, int64_t n) {
  dropout_t<__nv_bfloat16, false>(dp(out), dp(x), p, seed, stream, n);
}
void dropout_backward(float* dx, const float* dout, float p, uint64_t seed, uint64_t stream, int64_t n) {
  dropout_t<float, true>(dx, dout, p, seed, stream, n);
}
void dropout_backward(bf16* dx, const bf16* dout, float p, uint64_t seed, uint64_t stream, int64_t n) {
  dropout_t<__nv_bfloat16, true>(dp(dx), dp(dout), p, seed, stream, n);
}

}  // namespace r1::cuda

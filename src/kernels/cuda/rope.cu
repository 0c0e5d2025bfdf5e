// Rotary embedding (HF rotate_half layout), in place, on f32 or bf16 (fp32 math). The angle is
// float(pos) * inv_freq[j] in fp32 and its cos/sin are evaluated in double and rounded, exactly as
// the CPU reference does, so the two backends agree to rounding even at positions in the tens of
// thousands. One thread per (token, j) computes that pair once and rotates it in every head.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

// sign -1 rotates by -angle (the backward).
template <typename T>
__global__ void rope_kernel(T* x, const int32_t* positions, const float* inv_freq, int64_t T_, int64_t H,
                            int64_t HD, float sign) {
  const int64_t half = HD / 2, n = T_ * half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = i % half, t = i / half;
    const float a = float(positions[t]) * inv_freq[j];
    double sd, cd;
    sincos(double(a), &sd, &cd);
    const float cs = float(cd), sn = sign * float(sd);
    T* x1 = x + t * H * HD + j;
    for (int64_t h = 0; h < H; ++h, x1 += HD) {
      const float p = to_f32(x1[0]), q = to_f32(x1[half]);
      x1[0] = from_f32<T>(p * cs - q * sn);
      x1[half] = from_f32<T>(q * cs + p * sn);
    }
  }
}

template <typename T>
void rope_apply(T* x, const int32_t* positions, const float* inv_freq, int64_t T_, int64_t H, int64_t HD,
                float sign) {
  const int64_t n = T_ * (HD / 2);
  if (n == 0 || H == 0) return;
  rope_kernel<<<grid_for(n), kThreads, 0, context().stream>>>(x, positions, inv_freq, T_, H, HD, sign);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void rope_forward(float* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                  int64_t HD) {
  rope_apply(x, positions, inv_freq, T, H, HD, 1.0f);
}
void rope_forward(bf16* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H, int64_t HD) {
  rope_apply(dp(x), positions, inv_freq, T, H, HD, 1.0f);
}
void rope_backward(float* dx, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                   int64_t HD) {
  rope_apply(dx, positions, inv_freq, T, H, HD, -1.0f);
}
void rope_backward(bf16* dx, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H, int64_t HD) {
  rope_apply(dp(dx), positions, inv_freq, T, H, HD, -1.0f);
}

}  // namespace r1::cuda

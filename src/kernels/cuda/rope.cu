// Rotary embedding (HF rotate_half layout), in place. The angle is float(pos) * inv_freq[j] in fp32
// and its cos/sin are evaluated in double and rounded, exactly as the CPU reference does, so the two
// backends agree to rounding even at positions in the tens of thousands.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

// One thread per (t, h, j < HD/2) pair; sign -1 rotates by -angle (the backward).
__global__ void rope_kernel(float* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                            int64_t HD, float sign) {
  const int64_t half = HD / 2, n = T * H * half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = i % half, th = i / half, t = th / H;
    const float a = float(positions[t]) * inv_freq[j];
    double sd, cd;
    sincos(double(a), &sd, &cd);
    const float cs = float(cd), sn = sign * float(sd);
    float* x1 = x + th * HD + j;
    float* x2 = x1 + half;
    const float p = *x1, q = *x2;
    *x1 = p * cs - q * sn;
    *x2 = q * cs + p * sn;
  }
}

void rope_apply(float* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H, int64_t HD,
                float sign) {
  const int64_t n = T * H * (HD / 2);
  if (n == 0) return;
  rope_kernel<<<grid_for(n), kThreads, 0, context().stream>>>(x, positions, inv_freq, T, H, HD, sign);
  CUDA_CHECK_LAUNCH();
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

}  // namespace r1::cuda

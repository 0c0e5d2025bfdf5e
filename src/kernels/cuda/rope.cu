// Rotary embedding (HF rotate_half layout), in place, on f32 or bf16 (fp32 math). The angle is
// float(pos) * inv_freq[j] in fp32 and its cos/sin are evaluated in double and rounded, exactly as
// the CPU reference does, so the two backends agree to rounding even at positions in the tens of
// thousands. One thread per (token, j) computes that pair once and rotates it in every head.
// The interleaved layout (DeepSeek-V3's rope_interleave) moves each pair, so it stages rows in
// shared memory: one block per token, the angles once per token, one warp per head row.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/rope.cuh"

namespace r1::cuda {

namespace {

// sign -1 rotates by -angle (the backward).
template <typename T>
__global__ void rope_kernel(T* x, const int32_t* positions, const float* inv_freq, int64_t T_, int64_t H,
                            int64_t HD, float sign) {
  const int64_t half = HD / 2, n = T_ * half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = i % half, t = i / half;
    float cs, sn;
    rope_angle(positions[t], inv_freq[j], sign, cs, sn);
    rope_rotate_heads<T>(x + t * H * HD + j, nullptr, H, HD, half, cs, sn);
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

// Shared memory of the interleaved kernel: the token's cos and sin (HD/2 each), then one staged row
// per warp, in floats; as many warps (up to 8, at most one per head) as fit the default 48 KiB.
int interleaved_warps(int64_t H, int64_t HD) {
  const int64_t fit = (48 * 1024 / 4 - HD) / HD;
  return int(std::max<int64_t>(1, std::min<int64_t>({8, H, fit})));
}

// Forward (sign +1): the pair (x_{2j}, x_{2j+1}) rotated by +angle into (x_j, x_{j+HD/2});
// backward (sign -1): the gradient of (x_j, x_{j+HD/2}) rotated by -angle back into (x_{2j},
// x_{2j+1}). As the CPU's rope_interleaved_apply, from a copy of the row (in place, a lane's
// outputs are other lanes' inputs).
template <typename T>
__global__ void rope_interleaved_kernel(T* x, const int32_t* positions, const float* inv_freq, int64_t T_,
                                        int64_t H, int64_t HD, float sign) {
  extern __shared__ float rope_smem[];
  const int64_t half = HD / 2;
  float* cs = rope_smem;
  float* sn = rope_smem + half;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  float* row = rope_smem + HD + warp * HD;
  for (int64_t t = blockIdx.x; t < T_; t += gridDim.x) {
    __syncthreads();  // the previous token's readers of cs and sn are done
    const float p = float(positions[t]);
    for (int64_t j = threadIdx.x; j < half; j += blockDim.x) {
      const float a = p * inv_freq[j];
      double sd, cd;
      sincos(double(a), &sd, &cd);
      cs[j] = float(cd);
      sn[j] = float(sd);
    }
    __syncthreads();
    for (int64_t h = warp; h < H; h += nwarps) {
      T* xr = x + (t * H + h) * HD;
      for (int64_t i = lane; i < HD; i += 32) row[i] = to_f32(xr[i]);
      __syncwarp();
      for (int64_t j = lane; j < half; j += 32) {
        const float c = cs[j], s = sn[j];
        if (sign > 0) {
          const float a = row[2 * j], b = row[2 * j + 1];
          xr[j] = from_f32<T>(a * c - b * s);
          xr[j + half] = from_f32<T>(b * c + a * s);
        } else {
          const float a = row[j], b = row[j + half];
          xr[2 * j] = from_f32<T>(a * c + b * s);
          xr[2 * j + 1] = from_f32<T>(b * c - a * s);
        }
      }
      __syncwarp();  // the row buffer is the next head's
    }
  }
}

template <typename T>
void rope_interleaved_apply(T* x, const int32_t* positions, const float* inv_freq, int64_t T_, int64_t H,
                            int64_t HD, float sign) {
  if (T_ == 0 || H == 0 || HD == 0) return;
  if (HD > kMaxInterleavedHeadDim) throw_error("rope_interleaved: head dim past kMaxInterleavedHeadDim");
  const int warps = interleaved_warps(H, HD);
  const unsigned blocks = unsigned(std::min<int64_t>(T_, int64_t(context().sm_count) * 32));
  const size_t smem = size_t(HD) * (1 + warps) * sizeof(float);
  rope_interleaved_kernel<<<blocks, 32 * warps, smem, context().stream>>>(x, positions, inv_freq, T_, H, HD,
                                                                          sign);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void rope_interleaved_forward(float* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                              int64_t HD) {
  rope_interleaved_apply(x, positions, inv_freq, T, H, HD, 1.0f);
}
void rope_interleaved_forward(bf16* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                              int64_t HD) {
  rope_interleaved_apply(dp(x), positions, inv_freq, T, H, HD, 1.0f);
}
void rope_interleaved_backward(float* dx, const int32_t* positions, const float* inv_freq, int64_t T,
                               int64_t H, int64_t HD) {
  rope_interleaved_apply(dx, positions, inv_freq, T, H, HD, -1.0f);
}
void rope_interleaved_backward(bf16* dx, const int32_t* positions, const float* inv_freq, int64_t T,
                               int64_t H, int64_t HD) {
  rope_interleaved_apply(dp(dx), positions, inv_freq, T, H, HD, -1.0f);
}

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

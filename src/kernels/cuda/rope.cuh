#pragma once
// The rotary embedding's per-pair math (HF rotate_half layout), shared by rope.cu's kernels and the
// decode's fused RoPE + cache write (rope_cache.cu), so both round exactly alike.
#include "kernels/cuda/cuda_common.cuh"

namespace r1::cuda {

// The angle float(pos) * inv_freq in fp32, its cos and sin evaluated in double and rounded (as the
// CPU reference does); sign -1 rotates by -angle (the backward).
__device__ __forceinline__ void rope_angle(int32_t pos, float inv_freq, float sign, float& cs, float& sn) {
  const float a = float(pos) * inv_freq;
  double sd, cd;
  sincos(double(a), &sd, &cd);
  cs = float(cd);
  sn = sign * float(sd);
}

// Pair j of each of H head rows (x1 = row 0's element j, rows HD apart) rotated in place:
// (x_j, x_{j+half}) -> (x_j cos - x_{j+half} sin, x_{j+half} cos + x_j sin). `copy`, when not
// null, receives the rotated pair too (rows HD apart).
// One pair (p, q) = (x_j, x_{j+half}) rotated and rounded to T: the roundings every kernel that
// rotates shares (explicit, so that no kernel that inlines this contracts it into FMAs its own way,
// and the training forward's rope and the decode's fused ones give the same bits).
template <typename T>
__device__ __forceinline__ void rope_pair(float p, float q, float cs, float sn, T& a, T& b) {
  a = from_f32<T>(__fsub_rn(__fmul_rn(p, cs), __fmul_rn(q, sn)));
  b = from_f32<T>(__fadd_rn(__fmul_rn(q, cs), __fmul_rn(p, sn)));
}

template <typename T>
__device__ __forceinline__ void rope_rotate_heads(T* x1, T* copy, int64_t H, int64_t HD, int64_t half, float cs,
                                                  float sn) {
  for (int64_t h = 0; h < H; ++h, x1 += HD) {
    T a, b;
    rope_pair<T>(to_f32(x1[0]), to_f32(x1[half]), cs, sn, a, b);
    x1[0] = a;
    x1[half] = b;
    if (copy) {
      copy[h * HD] = a;
      copy[h * HD + half] = b;
    }
  }
}

}  // namespace r1::cuda

#pragma once
// The arithmetic of an untruncated token draw, shared op for op by the CPU sampler
// (rollout::sample_token) and the GPU sampler (cuda::sample_tokens), so that both compute the same
// bits and draw the same token:
// - exp_f, an exponential made of float multiplies and adds only. A library exp (libm's double exp
//   on the CPU, CUDA's on the GPU) differs in its last bits between the two, and a double exp is
//   many times the cost of a float one on the GPU, where the sampler computes one per vocabulary
//   entry per sequence per step.
// - The row's layout: chunks of kChunk ids, each seen as kLanes lanes of kPerLane consecutive ids
//   (a warp, on the GPU), and the lane-order inclusive scan (Kogge-Stone) that adds a warp's
//   values, which the CPU repeats add for add.
// rollout/sampler.cpp states the draw that is built from them.
#include <cstdint>
#include <cstring>

#include "base/rng.h"  // R1_HOST_DEVICE

namespace r1::sampling {

constexpr int kLanes = 32;
constexpr int kPerLane = 16;
constexpr int kChunk = kLanes * kPerLane;  // ids a chunk holds

// Single float operations, each rounded once: nvcc would otherwise fuse a multiply and an add
// into one FMA (one rounding), which the CPU does not. The CPU side is compiled without
// contraction (-ffp-contract=off on the files that include this header: src/CMakeLists.txt).
R1_HOST_DEVICE inline float mul_f(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
R1_HOST_DEVICE inline float add_f(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
R1_HOST_DEVICE inline float sub_f(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
R1_HOST_DEVICE inline double add_d(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
R1_HOST_DEVICE inline double mul_d(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// e^x as a float, within about 1 ulp of the true value: x reduced by n ln 2 (Cody-Waite, in two
// parts whose products with n are exact), a degree-7 polynomial for e^r on |r| <= ln 2 / 2, then
// scaled by 2^n built from its bits. 0 for x <= -87 (results outside the normal floats, which
// weigh nothing beside the row's largest term, 1) and for -inf; NaN stays NaN; x is clamped to 88.
R1_HOST_DEVICE inline float exp_f(float x) {
  if (!(x > -87.0f)) return x != x ? x : 0.0f;
  if (x > 88.0f) x = 88.0f;
  // n = round(x / ln 2): adding 1.5 * 2^23 leaves the integer in the low mantissa bits.
  const float shifted = add_f(mul_f(x, 1.44269502f), 12582912.0f);
  const float n = sub_f(shifted, 12582912.0f);
  // r = x - n ln 2; 0.693359375 has 9 significant bits and |n| <= 127, so the first product and
  // the difference are exact.
  float r = sub_f(x, mul_f(n, 0.693359375f));
  r = add_f(r, mul_f(n, 2.12194440e-4f));
  // e^r by Horner: Taylor's coefficients 1 / k! (truncation under 1e-9 on |r| <= 0.347).
  float p = 1.98412698e-4f;  // 1 / 7!
  p = add_f(mul_f(p, r), 1.38888889e-3f);
  p = add_f(mul_f(p, r), 8.33333333e-3f);
  p = add_f(mul_f(p, r), 4.16666667e-2f);
  p = add_f(mul_f(p, r), 1.66666667e-1f);
  p = add_f(mul_f(p, r), 0.5f);
  p = add_f(mul_f(p, r), 1.0f);
  p = add_f(mul_f(p, r), 1.0f);
  // 2^n, n in [-126, 127]: the exponent field n + 127.
  const int32_t ni = int32_t(n);
  const uint32_t bits = uint32_t(ni + 127) << 23;
  float two_n;
#ifdef __CUDA_ARCH__
  two_n = __uint_as_float(bits);
#else
  std::memcpy(&two_n, &bits, sizeof(two_n));
#endif
  return mul_f(p, two_n);
}

// The weight of a logit z in a chunk whose largest logit is m, at inverse temperature inv_t:
// e^((z - m) inv_t), and 0 for a chunk of -inf logits only (m = -inf).
R1_HOST_DEVICE inline float weight_f(float z, float m, float inv_t) {
  return m == -__builtin_huge_valf() ? 0.0f : exp_f(mul_f(sub_f(z, m), inv_t));
}

// The float inverse temperature the weights use (1 for greedy draws, T = 0).
R1_HOST_DEVICE inline float inv_temperature_f(float T) { return T == 0.0f ? 1.0f : float(1.0 / double(T)); }

// Inclusive prefix sums over 32 lanes in Kogge-Stone order (offsets 1, 2, 4, 8, 16: lane l adds
// lane l - o's value from before the round), the order a warp's shuffles take. In place.
inline void lane_scan(double v[kLanes]) {
  for (int o = 1; o < kLanes; o <<= 1)
    for (int l = kLanes - 1; l >= o; --l) v[l] = v[l] + v[l - o];
}

}  // namespace r1::sampling

#pragma once
// Host helpers shared between the backend's op families. Internal to the backend.
#include <cstdint>

namespace r1::cuda {

// Row-major C (M, N) = alpha * op(A) @ op(B) + beta * C, fp32 in and out with fp32 compute
// (CUBLAS_COMPUTE_32F: no TF32, so results stay within fp32 rounding of the CPU reference).
// op(A) is (M, K): A stored (M, K) with row stride lda, or (K, M) when trans_a. Likewise B.
// Pointers may have any 4-byte alignment (views into the middle of a tensor).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// dst (C) += sum over rows n of src[n, c] * (scale ? scale[n] : 1) * (mul ? mul[n, c] : 1), src and
// mul (N, C). Deterministic (fixed order of partial sums). The dbias and dweight reductions.
void column_sum_accumulate(float* dst, const float* src, const float* mul, const float* scale, int64_t N,
                           int64_t C);

}  // namespace r1::cuda

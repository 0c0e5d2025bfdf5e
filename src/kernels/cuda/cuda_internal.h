#pragma once
// Host helpers shared between the backend's op families. Internal to the backend.
#include <cstdint>

#include "base/bf16.h"

namespace r1::cuda {

// Row-major C (M, N) = alpha * op(A) @ op(B) + beta * C through cuBLASLt with fp32 compute
// (CUBLAS_COMPUTE_32F: no TF32, so f32 results stay within fp32 rounding of the CPU reference).
// op(A) is (M, K): A stored (M, K) with row stride lda, or (K, M) when trans_a. Likewise B.
// Pointers need only element alignment (views into the middle of a tensor). The algorithm choice is
// cached per (shape, strides, dtypes, transposes, beta != 0, alignments, bias).
//
// GemmOrder::RowInvariant (a forward's product while ops::batch_invariant() is on, forward_order()):
// an algorithm that sums K in one pass per output tile, without a split of K (no workspace, no
// reduction scheme, split-K count 1 checked), so an element's bits do not depend on M or N: a
// decode step's rows and a training micro-batch's meet the same sums.
// GemmOrder::OnePass: each output tile's sum over K in one pass (no split of K reduced through a
// workspace by another kernel), the best such algorithm for the call's own shape.
enum class GemmOrder : uint8_t { Any, RowInvariant, OnePass };
GemmOrder forward_order();  // RowInvariant while ops::batch_invariant() is on, else Any
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
          GemmOrder order = GemmOrder::Any);
// bf16 operands, bf16 result (rounded once from the fp32 accumulator, beta * C included). bias
// (N, optional, 16-byte aligned) is added to every row by the GEMM's epilogue. c_in (optional, C's
// layout): the beta term reads it instead of C, and the result goes to C (cuBLASLt's C and D).
// Returns false, having done nothing, when no algorithm takes the bias epilogue for this problem
// (or K = 0 with a bias).
bool gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
          int64_t lda, const bf16* B, int64_t ldb, float beta, bf16* C, int64_t ldc, const bf16* bias = nullptr,
          GemmOrder order = GemmOrder::Any, const bf16* c_in = nullptr);
// The product x (M, K) @ W (N, K)^T with K split `splits` ways (K % splits == 0): partials (splits,
// M, N) f32, partial s = x[:, s K/S, (s + 1) K/S) @ W[:, same]^T, each summed in one pass. One
// strided-batched launch; the caller sums the partials (and gets the whole GPU for few rows). False,
// having done nothing, when cuBLASLt has no one-pass algorithm for the slices.
bool gemm_split_k(int64_t M, int64_t N, int64_t K, int splits, const bf16* x, int64_t ldx, const bf16* W,
                  int64_t ldw, float* partials);
// bf16 operands, f32 result (parameter gradients, logits tiles).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
          int64_t lda, const bf16* B, int64_t ldb, float beta, float* C, int64_t ldc,
          GemmOrder order = GemmOrder::Any);

// The bf16 linear of at most kDecodeGemmMaxRows rows (decode_gemm.cu): for each of `count` products
// of the same x (M, K), out (M, N) = x @ weight (N, K)^T (+ bias (N)) (+ residual (M, N), which may
// be out), fp32 accumulation, one rounding. Row-major and contiguous; x and the weights 16-byte
// aligned, K a multiple of 8. Deterministic (a fixed split of K, summed in a fixed order), not
// batch-invariant. Returns false, having done nothing, when the shape or alignment does not qualify.
constexpr int kMaxDecodeSegments = 3;
constexpr int64_t kDecodeGemmMaxRows = 256;
struct DecodeProduct {
  const bf16* weight = nullptr;
  const bf16* bias = nullptr;
  const bf16* residual = nullptr;
  bf16* out = nullptr;
  int64_t N = 0;
};
// What the product does around it. norm: x is first RMS-normalized with this weight (K) and eps:
// the products take bf16(x * norm) and their sums are scaled by the row's 1 / rms(x) before bias
// and residual. swiglu: one product whose weight holds [gate; up] (2N rows, no bias or residual),
// out (M, N) = silu(gate) * up with gate and up rounded to bf16 first (swiglu_packed's inputs).
struct DecodeFusion {
  const bf16* norm = nullptr;
  float eps = 0.0f;
  bool swiglu = false;
};
bool decode_linear(const DecodeProduct* products, int count, const bf16* x, int64_t M, int64_t K,
                   const DecodeFusion& fusion = {});
// Whether decode_linear takes these (it would return true).
bool decode_linear_takes(const DecodeProduct* products, int count, const bf16* x, int64_t M, int64_t K,
                         const DecodeFusion& fusion = {});
// How it runs them: blocks of 16 * warps weight rows (columns of one product's output; with SwiGLU
// half of them gate's, half up's: column_tiles of them over the products) and 1/splits of K
// (splits > 1: a cluster per tile). The mma.sync kernel's block is `warps` warps; the TMA kernel's
// is always one consumer warpgroup and a producer warp, `warps` only its width.
struct DecodeGemmPlan {
  int warps = 0;
  int splits = 0;
  int column_tiles = 0;
};
DecodeGemmPlan decode_gemm_plan(const DecodeProduct* products, int count, int64_t M, int64_t K,
                                const DecodeFusion& fusion = {});
// The widest plan the kernel in use takes: 8 (mma.sync), 16 (TMA).
int decode_gemm_max_warps();
// decode_linear with a plan of the caller's (warps in [4, decode_gemm_max_warps()], even with SwiGLU
// on the mma.sync kernel; splits in [1, 8]; column_tiles is recomputed): the tests' cover of every
// kernel and split, the benchmark's sweep.
// Returns false where decode_linear would; throws on a plan out of range.
bool decode_linear_planned(const DecodeProduct* products, int count, const bf16* x, int64_t M, int64_t K,
                           DecodeGemmPlan plan, const DecodeFusion& fusion = {});

// dst (C) += sum over rows n of src[n, c] * (scale ? scale[n] : 1) * (mul ? mul[n, c] : 1), src and
// mul (N, C). Deterministic (fixed order of partial sums). The dbias and dweight reductions.
void column_sum_accumulate(float* dst, const float* src, const float* mul, const float* scale, int64_t N,
                           int64_t C);
void column_sum_accumulate(float* dst, const bf16* src, const bf16* mul, const float* scale, int64_t N,
                           int64_t C);

}  // namespace r1::cuda

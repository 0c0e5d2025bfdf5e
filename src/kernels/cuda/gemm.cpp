// fp32 GEMM through cuBLASLt. Row-major callers, column-major library: C = op(A) op(B) row-major is
// C^T = op(B)^T op(A)^T column-major, so the operands swap and each keeps its own transpose flag.
#include <cstdint>

#include "base/error.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/cuda/cuda_internal.h"

namespace r1::cuda {

namespace {

// Largest power of two (4..256) dividing the address: cuBLASLt assumes 256-byte aligned operands
// unless told otherwise, and views into the middle of a tensor are often only 4-byte aligned.
uint32_t alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 4 && a % al != 0) al >>= 1;
  return al;
}

// Owners of the per-call descriptors, so a throwing check does not leak them.
struct Desc {
  cublasLtMatmulDesc_t d = nullptr;
  ~Desc() { if (d) cublasLtMatmulDescDestroy(d); }
};
struct Layout {
  cublasLtMatrixLayout_t l = nullptr;
  Layout(uint64_t rows, uint64_t cols, int64_t ld) {
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, rows, cols, ld));
  }
  ~Layout() { if (l) cublasLtMatrixLayoutDestroy(l); }
};
struct Pref {
  cublasLtMatmulPreference_t p = nullptr;
  ~Pref() { if (p) cublasLtMatmulPreferenceDestroy(p); }
};

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  Context& ctx = context();
  if (K == 0) {
    // Empty sum: C = beta * C. Only beta = 0 (clear) and beta = 1 (keep) occur in the backend.
    if (beta == 1.0f) return;
    R1_CHECK(beta == 0.0f, "gemm: K = 0 with beta = {} is not supported", beta);
    CUDA_CHECK(cudaMemset2DAsync(C, size_t(ldc) * sizeof(float), 0, size_t(N) * sizeof(float), size_t(M),
                                 ctx.stream));
    return;
  }
  Desc desc;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc.d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;   // B goes first
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // then A
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof(op_first)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof(op_second)));
  // Column-major shapes as stored: B^T is (N, K), or (K, N) when transposed; A^T is (K, M) or (M, K).
  Layout lb(trans_b ? K : N, trans_b ? N : K, ldb);
  Layout la(trans_a ? M : K, trans_a ? K : M, lda);
  Layout lc(N, M, ldc);

  Pref pref;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref.p));
  const uint64_t ws = ctx.workspace_bytes;
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                    sizeof(ws)));
  const uint32_t al_first = alignment(B), al_second = alignment(A), al_c = alignment(C);
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                    &al_first, sizeof(al_first)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                    &al_second, sizeof(al_second)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c,
                                                    sizeof(al_c)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c,
                                                    sizeof(al_c)));
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx.lt, desc.d, lb.l, la.l, lc.l, lc.l, pref.p, 1, &heur, &found));
  if (found == 0) {
    fail("gemm: cuBLASLt has no fp32 algorithm for M={} N={} K={} trans_a={} trans_b={} lda={} ldb={} ldc={}",
         M, N, K, trans_a, trans_b, lda, ldb, ldc);
  }
  CUBLAS_CHECK(cublasLtMatmul(ctx.lt, desc.d, &alpha, B, lb.l, A, la.l, &beta, C, lc.l, C, lc.l, &heur.algo,
                              ctx.workspace, ctx.workspace_bytes, ctx.stream));
}

}  // namespace r1::cuda

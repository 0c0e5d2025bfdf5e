#include <cblas.h>

#include <algorithm>

#include "kernels/cpu/cpu_ops.h"

namespace r1::cpu {

// OpenBLAS's threaded sgemm splits C among its threads, and the split decides which micro-kernel
// (full or edge tile) and which K blocking computes an element: the bits change with the thread
// count (measured on OpenBLAS 0.3.21, Zen: up to 80% of the elements of a 700x300x500 product
// differ between 1 and 2 threads). Here C is cut into tiles whose size depends on the shape
// only, and each tile is one single-threaded sgemm (OpenBLAS runs single-threaded inside an active
// OpenMP region, and with one OpenMP thread), so the result is the same for any thread count.

namespace {

constexpr int64_t kTileRows = 128, kTileCols = 256, kTileAlign = 16;
// Below this many multiply-adds the product is one tile called from this thread; OpenBLAS runs
// such small products single-threaded by its own size rule (4 x 65536 in stock builds).
constexpr int64_t kSmallGemm = int64_t(1) << 16;

// Splits n into equal parts of at most `most` (rounded up to kTileAlign): the part size.
int64_t tile_size(int64_t n, int64_t most) {
  const int64_t parts = (n + most - 1) / most;
  const int64_t size = (n + parts - 1) / parts;
  return std::min(n, (size + kTileAlign - 1) / kTileAlign * kTileAlign);
}

void sgemm_tile(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(M),
              int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const int64_t tm = tile_size(M, kTileRows), tn = tile_size(N, kTileCols);
  const int64_t row_tiles = (M + tm - 1) / tm, col_tiles = (N + tn - 1) / tn, tiles = row_tiles * col_tiles;
  if (tiles == 1 && M * N * K <= kSmallGemm) {
    sgemm_tile(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // A tile's result does not depend on which thread computes it, so the schedule is free.
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t i0 = (t / col_tiles) * tm, j0 = (t % col_tiles) * tn;
    const int64_t m = std::min(tm, M - i0), n = std::min(tn, N - j0);
    const float* a = trans_a ? A + i0 : A + i0 * lda;  // rows i0.. of op(A)
    const float* b = trans_b ? B + j0 * ldb : B + j0;  // columns j0.. of op(B)
    sgemm_tile(trans_a, trans_b, m, n, K, alpha, a, lda, b, ldb, beta, C + i0 * ldc + j0, ldc);
  }
}

}  // namespace r1::cpu

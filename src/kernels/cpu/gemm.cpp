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

constexpr int64_t kTileRows = 128, kTileCols = 256, kTileAlign = 16, kMinTileSide = 32, kMinTiles = 4;
// Up to this many multiply-adds a product is one tile called from this thread: OpenBLAS runs it
// single-threaded by its own size rule (M N K <= SMP_THRESHOLD_MIN 65536 x GEMM_MULTITHREAD_THRESHOLD
// 4, measured on 0.3.21: one element more and it splits), and an OpenMP region would cost more
// than such a product. Larger tiles keep at least this much work each.
constexpr int64_t kSmallGemm = int64_t(4) << 16;

// Splits n into equal parts of at most `most` (rounded up to kTileAlign): the part size.
int64_t tile_size(int64_t n, int64_t most) {
  const int64_t parts = (n + most - 1) / most;
  const int64_t size = (n + parts - 1) / parts;
  return std::min(n, (size + kTileAlign - 1) / kTileAlign * kTileAlign);
}

struct Tiling {
  int64_t rows, cols;  // tile size
  int64_t row_tiles, col_tiles;
  int64_t count() const { return row_tiles * col_tiles; }
};

Tiling tiling(int64_t M, int64_t N, int64_t K) {
  Tiling t{tile_size(M, kTileRows), tile_size(N, kTileCols), 0, 0};
  auto count = [&] { return ((M + t.rows - 1) / t.rows) * ((N + t.cols - 1) / t.cols); };
  // A small output with a long inner dimension (a weight gradient: OC x IC summed over the tokens)
  // would be one or two tiles, one thread's work: halve the longer side while each tile keeps
  // enough work, so that a few threads share it.
  while (count() < kMinTiles && std::max(t.rows, t.cols) > kMinTileSide &&
         M * N * K / count() > 2 * kSmallGemm) {
    if (t.rows >= t.cols)
      t.rows = tile_size(t.rows, t.rows / 2);
    else
      t.cols = tile_size(t.cols, t.cols / 2);
  }
  t.row_tiles = (M + t.rows - 1) / t.rows;
  t.col_tiles = (N + t.cols - 1) / t.cols;
  return t;
}

void sgemm_tile(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(M),
              int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const Tiling t = tiling(M, N, K);
  const int64_t tiles = t.count();
  if (tiles == 1 && M * N * K <= kSmallGemm) {
    sgemm_tile(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // A tile's result does not depend on which thread computes it, so the schedule is free.
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t k = 0; k < tiles; ++k) {
    const int64_t i0 = (k / t.col_tiles) * t.rows, j0 = (k % t.col_tiles) * t.cols;
    const int64_t m = std::min(t.rows, M - i0), n = std::min(t.cols, N - j0);
    const float* a = trans_a ? A + i0 : A + i0 * lda;  // rows i0.. of op(A)
    const float* b = trans_b ? B + j0 * ldb : B + j0;  // columns j0.. of op(B)
    sgemm_tile(trans_a, trans_b, m, n, K, alpha, a, lda, b, ldb, beta, C + i0 * ldc + j0, ldc);
  }
}

}  // namespace r1::cpu

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/invariance.h"

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

// Batch-invariant products (kernels/invariance.h). The tiles above depend on M, and OpenBLAS itself
// picks its code path from the whole shape: measured on 0.3.21 (Zen), a row of a 1 x 896 x 896
// product differs from the same row computed among others in 807 of 896 elements, and one of a
// 2 x 128 x 896 product from the same row of any larger M. Here every OpenBLAS call has one shape,
// kFixedRows x kFixedCols x K: C is cut into blocks at fixed multiples of the block sides, and a
// block cut short by the edge of A or B goes through zero-padded copies (the same layout and
// transposition, so OpenBLAS runs the same code on the same values). An element is then the same
// bits whatever M and N are, wherever its row and column sit. Each call runs single-threaded
// inside the OpenMP region, as in sgemm.
namespace {

constexpr int64_t kFixedRows = 32, kFixedCols = 256;

// The edge block of op(X) along its rows (op rows [r0, r0 + n), n < rows, X of `len` elements per op
// row), copied into a zero-padded block of `rows` op rows in X's own layout: (rows, len) with ld
// len, or transposed (len, rows) with ld rows. Empty when the rows leave no edge (n == rows).
struct EdgeBlock {
  std::vector<float> data;
  int64_t ld = 0;
  EdgeBlock(const float* X, int64_t ld_x, bool trans, int64_t r0, int64_t n, int64_t rows, int64_t len) {
    if (n == rows) return;
    data.assign(size_t(rows * len), 0.0f);
    if (trans) {  // X is (len, total): op row r is column r
      for (int64_t k = 0; k < len; ++k)
        std::memcpy(data.data() + k * rows, X + k * ld_x + r0, size_t(n) * sizeof(float));
      ld = rows;
    } else {
      for (int64_t r = 0; r < n; ++r)
        std::memcpy(data.data() + r * len, X + (r0 + r) * ld_x, size_t(len) * sizeof(float));
      ld = len;
    }
  }
};

}  // namespace

void sgemm_rows(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const int64_t row_blocks = (M + kFixedRows - 1) / kFixedRows, col_blocks = (N + kFixedCols - 1) / kFixedCols;
  const int64_t blocks = row_blocks * col_blocks;
  // The last row block of A and column block of B, padded once for every block that uses them.
  const int64_t i_last = (row_blocks - 1) * kFixedRows, j_last = (col_blocks - 1) * kFixedCols;
  const EdgeBlock a_edge(A, lda, trans_a, i_last, M - i_last, kFixedRows, K);
  const EdgeBlock b_edge(B, ldb, !trans_b, j_last, N - j_last, kFixedCols, K);
  // Always a region: alone on the caller's thread, OpenBLAS would thread a product this size itself.
#pragma omp parallel
  {
    std::vector<float> c_buf;
#pragma omp for schedule(dynamic, 1)
    for (int64_t k = 0; k < blocks; ++k) {
      const int64_t i0 = (k / col_blocks) * kFixedRows, j0 = (k % col_blocks) * kFixedCols;
      const int64_t m = std::min(kFixedRows, M - i0), n = std::min(kFixedCols, N - j0);
      int64_t la = lda, lb = ldb, lc = ldc;
      const float* a = trans_a ? A + i0 : A + i0 * lda;
      const float* b = trans_b ? B + j0 * ldb : B + j0;
      float* c = C + i0 * ldc + j0;
      if (m < kFixedRows) a = a_edge.data.data(), la = a_edge.ld;
      if (n < kFixedCols) b = b_edge.data.data(), lb = b_edge.ld;
      const bool edge = m < kFixedRows || n < kFixedCols;
      if (edge) {
        c_buf.assign(size_t(kFixedRows * kFixedCols), 0.0f);
        if (beta != 0.0f)
          for (int64_t r = 0; r < m; ++r) std::memcpy(c_buf.data() + r * kFixedCols, c + r * ldc, size_t(n) * sizeof(float));
        c = c_buf.data();
        lc = kFixedCols;
      }
      sgemm_tile(trans_a, trans_b, kFixedRows, kFixedCols, K, alpha, a, la, b, lb, beta, c, lc);
      if (edge)
        for (int64_t r = 0; r < m; ++r)
          std::memcpy(C + (i0 + r) * ldc + j0, c_buf.data() + r * kFixedCols, size_t(n) * sizeof(float));
    }
  }
}

void sgemm_forward(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  (ops::batch_invariant() ? sgemm_rows : sgemm)(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace r1::cpu

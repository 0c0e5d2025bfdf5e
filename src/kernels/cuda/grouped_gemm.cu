// The experts' linears as one grouped GEMM each way (ops.h grouped_linear_*): rows [offsets[e],
// offsets[e + 1]) of the grouped activations go through expert e's matrix. bf16 runs on the tensor
// cores (mma.sync m16n8k16, fp32 accumulators, operand tiles staged in shared memory and double-
// buffered with cp.async); f32 on a tiled CUDA-core kernel.
//
// offsets stay on the device: every grid is sized from R, E and the matrix sizes alone and each block
// finds its expert and rows itself, so nothing reads back, waits or allocates (graph capture works).
//
// Deterministic and batch-invariant: each output element belongs to one thread of one block (no
// atomics, no split-K), which sums the inner dimension in one fixed order: tiles of BK from the
// first, each tile in ascending k. A row of out or dinp thus depends only on that row and its
// expert's matrix, never on R or the other rows; dweight[e] on expert e's rows only, in row order.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/tensor_core.cuh"

namespace r1::cuda {

namespace {

using bfloat = __nv_bfloat16;

// One product per expert, C (M, N) (+)= A (M, K) @ B (K, N), grouped one of two ways:
// - rows: M runs over expert e's rows of A and C, B is expert e's matrix (out = inp @ W^T, and
//   dinp += dout @ W);
// - weights: K runs over expert e's rows, C is expert e's matrix (dW += dout^T @ inp).
enum class Group { rows, weights };

// Operand layouts: A (M, K) is stored K-contiguous, A(m, k) = a[m * lda + k] (AK), or M-contiguous,
// a[k * lda + m]; B (K, N) K-contiguous, B(k, n) = b[n * ldb + k] (BK), or N-contiguous, b[k * ldb + n].
template <typename T, typename TC>
struct Grouped {
  const T* a = nullptr;
  const T* b = nullptr;
  TC* c = nullptr;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t b_step = 0;  // rows: expert e's B at b + e * b_step
  int64_t c_step = 0;  // weights: expert e's C at c + e * c_step
  const int32_t* offsets = nullptr;
  int64_t E = 0, R = 0;
  int64_t M = 0, N = 0, K = 0;  // rows: M is each expert's row count; weights: K is
  bool accumulate = false;      // C += (else C =)
};

// A block's share: C's tile at (m0, n0), with A and B at the same origin.
template <typename T, typename TC>
struct Tile {
  const T* a;  // A(m0, 0)
  const T* b;  // B(0, n0)
  TC* c;       // C(m0, n0)
  int m, n;    // C's rows and columns in the tile (<= BM, BN)
  int64_t k;   // the inner length
};

// Rows grouping: expert e's row tiles take block slots e + offsets[e] / BM onward, so the slots of
// consecutive experts never overlap (floor(a / BM) + ceil(n / BM) <= floor((a + n) / BM) + 1) and
// E + R / BM slots hold them all, a grid the host sizes without reading offsets. Slots past an
// expert's last tile (at most one per expert) exit at once. Each thread tests a strided share of
// the experts for the one whose slot range holds this block: one parallel read of offsets.
template <Group G, bool AK, bool BK, int BM, int BN, typename T, typename TC>
__device__ bool find_tile(const Grouped<T, TC>& p, Tile<T, TC>& t) {
  int64_t e, start, end;
  if constexpr (G == Group::rows) {
    static_assert(AK, "rows grouping: A holds the expert's rows K-contiguous");
    __shared__ int s_expert;
    const int64_t slot = blockIdx.x;
    if (threadIdx.x == 0) s_expert = -1;
    __syncthreads();
    for (int64_t x = threadIdx.x; x < p.E; x += blockDim.x) {
      const int64_t first = x + p.offsets[x] / BM, next = x + 1 + p.offsets[x + 1] / BM;
      if (first <= slot && slot < next) s_expert = int(x);  // one expert matches
    }
    __syncthreads();
    e = s_expert;
    if (e < 0) return false;  // only with offsets[E] != R
    start = p.offsets[e] + (slot - (e + p.offsets[e] / BM)) * BM;
    end = min(int64_t(p.offsets[e + 1]), p.R);
    if (start >= end) return false;
    const int64_t n0 = int64_t(blockIdx.y) * BN;
    t.a = p.a + start * p.lda;
    t.b = p.b + e * p.b_step + (BK ? n0 * p.ldb : n0);
    t.c = p.c + start * p.ldc + n0;
    t.m = int(min(int64_t(BM), end - start));
    t.n = int(min(int64_t(BN), p.N - n0));
    t.k = p.K;
  } else {
    static_assert(!AK && !BK, "weights grouping: both operands hold the expert's rows");
    e = blockIdx.z;
    start = p.offsets[e];
    end = min(int64_t(p.offsets[e + 1]), p.R);
    if (start >= end) return false;  // an expert without rows adds nothing
    const int64_t m0 = int64_t(blockIdx.y) * BM, n0 = int64_t(blockIdx.x) * BN;
    t.a = p.a + start * p.lda + m0;
    t.b = p.b + start * p.ldb + n0;
    t.c = p.c + e * p.c_step + m0 * p.ldc + n0;
    t.m = int(min(int64_t(BM), p.M - m0));
    t.n = int(min(int64_t(BN), p.N - n0));
    t.k = end - start;
  }
  return true;
}

// Blocks of a grouped product with BM x BN tiles of C.
template <Group G, typename T, typename TC>
dim3 grid_of(const Grouped<T, TC>& p, int BM, int BN) {
  const unsigned n_tiles = unsigned((p.N + BN - 1) / BN);
  if (G == Group::rows) return dim3(unsigned(p.E + p.R / BM), n_tiles);
  return dim3(n_tiles, unsigned((p.M + BM - 1) / BM), unsigned(p.E));
}

// C's element (r, col) of the tile gets v: written, or added to what it holds (one rounding).
template <typename TC>
__device__ __forceinline__ void put(TC* c, int64_t ldc, int r, int col, float v, bool accumulate) {
  TC* dst = c + r * ldc + col;
  *dst = from_f32<TC>(accumulate ? to_f32(*dst) + v : v);
}

// ---- bf16 on the tensor cores ----

// 128 x 128 tiles of C, 32 deep; 8 warps, 2 along M by 4 along N, each 64 x 32 of C (4 x 4 mma tiles).
constexpr int kBM = 128, kBN = 128, kBK = 32;
constexpr int kMmaThreads = 256;
// bf16 row padding: stage rows of 80 or 272 bytes start 16 bytes apart modulo the 128 bytes of the
// banks, so the 8 rows one ldmatrix reads never share a bank.
constexpr int kPad = 8;

// A stage of an operand keeps its global layout: K-contiguous [MN][kBK + kPad], or MN-contiguous
// [kBK][MN + kPad] (fragments then come through ldmatrix .trans).
template <int MN, bool KMAJOR>
constexpr int stage_elems() {
  return KMAJOR ? MN * (kBK + kPad) : kBK * (MN + kPad);
}

// ROWS x COLS of a row-major matrix (row stride ld) into shared rows of COLS + kPad; entries past
// row vr or column vc are zero. VEC: 16-byte cp.async copies (src and ld 16-byte aligned, vc a
// multiple of 8); else element by element.
template <int ROWS, int COLS, bool VEC>
__device__ __forceinline__ void stage_copy(bfloat* dst, const bfloat* src, int64_t ld, int vr, int vc) {
  constexpr int LD = COLS + kPad;
  if constexpr (VEC) {
    constexpr int kChunks = COLS / 8;
    for (int i = threadIdx.x; i < ROWS * kChunks; i += kMmaThreads) {
      const int r = i / kChunks, c = (i % kChunks) * 8;
      const bool valid = r < vr && c + 8 <= vc;
      cp_async16(dst + r * LD + c, valid ? src + r * ld + c : src, valid);
    }
  } else {
    const bfloat zero = __float2bfloat16(0.0f);
    for (int i = threadIdx.x; i < ROWS * COLS; i += kMmaThreads) {
      const int r = i / COLS, c = i % COLS;
      dst[r * LD + c] = r < vr && c < vc ? src[r * ld + c] : zero;
    }
  }
}

// Queues the k-tile at k0 of A and B into one stage.
template <bool AK, bool BK, bool VEC, typename TC>
__device__ __forceinline__ void load_stage(bfloat* sA, bfloat* sB, const Tile<bfloat, TC>& t, int64_t lda,
                                           int64_t ldb, int64_t k0) {
  const int kv = int(min(int64_t(kBK), t.k - k0));
  if constexpr (AK) {
    stage_copy<kBM, kBK, VEC>(sA, t.a + k0, lda, t.m, kv);
  } else {
    stage_copy<kBK, kBM, VEC>(sA, t.a + k0 * lda, lda, kv, t.m);
  }
  if constexpr (BK) {
    stage_copy<kBN, kBK, VEC>(sB, t.b + k0, ldb, t.n, kv);
  } else {
    stage_copy<kBK, kBN, VEC>(sB, t.b + k0 * ldb, ldb, kv, t.n);
  }
}

// A's fragment for the 16 x 16 block at rows mr, k-columns ks of a stage (a0..a3: rows 0-7 and 8-15
// of k 0-7, then of k 8-15).
template <bool AK>
__device__ __forceinline__ void frag_a(uint32_t (&f)[4], const bfloat* s, int mr, int ks, int lane) {
  if constexpr (AK) {
    ldsm_x4(f, s + (mr + (lane & 15)) * (kBK + kPad) + ks + (lane >> 4) * 8);
  } else {
    ldsm_x4_t(f, s + (ks + (lane & 7) + ((lane >> 4) << 3)) * (kBM + kPad) + mr + ((lane >> 3) & 1) * 8);
  }
}

// B's fragments for two 8-column tiles at columns nc and nc + 8, k-columns ks: f[0], f[1] the first
// tile's (k 0-7, 8-15), f[2], f[3] the second's.
template <bool BK>
__device__ __forceinline__ void frag_b(uint32_t (&f)[4], const bfloat* s, int nc, int ks, int lane) {
  if constexpr (BK) {
    ldsm_x4(f, s + (nc + (lane & 7) + ((lane >> 4) << 3)) * (kBK + kPad) + ks + ((lane >> 3) & 1) * 8);
  } else {
    ldsm_x4_t(f, s + (ks + (lane & 7) + ((lane >> 3) & 1) * 8) * (kBN + kPad) + nc + (lane >> 4) * 8);
  }
}

template <Group G, bool AK, bool BK, bool VEC, typename TC>
__global__ void __launch_bounds__(kMmaThreads) grouped_mma_kernel(Grouped<bfloat, TC> p) {
  Tile<bfloat, TC> t;
  if (!find_tile<G, AK, BK, kBM, kBN>(p, t)) return;
  __shared__ __align__(16) bfloat sA[2][stage_elems<kBM, AK>()];
  __shared__ __align__(16) bfloat sB[2][stage_elems<kBN, BK>()];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

  // Double buffering, one barrier per k-tile: tile kt lands (wait, barrier), then tile kt + 1 is
  // queued into the stage every thread finished reading at kt - 1, and kt is multiplied meanwhile.
  const int64_t nk = (t.k + kBK - 1) / kBK;
  if (nk > 0) load_stage<AK, BK, VEC>(sA[0], sB[0], t, p.lda, p.ldb, 0);
  cp_async_commit();
  for (int64_t kt = 0; kt < nk; ++kt) {
    cp_async_wait<0>();
    __syncthreads();
    const int cur = int(kt & 1);
    if (kt + 1 < nk) load_stage<AK, BK, VEC>(sA[cur ^ 1], sB[cur ^ 1], t, p.lda, p.ldb, (kt + 1) * kBK);
    cp_async_commit();
#pragma unroll
    for (int ks = 0; ks < kBK; ks += 16) {
      uint32_t af[4][4], bf[2][4];
#pragma unroll
      for (int i = 0; i < 4; ++i) frag_a<AK>(af[i], sA[cur], wm + 16 * i, ks, lane);
#pragma unroll
      for (int j = 0; j < 2; ++j) frag_b<BK>(bf[j], sB[cur], wn + 16 * j, ks, lane);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
          mma(acc[i][j], af[i], bf[j >> 1][(j & 1) * 2], bf[j >> 1][(j & 1) * 2 + 1]);
    }
  }

  // Accumulator (i, j) of lane (g, q): rows 16 i + g and + 8, columns 8 j + 2 q and + 1 of the warp's part.
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = wm + 16 * i + g + 8 * h;
      if (r >= t.m) continue;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = wn + 8 * j + 2 * q;
        if (col < t.n) put(t.c, p.ldc, r, col, acc[i][j][2 * h], p.accumulate);
        if (col + 1 < t.n) put(t.c, p.ldc, r, col + 1, acc[i][j][2 * h + 1], p.accumulate);
      }
    }
}

template <Group G, bool AK, bool BK, typename TC>
void launch_mma(const Grouped<bfloat, TC>& p, bool vec) {
  const dim3 grid = grid_of<G>(p, kBM, kBN);
  if (vec) {
    grouped_mma_kernel<G, AK, BK, true><<<grid, kMmaThreads, 0, context().stream>>>(p);
  } else {
    grouped_mma_kernel<G, AK, BK, false><<<grid, kMmaThreads, 0, context().stream>>>(p);
  }
  CUDA_CHECK_LAUNCH();
}

// ---- f32 on the CUDA cores ----

// 64 x 64 tiles of C, 16 deep; 16 x 16 threads, each 4 x 4 outputs strided by 16.
constexpr int kFM = 64, kFN = 64, kFK = 16, kFThreads = 256;

template <Group G, bool AK, bool BK>
__global__ void __launch_bounds__(kFThreads) grouped_f32_kernel(Grouped<float, float> p) {
  Tile<float, float> t;
  if (!find_tile<G, AK, BK, kFM, kFN>(p, t)) return;
  __shared__ float sA[kFK][kFM + 1], sB[kFK][kFN + 1];  // [k][m], [k][n]
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < t.k; k0 += kFK) {
    const int kv = int(min(int64_t(kFK), t.k - k0));
    // Consecutive threads read along each operand's contiguous dimension.
    for (int i = threadIdx.x; i < kFM * kFK; i += kFThreads) {
      const int m = AK ? i / kFK : i % kFM, k = AK ? i % kFK : i / kFM;
      sA[k][m] = m < t.m && k < kv ? (AK ? t.a[m * p.lda + k0 + k] : t.a[(k0 + k) * p.lda + m]) : 0.0f;
    }
    for (int i = threadIdx.x; i < kFN * kFK; i += kFThreads) {
      const int n = BK ? i / kFK : i % kFN, k = BK ? i % kFK : i / kFN;
      sB[k][n] = n < t.n && k < kv ? (BK ? t.b[n * p.ldb + k0 + k] : t.b[(k0 + k) * p.ldb + n]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kFK; ++k) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = sA[k][ty + 16 * i], b[i] = sB[k][tx + 16 * i];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int r = ty + 16 * i, col = tx + 16 * j;
      if (r < t.m && col < t.n) put(t.c, p.ldc, r, col, acc[i][j], p.accumulate);
    }
}

template <Group G, bool AK, bool BK>
void launch_f32(const Grouped<float, float>& p) {
  grouped_f32_kernel<G, AK, BK><<<grid_of<G>(p, kFM, kFN), kFThreads, 0, context().stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

// ---- the three products ----

void check_sizes(const char* what, int64_t E) {
  if (E > kMaxExperts) throw_error(what);  // E is a grid dimension and each block scans the experts
}

// out (R, OUT) = inp (R, IN) @ W_e^T: A = inp (K = IN contiguous), B(k, n) = W_e[n, k].
template <typename T>
Grouped<T, T> forward_problem(T* out, const T* inp, const T* w, int64_t stride, const int32_t* offsets,
                              int64_t E, int64_t R, int64_t IN, int64_t OUT) {
  Grouped<T, T> p;
  p.a = inp, p.lda = IN;
  p.b = w, p.ldb = IN, p.b_step = stride;
  p.c = out, p.ldc = OUT;
  p.offsets = offsets, p.E = E, p.R = R, p.N = OUT, p.K = IN;
  return p;
}

// dinp (R, IN) += dout (R, OUT) @ W_e: A = dout (K = OUT contiguous), B(k, n) = W_e[k, n] (N contiguous).
template <typename T>
Grouped<T, T> dinp_problem(T* dinp, const T* dout, const T* w, int64_t stride, const int32_t* offsets,
                           int64_t E, int64_t R, int64_t IN, int64_t OUT) {
  Grouped<T, T> p;
  p.a = dout, p.lda = OUT;
  p.b = w, p.ldb = IN, p.b_step = stride;
  p.c = dinp, p.ldc = IN;
  p.offsets = offsets, p.E = E, p.R = R, p.N = IN, p.K = OUT;
  p.accumulate = true;
  return p;
}

// dW_e (OUT, IN) += dout_e^T @ inp_e: A(m, k) = dout[k, m] (M contiguous), B = inp_e (N contiguous).
template <typename T>
Grouped<T, float> dw_problem(float* dw, int64_t dstride, const T* dout, const T* inp, const int32_t* offsets,
                             int64_t E, int64_t R, int64_t IN, int64_t OUT) {
  Grouped<T, float> p;
  p.a = dout, p.lda = OUT;
  p.b = inp, p.ldb = IN;
  p.c = dw, p.ldc = IN, p.c_step = dstride;
  p.offsets = offsets, p.E = E, p.R = R, p.M = OUT, p.N = IN;
  p.accumulate = true;
  return p;
}

// 16-byte copies need every row and every matrix of an operand to start 16-byte aligned.
bool rows_aligned(const void* p, int64_t ld) { return aligned16(p) && ld % 8 == 0; }
bool stacked_aligned(const void* p, int64_t ld, int64_t stride, int64_t E) {
  return rows_aligned(p, ld) && (E == 1 || stride % 8 == 0);
}

}  // namespace

void grouped_linear_forward(float* out, const float* inp, const float* w, int64_t stride,
                            const int32_t* offsets, int64_t E, int64_t R, int64_t IN, int64_t OUT) {
  check_sizes("grouped_linear_forward: too many experts for CUDA", E);
  if (R == 0 || OUT == 0) return;
  launch_f32<Group::rows, true, true>(forward_problem(out, inp, w, stride, offsets, E, R, IN, OUT));
}

void grouped_linear_forward(bf16* out, const bf16* inp, const bf16* w, int64_t stride, const int32_t* offsets,
                            int64_t E, int64_t R, int64_t IN, int64_t OUT) {
  check_sizes("grouped_linear_forward: too many experts for CUDA", E);
  if (R == 0 || OUT == 0) return;
  const bool vec = rows_aligned(inp, IN) && stacked_aligned(w, IN, stride, E);
  launch_mma<Group::rows, true, true>(
      forward_problem(dp(out), dp(inp), dp(w), stride, offsets, E, R, IN, OUT), vec);
}

void grouped_linear_backward(float* dinp, float* dw, int64_t dstride, const float* dout, const float* inp,
                             const float* w, int64_t stride, const int32_t* offsets, int64_t E, int64_t R,
                             int64_t IN, int64_t OUT) {
  check_sizes("grouped_linear_backward: too many experts for CUDA", E);
  if (R == 0 || IN == 0 || OUT == 0) return;  // nothing to add
  if (dinp) launch_f32<Group::rows, true, false>(dinp_problem(dinp, dout, w, stride, offsets, E, R, IN, OUT));
  if (dw)
    launch_f32<Group::weights, false, false>(dw_problem(dw, dstride, dout, inp, offsets, E, R, IN, OUT));
}

void grouped_linear_backward(bf16* dinp, float* dw, int64_t dstride, const bf16* dout, const bf16* inp,
                             const bf16* w, int64_t stride, const int32_t* offsets, int64_t E, int64_t R,
                             int64_t IN, int64_t OUT) {
  check_sizes("grouped_linear_backward: too many experts for CUDA", E);
  if (R == 0 || IN == 0 || OUT == 0) return;
  if (dinp) {
    const bool vec = rows_aligned(dout, OUT) && stacked_aligned(w, IN, stride, E);
    launch_mma<Group::rows, true, false>(
        dinp_problem(dp(dinp), dp(dout), dp(w), stride, offsets, E, R, IN, OUT), vec);
  }
  if (dw) {
    const bool vec = rows_aligned(dout, OUT) && rows_aligned(inp, IN);
    launch_mma<Group::weights, false, false>(
        dw_problem(dw, dstride, dp(dout), dp(inp), offsets, E, R, IN, OUT), vec);
  }
}

}  // namespace r1::cuda

// The bf16 linear of a few rows (a decode step's projections: M = the sequences in flight), where a
// general GEMM library leaves most of the memory bandwidth unused: the weights, read once, are the
// whole cost, and a product of a 896-wide matrix has too few output tiles for 132 SMs.
//
// out_s (M, N_s) = x (M, K) @ w_s (N_s, K)^T (+ bias_s) (+ residual_s) for up to kMaxDecodeSegments
// products of the same x (q, k and v of one layer in one launch). Tensor cores (mma.sync
// m16n8k16, fp32 accumulators). A block of W warps takes all of a 64-row tile's rows and 16 W
// columns of one product (W = 4..8, so that the column tiles come close to a whole number of
// waves), and a range of K, streamed through kStages shared-memory stages with cp.async; each
// block has an SM to itself (its shared memory asks for more than half of one), so its ring is deep.
//
// When the tiles alone leave SMs idle, K is split S ways (S <= 8) over a thread-block cluster: the
// S blocks of a tile leave their fp32 partials in their own shared memory, and after one cluster
// barrier each block sums a 1/S share of the tile's rows over the S partials (distributed shared
// memory, in split order), adds bias and residual and rounds once. No global scratch, no counters,
// no last block: deterministic, the same bits every run and through a graph. The plan (W, S) comes
// from a model of each SM's bytes and the waves that the clusters take (decode_gemm_plan).
// Not batch-invariant (the plan depends on M): the exact forward (forward_order() == RowInvariant)
// keeps its cuBLASLt products.
//
// Off by default (set_decode_gemm). The first version (one 64 x 64 tile per block, a last block
// summing the split-K partials through L2) was 2-5x slower than cuBLASLt on an H100; this one takes
// 1.2-3.4x cuBLASLt's time there: its mma.sync, fed by ldmatrix from a few warps an SM, is as slow
// as cuBLASLt's whole product even with no loads (docs/CUDA.md, "The decode GEMM").
#include <cooperative_groups.h>

#include <algorithm>
#include <climits>
#include <string>

#include "base/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/hopper.cuh"
#include "kernels/cuda/tensor_core.cuh"

namespace r1::cuda {

namespace {

using bfloat = __nv_bfloat16;

constexpr int kBM = 64, kBK = 64;  // rows of a tile, K per stage
constexpr int kMinWarps = 4, kMaxWarps = 8;  // a block's columns: 16 per warp
constexpr int kMaxSplits = 8;      // a portable cluster
constexpr int kStages = 8;
constexpr int kLd = kBK + 8;       // stage row of 144 bytes: conflict-free ldmatrix

constexpr int block_n(int warps) { return 16 * warps; }
// x's rows, w's rows and one row for the RMSNorm's weights
constexpr size_t stage_elems(int warps) { return size_t(kBM + block_n(warps) + 1) * kLd; }
constexpr size_t smem_bytes(int warps) { return size_t(kStages) * stage_elems(warps) * sizeof(bfloat); }
constexpr int partial_ld(int warps) { return block_n(warps) + 4; }  // fp32 partial row, 16-byte aligned
// More than half an SM's 228 KiB, so one block runs per SM (a cluster's blocks on separate SMs,
// each with an SM's bandwidth), and no more than a block may have.
static_assert(smem_bytes(kMinWarps) > 114 * 1024 && smem_bytes(kMaxWarps) <= 227 * 1024, "one block an SM");

struct Segment {
  const bfloat* w = nullptr;
  const bfloat* bias = nullptr;
  const bfloat* residual = nullptr;
  bfloat* out = nullptr;
  int N = 0;
  int tile0 = 0;  // its first column tile in the grid's y
};

struct Params {
  const bfloat* x = nullptr;
  int M = 0, K = 0;
  int count = 0;  // segments
  Segment seg[kMaxDecodeSegments];
  const bfloat* norm = nullptr;  // kNorm: the RMSNorm's weight (K)
  float eps = 0.0f;
};

// out = v + bias + residual, rounded once; residual may be out (each element read, then written, by
// one thread).
__device__ inline void store(const Segment& sg, int64_t row, int64_t col, float v) {
  if (sg.bias) v += __bfloat162float(sg.bias[col]);
  if (sg.residual) v += __bfloat162float(sg.residual[row + col]);
  sg.out[row + col] = __float2bfloat16_rn(v);
}
__device__ inline bool aligned8(const void* q) { return (reinterpret_cast<uintptr_t>(q) & 7) == 0; }
__device__ inline void add4(float (&v)[4], const bfloat* q) {
  const uint2 u = *reinterpret_cast<const uint2*>(q);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
  v[0] += a.x, v[1] += a.y, v[2] += b.x, v[3] += b.y;
}
// Columns col .. col + n - 1 (n <= 4) of a row: one 8-byte store (and loads) where all four are in
// the tile and aligned, else element by element; the same sums and rounding either way.
__device__ inline void store4(const Segment& sg, int64_t row, int64_t col, float (&v)[4], int n) {
  bfloat* o = sg.out + row + col;
  if (n == 4 && aligned8(o) && (!sg.bias || aligned8(sg.bias + col)) && (!sg.residual || aligned8(sg.residual + row + col))) {
    if (sg.bias) add4(v, sg.bias + col);
    if (sg.residual) add4(v, sg.residual + row + col);
    __nv_bfloat162 lo = __floats2bfloat162_rn(v[0], v[1]), hi = __floats2bfloat162_rn(v[2], v[3]);
    uint2 u;
    u.x = *reinterpret_cast<uint32_t*>(&lo);
    u.y = *reinterpret_cast<uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(o) = u;
    return;
  }
  for (int e = 0; e < n; ++e) store(sg, row, col + e, v[e]);
}

// a (bf16 pair) * b (bf16 pair), each product rounded to bf16 once.
__device__ inline uint32_t mul_bf16x2(uint32_t a, uint32_t b) {
  __nv_bfloat162 r = __hmul2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
  return *reinterpret_cast<uint32_t*>(&r);
}
__device__ inline float sum_squares_bf16x2(uint32_t a) {
  const float2 f = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&a));
  return f.x * f.x + f.y * f.y;
}

// The end of every plan, once each block's fp32 partial tile (rows kLdp floats apart; kNorm: and
// its rows' partial sums of squares) is in its shared memory: a barrier (the cluster's, with a
// split), then this block's share of the tile's rows, summed over the splits' partials in split
// order (distributed shared memory), finished (1 / rms, SwiGLU, bias, residual) and stored. With a
// split, the last barrier keeps every block's shared memory alive until all have read it.
template <int kOutN, int kLdp, int kThreads, bool kNorm, bool kSwiglu>
__device__ void reduce_and_store(const Params& p, const Segment& sg, float* part, float* part_sq, int tid, int m0,
                                 int n0, int rows, int cols, int splits) {
  namespace cg = cooperative_groups;
  if (splits > 1) cg::this_cluster().sync();
  else __syncthreads();
  auto partial = [&](float* at, int k) {
    return splits > 1 ? cg::this_cluster().map_shared_rank(at, k) : at;
  };
  const int q = splits > 1 ? int(cg::this_cluster().block_rank()) : 0;
  const int r0 = rows * q / splits, r1 = rows * (q + 1) / splits;
  for (int i = tid; i < (r1 - r0) * (kOutN / 4); i += kThreads) {
    const int r = r0 + i / (kOutN / 4), c = (i % (kOutN / 4)) * 4;
    if (c >= cols) continue;
    // Split 0's partial, then the others' added in split order (no 0 + x: a -0 stays -0).
    float4 sum = *reinterpret_cast<const float4*>(partial(part + r * kLdp + c, 0)), up = sum;
    if (kSwiglu) up = *reinterpret_cast<const float4*>(partial(part + r * kLdp + kOutN + c, 0));
    float ss = kNorm ? *partial(part_sq + r, 0) : 0.0f;
    for (int k = 1; k < splits; ++k) {
      const float4 v = *reinterpret_cast<const float4*>(partial(part + r * kLdp + c, k));
      sum.x += v.x, sum.y += v.y, sum.z += v.z, sum.w += v.w;
      if (kSwiglu) {
        const float4 u = *reinterpret_cast<const float4*>(partial(part + r * kLdp + kOutN + c, k));
        up.x += u.x, up.y += u.y, up.z += u.z, up.w += u.w;
      }
      if (kNorm) ss += *partial(part_sq + r, k);
    }
    // The RMSNorm's 1 / rms, as rmsnorm_forward computes it.
    const float rr = kNorm ? 1.0f / sqrtf(ss / float(p.K) + p.eps) : 1.0f;
    const int64_t row = int64_t(m0 + r) * sg.N;
    float v[4] = {rr * sum.x, rr * sum.y, rr * sum.z, rr * sum.w};
    if (kSwiglu) {  // gate and up each rounded to bf16, as the packed SwiGLU reads them
      const float u4[4] = {up.x, up.y, up.z, up.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float gate = __bfloat162float(__float2bfloat16_rn(v[e]));
        const float upv = __bfloat162float(__float2bfloat16_rn(rr * u4[e]));
        v[e] = gate / (1.0f + expf(-gate)) * upv;
      }
    }
    store4(sg, row, n0 + c, v, min(4, cols - c));  // SwiGLU's segment has no bias or residual
  }
  if (splits > 1) cg::this_cluster().sync();
}

// Grid (row tiles, column tiles of all segments, splits); with splits > 1, clusters of (1, 1, splits).
// kNorm: x is RMS-normalized on the way in: the tensor cores take bf16(x * norm) and the row's
// 1 / rms(x) scales the sum (Σ x^2 from the same fragments). kSwiglu: one segment whose weight
// holds [gate; up] (2N rows): a block's columns are kBN / 2 of gate and the same of up, and it
// writes silu(gate) * up (N columns), gate and up each rounded to bf16 first, as the packed
// SwiGLU reads them.
template <int kWarps, bool kNorm, bool kSwiglu>
__global__ void __launch_bounds__(kWarps * 32) decode_gemm_kernel(Params p) {
  constexpr int kBN = block_n(kWarps), kThreads = kWarps * 32, kLdp = partial_ld(kWarps);
  constexpr int kOutN = kSwiglu ? kBN / 2 : kBN;  // output columns of a tile
  constexpr size_t kStageElems = stage_elems(kWarps);
  static_assert(!kSwiglu || kWarps % 2 == 0, "gate and up take half the warps each");
  static_assert(size_t(kBM) * (kLdp + 1) * sizeof(float) <= smem_bytes(kWarps), "the partial tile fits in the ring");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bfloat* smem = reinterpret_cast<bfloat*>(smem_raw);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  int si = 0;
  for (int i = 1; i < p.count; ++i) si += int(blockIdx.y) >= p.seg[i].tile0;
  const Segment sg = p.seg[si];  // by value: its fields in registers, not read from the parameters by index
  const int m0 = int(blockIdx.x) * kBM, n0 = (int(blockIdx.y) - sg.tile0) * kOutN;
  const int rows = min(kBM, p.M - m0), cols = min(kOutN, sg.N - n0);
  const int splits = int(gridDim.z), split = int(blockIdx.z);
  const int chunks = (p.K + kBK - 1) / kBK;
  const int c_begin = chunks * split / splits, n_chunks = chunks * (split + 1) / splits - c_begin;
  const bfloat* xs = p.x + int64_t(m0) * p.K;

  // Stage s: x's rows [0, kBM), w's rows [0, kBN), each kBK wide, then (kNorm) the norm's kBK
  // weights. K is a multiple of 8, so a 16-byte piece is wholly inside K or past it; past it, and
  // past the rows, it is zero-filled. Rows of x past M are not loaded at all (their 16-row pieces
  // are skipped below). A thread's pieces are the same in every stage but for k: column pc of rows
  // pr + j kRowStep (kThreads is a multiple of kBK / 8), so their addresses are worked out once
  // and a stage's loads are a few instructions (the kernel's code is fetched cold by every SM).
  constexpr int kRowStep = kThreads / (kBK / 8);
  constexpr int kWPieces = kBN / kRowStep, kXPieces = (kBM + kRowStep - 1) / kRowStep;
  static_assert(kThreads % (kBK / 8) == 0 && kBN % kRowStep == 0, "a thread's pieces: one column, whole rows");
  const int x_rows = min(kBM, (rows + 15) / 16 * 16);
  const int pc = (tid % (kBK / 8)) * 8, pr = tid / (kBK / 8);
  const bfloat* w_src[kWPieces];
  bool w_ok[kWPieces];
#pragma unroll
  for (int j = 0; j < kWPieces; ++j) {
    const int r = pr + j * kRowStep;
    const int c = kSwiglu ? r % kOutN : r;  // the output column this weight row makes
    const int64_t w_row = kSwiglu && r >= kOutN ? int64_t(sg.N) + n0 + c : int64_t(n0) + c;
    w_ok[j] = c < cols;
    w_src[j] = w_ok[j] ? sg.w + w_row * p.K + pc : sg.w;
  }
  const bfloat* x_src = xs + int64_t(pr) * p.K + pc;
  const int64_t x_step = int64_t(kRowStep) * p.K;
  auto load = [&](int chunk, int s) {
    bfloat* sx = smem + s * kStageElems;
    bfloat* sw = sx + kBM * kLd;
    const int k0 = chunk * kBK;
    const bool k_in = k0 + pc < p.K;
#pragma unroll
    for (int j = 0; j < kXPieces; ++j) {
      const int r = pr + j * kRowStep;
      if (r < x_rows) {
        const bool ok = k_in && r < rows;
        cp_async16(sx + r * kLd + pc, ok ? x_src + j * x_step + k0 : p.x, ok);
      }
    }
#pragma unroll
    for (int j = 0; j < kWPieces; ++j) {
      const bool ok = k_in && w_ok[j];
      cp_async16(sw + (pr + j * kRowStep) * kLd + pc, ok ? w_src[j] + k0 : sg.w, ok);
    }
    if (kNorm && tid < kBK / 8) {
      const bool ok = k0 + tid * 8 < p.K;
      cp_async16(sw + kBN * kLd + tid * 8, ok ? p.norm + k0 + tid * 8 : p.norm, ok);
    }
  };

  float acc[4][2][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;
  // kNorm: warp w < 4 sums the squares of x's 16-row piece w: rows g and g + 8 of it, lane (g, t)
  // its columns 2t, 2t + 1, 2t + 8, 2t + 9 of each 16.
  float sq[2] = {0.0f, 0.0f};
  const int m_tiles = (rows + 15) / 16;  // 16-row pieces holding a row of x: the others are skipped

#pragma unroll 1
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < n_chunks) load(c_begin + s, s);
    cp_async_commit();
  }
  // One barrier per stage: chunk i lands (wait, barrier); chunk i + kStages - 1 is queued into the
  // stage every thread finished reading at i - 1; chunk i is multiplied meanwhile.
  for (int i = 0; i < n_chunks; ++i) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    if (i + kStages - 1 < n_chunks) load(c_begin + i + kStages - 1, (i + kStages - 1) % kStages);
    cp_async_commit();
    const bfloat* sx = smem + (i % kStages) * kStageElems;
    const bfloat* sw = sx + kBM * kLd;
    // The stage's fragments, one 16-wide k step ahead of its products: step kk + 1's ldmatrix are in
    // flight while step kk's mma run (ldmatrix and mma are volatile asm, kept in the order written,
    // so an mma right after its load would wait the load's latency out).
    constexpr int kSteps = kBK / 16;
    uint32_t fa[2][4][4], fb[2][4];  // a: x's 16-row pieces; b: the warp's two 8-column tiles
    auto fragments = [&](int kk, uint32_t (&a)[4][4], uint32_t (&b)[4]) {
      ldsm_x4(b, sw + (warp * 16 + (lane & 7) + ((lane >> 4) << 3)) * kLd + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
        if (mt < m_tiles) ldsm_x4(a[mt], sx + (mt * 16 + (lane & 15)) * kLd + kk * 16 + (lane >> 4) * 8);
    };
    fragments(0, fa[0], fb[0]);
#pragma unroll
    for (int kk = 0; kk < kSteps; ++kk) {
      const int cur = kk & 1;
      if (kk + 1 < kSteps) fragments(kk + 1, fa[cur ^ 1], fb[cur ^ 1]);
      const uint32_t* b = fb[cur];  // b[0], b[1]: the first tile's k 0-7, 8-15
      uint32_t gam[2] = {0u, 0u};  // kNorm: the norm's weights of columns 2t, 2t + 1 and 2t + 8, 2t + 9
      if (kNorm) {
        const bfloat* gw = sw + kBN * kLd + kk * 16 + 2 * (lane & 3);
        gam[0] = *reinterpret_cast<const uint32_t*>(gw);
        gam[1] = *reinterpret_cast<const uint32_t*>(gw + 8);
      }
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
        if (mt < m_tiles) {
          uint32_t a[4] = {fa[cur][mt][0], fa[cur][mt][1], fa[cur][mt][2], fa[cur][mt][3]};
          if (kNorm) {
            if (mt == warp) {
              sq[0] += sum_squares_bf16x2(a[0]) + sum_squares_bf16x2(a[2]);
              sq[1] += sum_squares_bf16x2(a[1]) + sum_squares_bf16x2(a[3]);
            }
            a[0] = mul_bf16x2(a[0], gam[0]);
            a[1] = mul_bf16x2(a[1], gam[0]);
            a[2] = mul_bf16x2(a[2], gam[1]);
            a[3] = mul_bf16x2(a[3], gam[1]);
          }
          mma(acc[mt][0], a, b[0], b[1]);
          mma(acc[mt][1], a, b[2], b[3]);
        }
      }
    }
  }
  cp_async_wait<0>();

  // Accumulator (mt, nt) of lane (g, t): rows 16 mt + g and + 8, columns 16 warp + 8 nt + 2 t and + 1.
  const int g = lane >> 2, t = lane & 3;

  // This block's partial tile (and, kNorm, its rows' partial sums of squares) into the ring, every
  // thread done with it, then reduce_and_store.
  __syncthreads();
  float* part = reinterpret_cast<float*>(smem_raw);
  float* part_sq = part + kBM * kLdp;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        if (mt < m_tiles)
          *reinterpret_cast<float2*>(part + (mt * 16 + g + 8 * h) * kLdp + warp * 16 + nt * 8 + 2 * t) =
              make_float2(acc[mt][nt][2 * h], acc[mt][nt][2 * h + 1]);
  if (kNorm && warp < m_tiles) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float v = sq[h];
      v += __shfl_xor_sync(0xffffffffu, v, 1);
      v += __shfl_xor_sync(0xffffffffu, v, 2);
      if (t == 0) part_sq[warp * 16 + g + 8 * h] = v;
    }
  }
  reduce_and_store<kOutN, kLdp, kThreads, kNorm, kSwiglu>(p, sg, part, part_sq, tid, m0, n0, rows, cols, splits);
}

// The TMA kernel (set_decode_gemm_tma; products without the norm or SwiGLU, which keep the kernel
// above): the same tiles, plans and end, on Hopper's asynchronous path. Warp 4 (one thread) streams
// each stage's x tile (64 rows) and w tile (kBN rows) with one TMA load each, 64 of K in 128-byte
// swizzled rows, into a ring whose stages are handed over by mbarriers; warps 0-3, a warpgroup,
// multiply them with wgmma (64 x kBN, both operands read from shared memory, 4 instructions a
// stage) and free each stage once its MMAs are done. Rows and K past the matrices arrive as zeros.
constexpr int kTmaStages = 8;
constexpr int kTmaThreads = 160;  // a consumer warpgroup and the producer warp
constexpr size_t tma_x_bytes() { return size_t(kBM) * kBK * sizeof(bfloat); }
constexpr size_t tma_stage_bytes(int warps) { return size_t(kBM + block_n(warps)) * kBK * sizeof(bfloat); }
constexpr size_t tma_smem_bytes(int warps) {
  return 1024 + kTmaStages * tma_stage_bytes(warps) + 2 * kTmaStages * sizeof(uint64_t);  // 1 KiB to align the ring
}
static_assert(kBK * sizeof(bfloat) == 128, "a stage row is one 128-byte swizzle row");
static_assert(tma_x_bytes() % 1024 == 0 && block_n(kMinWarps) * kBK * sizeof(bfloat) % 1024 == 0,
              "tiles start on the swizzle's 1,024-byte period");
static_assert(tma_smem_bytes(kMaxWarps) <= 227 * 1024 && tma_smem_bytes(kMinWarps) > 114 * 1024, "one block an SM");

struct TmaParams {
  CUtensorMap x;                        // (M, K), boxes of 64 rows x 64 of K
  CUtensorMap w[kMaxDecodeSegments];    // (N, K), boxes of kBN rows
  Params p;
};

template <int kWarps>
__global__ void __launch_bounds__(kTmaThreads) decode_gemm_tma_kernel(const __grid_constant__ TmaParams tp) {
  constexpr int kBN = block_n(kWarps), kLdp = partial_ld(kWarps);
  constexpr uint32_t kStageBytes = uint32_t(tma_stage_bytes(kWarps));
  const Params& p = tp.p;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* ring = smem_raw + ((1024 - smem_addr(smem_raw) % 1024) % 1024);
  uint64_t* full = reinterpret_cast<uint64_t*>(ring + kTmaStages * kStageBytes);
  uint64_t* empty = full + kTmaStages;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  int si = 0;
  for (int i = 1; i < p.count; ++i) si += int(blockIdx.y) >= p.seg[i].tile0;
  const Segment sg = p.seg[si];
  const int m0 = int(blockIdx.x) * kBM, n0 = (int(blockIdx.y) - sg.tile0) * kBN;
  const int rows = min(kBM, p.M - m0), cols = min(kBN, sg.N - n0);
  const int splits = int(gridDim.z), split = int(blockIdx.z);
  const int chunks = (p.K + kBK - 1) / kBK;
  const int c_begin = chunks * split / splits, n_chunks = chunks * (split + 1) / splits - c_begin;
  if (tid == 0) {
    for (int s = 0; s < kTmaStages; ++s) {
      mbar_init(&full[s], 1);      // the producer's expect_tx; the loads' bytes complete it
      mbar_init(&empty[s], 4);     // one arrival a consumer warp
    }
    mbar_fence_init();
  }
  __syncthreads();

  float acc[kBN / 2];
#pragma unroll
  for (int j = 0; j < kBN / 2; ++j) acc[j] = 0.0f;
  if (warp == 4) {
    if (lane == 0) {
      tma_prefetch_map(&tp.x);
      tma_prefetch_map(&tp.w[si]);
      for (int i = 0; i < n_chunks; ++i) {
        const int s = i % kTmaStages;
        if (i >= kTmaStages) mbar_wait(&empty[s], uint32_t((i / kTmaStages - 1) & 1));  // its last use freed
        unsigned char* st = ring + s * kStageBytes;
        const int k0 = (c_begin + i) * kBK;
        mbar_expect_tx(&full[s], kStageBytes);
        tma_load_2d(st, &tp.x, &full[s], k0, m0);
        tma_load_2d(st + tma_x_bytes(), &tp.w[si], &full[s], k0, n0);
      }
    }
  } else {
    for (int i = 0; i < n_chunks; ++i) {
      const int s = i % kTmaStages;
      mbar_wait(&full[s], uint32_t((i / kTmaStages) & 1));
      const unsigned char* st = ring + s * kStageBytes;
      const uint64_t da = wgmma_desc_sw128(st), db = wgmma_desc_sw128(st + tma_x_bytes());
      wgmma_pin(acc);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk) wgmma_bf16<kBN>(acc, da + 2 * kk, db + 2 * kk);
      wgmma_commit();
      wgmma_pin(acc);
      wgmma_wait<1>();  // the previous stage's MMAs are done: its stage is free
      if (i > 0 && lane == 0) mbar_arrive(&empty[(i - 1) % kTmaStages]);
    }
    wgmma_wait<0>();
    wgmma_pin(acc);
  }

  // Every MMA done (their reads of the ring too): the partial tile into the ring, then the end.
  __syncthreads();
  float* part = reinterpret_cast<float*>(ring);
  if (warp < 4) {
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int j = 0; j < kBN / 2; j += 2) {
      const int r = warp * 16 + g + 8 * ((j >> 1) & 1), c = (j >> 2) * 8 + 2 * t;
      *reinterpret_cast<float2*>(part + r * kLdp + c) = make_float2(acc[j], acc[j + 1]);
    }
  }
  reduce_and_store<kBN, kLdp, kTmaThreads, false, false>(p, sg, part, nullptr, tid, m0, n0, rows, cols, splits);
}

using Kernel = void (*)(Params);
// The kernel of (warps, fusion); fusion = kNorm + 2 kSwiglu. SwiGLU needs an even warp count.
template <int kWarps>
Kernel kernel_of_warps(int fusion) {
  switch (fusion) {
    case 0: return decode_gemm_kernel<kWarps, false, false>;
    case 1: return decode_gemm_kernel<kWarps, true, false>;
    default:
      if constexpr (kWarps % 2 == 0) {
        return fusion == 2 ? decode_gemm_kernel<kWarps, false, true> : decode_gemm_kernel<kWarps, true, true>;
      } else {
        return nullptr;
      }
  }
}
Kernel kernel_of(int warps, int fusion) {
  switch (warps) {
    case 4: return kernel_of_warps<4>(fusion);
    case 5: return kernel_of_warps<5>(fusion);
    case 6: return kernel_of_warps<6>(fusion);
    case 7: return kernel_of_warps<7>(fusion);
    default: return kernel_of_warps<8>(fusion);
  }
}
using TmaKernel = void (*)(TmaParams);
TmaKernel tma_kernel_of(int warps) {
  switch (warps) {
    case 4: return decode_gemm_tma_kernel<4>;
    case 5: return decode_gemm_tma_kernel<5>;
    case 6: return decode_gemm_tma_kernel<6>;
    case 7: return decode_gemm_tma_kernel<7>;
    default: return decode_gemm_tma_kernel<8>;
  }
}

// The kernels' shared-memory limits raised, and how many clusters of each (warps, splits) run at
// once, on first use (an eager run precedes every capture).
constexpr int kFusions = 4;  // kNorm + 2 kSwiglu
struct Occupancy {
  int clusters[kMaxWarps + 1][kMaxSplits + 1] = {};
};
const Occupancy& occupancy() {
  static const Occupancy occ = [] {
    Occupancy o;
    for (int w = kMinWarps; w <= kMaxWarps; ++w) {
      for (int f = 0; f < kFusions; ++f)
        if (Kernel k = kernel_of(w, f))
          CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_bytes(w))));
      // The TMA kernel: one block an SM as well, so the same clusters fit.
      CUDA_CHECK(cudaFuncSetAttribute(tma_kernel_of(w), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      int(tma_smem_bytes(w))));
      o.clusters[w][1] = context().sm_count;
      for (int s = 2; s <= kMaxSplits; ++s) {
        cudaLaunchConfig_t lc{};
        lc.gridDim = dim3(1, 1, unsigned(s));
        lc.blockDim = dim3(unsigned(32 * w));
        lc.dynamicSmemBytes = smem_bytes(w);
        cudaLaunchAttribute attr{};
        attr.id = cudaLaunchAttributeClusterDimension;
        attr.val.clusterDim.x = attr.val.clusterDim.y = 1;
        attr.val.clusterDim.z = unsigned(s);
        lc.attrs = &attr;
        lc.numAttrs = 1;
        int n = 0;
        CUDA_CHECK(cudaOccupancyMaxActiveClusters(&n, kernel_of(w, 0), &lc));
        o.clusters[w][s] = n;
      }
    }
    return o;
  }();
  return occ;
}

constexpr bool kDefaultOn = false;  // see the header
bool g_enabled = kDefaultOn;  // set_decode_gemm
bool g_tma = false;           // set_decode_gemm_tma

// cuTensorMapEncodeTiled, looked up through the runtime (nothing links libcuda).
decltype(&cuTensorMapEncodeTiled) encode_tiled() {
  static const auto fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &found));
    if (found != cudaDriverEntryPointSuccess || f == nullptr) throw_error("CUDA driver: no cuTensorMapEncodeTiled");
    return reinterpret_cast<decltype(&cuTensorMapEncodeTiled)>(f);
  }();
  return fn;
}
// A (rows, K) bf16 row-major matrix read in boxes of box_rows x kBK, 128-byte swizzled, zeros past it.
CUtensorMap tile_map(const bfloat* base, int64_t rows, int64_t K, int box_rows) {
  CUtensorMap m;
  const cuuint64_t dims[2] = {cuuint64_t(K), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(K) * sizeof(bfloat)};
  const cuuint32_t box[2] = {cuuint32_t(kBK), cuuint32_t(box_rows)};
  const cuuint32_t steps[2] = {1, 1};
  const CUresult r = encode_tiled()(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<bfloat*>(base), dims, strides,
                                    box, steps, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                    CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) throw_error(("decode GEMM: cuTensorMapEncodeTiled failed (CUresult " + std::to_string(int(r)) + ")").c_str());
  return m;
}

// A tile's output columns: 16 per warp, half of them with SwiGLU (the other half are up's).
int out_columns(int warps, bool swiglu) { return swiglu ? block_n(warps) / 2 : block_n(warps); }

int column_tiles(const DecodeProduct* products, int count, int warps, bool swiglu) {
  const int n = out_columns(warps, swiglu);
  int64_t tiles = 0;
  for (int i = 0; i < count; ++i) tiles += (products[i].N + n - 1) / n;
  return int(std::min<int64_t>(tiles, INT_MAX));
}

}  // namespace

void set_decode_gemm(bool on) { g_enabled = on; }
void set_decode_gemm_tma(bool on) { g_tma = on; }
bool decode_gemm_default() { return kDefaultOn; }

DecodeGemmPlan decode_gemm_plan(const DecodeProduct* products, int count, int64_t M, int64_t K,
                                const DecodeFusion& fusion) {
  // Each candidate's cost, in bytes an SM must take in: per wave of clusters, a block's weights
  // (from DRAM) and rows of x (from L2, counted at half: L2 serves about twice DRAM's bandwidth),
  // plus, with a split, its share of the partials over distributed shared memory and a fixed
  // cost per wave (a memory round trip). The cheapest wins; ties go to fewer splits and warps.
  // The TMA kernel streams a block's bytes faster, so a wave's fixed cost weighs more: on an H100 a
  // second wave cost about 5 us whatever its bytes (0.5B gate/up x 64: 10 us in one wave of 122
  // blocks, 15 us in two of half the K each), about 128 KiB of an SM's streaming.
  const bool tma = g_tma && !fusion.norm && !fusion.swiglu;
  const double per_wave = tma ? 131072.0 : 16384.0;
  const Occupancy& occ = occupancy();
  const int64_t row_tiles = (M + kBM - 1) / kBM, rows = std::min<int64_t>(M, kBM);
  const int64_t chunks = (K + kBK - 1) / kBK;
  DecodeGemmPlan best;
  double best_cost = 0;
  for (int w = kMinWarps; w <= kMaxWarps; ++w) {
    if (fusion.swiglu && w % 2) continue;
    const int64_t tiles = row_tiles * column_tiles(products, count, w, fusion.swiglu);
    for (int s = 1; s <= std::min<int64_t>(kMaxSplits, chunks); ++s) {
      const int64_t active = occ.clusters[w][s];
      if (active < 1) continue;  // clusters this large do not fit the GPU's SM groups
      const int64_t waves = (tiles + active - 1) / active;
      const int64_t per_block = (chunks + s - 1) / s;
      const double load = double(per_block) * kBK * (2.0 * block_n(w) + double(rows));
      const double reduce = s > 1 ? double(rows) * block_n(w) * 2.0 : 0.0;
      const double cost = double(waves) * (load + reduce + per_wave);
      if (best.splits == 0 || cost < best_cost) {
        best = {w, s, column_tiles(products, count, w, fusion.swiglu)};
        best_cost = cost;
      }
    }
  }
  return best;
}

bool decode_linear_takes(const DecodeProduct* products, int count, const bf16* x, int64_t M, int64_t K,
                         const DecodeFusion& fusion) {
  if (!g_enabled || count < 1 || count > kMaxDecodeSegments || M < 1 || M > kDecodeGemmMaxRows || K < 8 ||
      K % 8 != 0 || K > INT32_MAX || !aligned16(x))
    return false;
  if (fusion.norm && !aligned16(fusion.norm)) return false;
  // SwiGLU: one product of [gate; up] rows, nothing summed in.
  if (fusion.swiglu && (count != 1 || products[0].bias || products[0].residual)) return false;
  for (int i = 0; i < count; ++i) {
    const DecodeProduct& d = products[i];
    if (d.N < 1 || d.N > INT32_MAX / 4 || !aligned16(d.weight)) return false;
  }
  return column_tiles(products, count, kMinWarps, fusion.swiglu) <= 65535;  // grid y
}

namespace {

// The launch of a plan, once decode_linear_takes has taken the products.
void launch(const DecodeProduct* products, int count, const bf16* x, int64_t M, int64_t K, DecodeGemmPlan plan,
            const DecodeFusion& fusion) {
  Params p;
  p.x = dp(x);
  p.M = int(M);
  p.K = int(K);
  p.count = count;
  p.norm = dp(fusion.norm);
  p.eps = fusion.eps;
  const int n = out_columns(plan.warps, fusion.swiglu);
  int tiles = 0;
  for (int i = 0; i < count; ++i) {
    const DecodeProduct& d = products[i];
    p.seg[i] = {dp(d.weight), dp(d.bias), dp(d.residual), dp(d.out), int(d.N), tiles};
    tiles += int((d.N + n - 1) / n);
  }
  cudaLaunchConfig_t lc{};
  lc.gridDim = dim3(unsigned((M + kBM - 1) / kBM), unsigned(tiles), unsigned(plan.splits));
  lc.blockDim = dim3(unsigned(32 * plan.warps));
  lc.dynamicSmemBytes = smem_bytes(plan.warps);
  lc.stream = context().stream;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = attr.val.clusterDim.y = 1;
  attr.val.clusterDim.z = unsigned(plan.splits);
  lc.attrs = &attr;
  lc.numAttrs = plan.splits > 1 ? 1 : 0;
  const int f = (fusion.norm ? 1 : 0) + (fusion.swiglu ? 2 : 0);
  if (g_tma && f == 0) {  // the planner's `tma`
    TmaParams tp;
    tp.p = p;
    tp.x = tile_map(p.x, M, K, kBM);
    for (int i = 0; i < count; ++i) tp.w[i] = tile_map(p.seg[i].w, products[i].N, K, block_n(plan.warps));
    lc.blockDim = dim3(unsigned(kTmaThreads));
    lc.dynamicSmemBytes = tma_smem_bytes(plan.warps);
    CUDA_CHECK(cudaLaunchKernelEx(&lc, tma_kernel_of(plan.warps), tp));
    return;
  }
  CUDA_CHECK(cudaLaunchKernelEx(&lc, kernel_of(plan.warps, f), p));
}

}  // namespace

bool decode_linear(const DecodeProduct* products, int count, const bf16* x, int64_t M, int64_t K,
                   const DecodeFusion& fusion) {
  if (!decode_linear_takes(products, count, x, M, K, fusion)) return false;
  launch(products, count, x, M, K, decode_gemm_plan(products, count, M, K, fusion), fusion);
  return true;
}

bool decode_linear_planned(const DecodeProduct* products, int count, const bf16* x, int64_t M, int64_t K,
                           DecodeGemmPlan plan, const DecodeFusion& fusion) {
  if (plan.warps < kMinWarps || plan.warps > kMaxWarps || plan.splits < 1 || plan.splits > kMaxSplits)
    throw_error("decode_linear_planned: warps must be in [4, 8] and splits in [1, 8]");
  if (fusion.swiglu && plan.warps % 2) throw_error("decode_linear_planned: SwiGLU needs an even number of warps");
  if (!decode_linear_takes(products, count, x, M, K, fusion)) return false;
  if (occupancy().clusters[plan.warps][plan.splits] < 1)
    throw_error(("decode_linear_planned: a cluster of " + std::to_string(plan.splits) + " blocks of " +
                 std::to_string(plan.warps) + " warps does not fit this GPU")
                    .c_str());
  launch(products, count, x, M, K, plan, fusion);
  return true;
}

}  // namespace r1::cuda

// The bf16 linear of a few rows (a decode step's projections: M = the sequences in flight), where a
// general GEMM library leaves most of the memory bandwidth unused: the weights, read once, are the
// whole cost, and a (64 x 64)-tiled product of a 896-wide matrix has 14 tiles for 132 SMs.
//
// out_s (M, N_s) = x (M, K) @ w_s (N_s, K)^T (+ bias_s) (+ residual_s) for up to kMaxSegments
// products of the same x (q, k and v of one layer in one launch). Tensor cores (mma.sync
// m16n8k16, fp32 accumulators); a block takes a 64 x 64 tile of one product's output and a range
// of K (split-K, so that the grid fills the GPU), streamed through kStages shared-memory stages with
// cp.async. With a split, each block writes its fp32 partial tile to the workspace, and the last of
// the tile's blocks to arrive (a counter per tile, reset by it for the next launch) sums the
// partials in split order, adds bias and residual and rounds once: deterministic, every run the
// same bits, nothing allocated or read back (graph capture works). Not batch-invariant (the split
// depends on M): the exact forward (forward_order() == RowInvariant) keeps its cuBLASLt products.
//
// Off by default (set_decode_gemm): correct (CudaDecodeGemm.*, the op table, the GPU rollout tests
// with it on) but slower than cuBLASLt on an H100 (bench_decode_gemm_gpu, 2026-12-06): 2-5x per
// product at 64 rows, a decode step 2x. Where: its 64-column tiles read x once per tile (as many
// bytes as the weights at 64 rows, from L2), its 64-row tiles read a weight tile once per row tile
// at 256 rows (L2-bound there), and the last block's split-K sum waits on one L2 round trip per
// split. Only three products of one row (q, k, v at M = 1) beat cuBLASLt's three launches
// (1.04-1.35x). docs/CUDA.md, "The decode GEMM".
#include <algorithm>

#include "base/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/tensor_core.cuh"

namespace r1::cuda {

namespace {

using bfloat = __nv_bfloat16;

constexpr int kBM = 64, kBN = 64, kBK = 64;  // output tile, K per stage
constexpr int kStages = 4;
constexpr int kGemmThreads = 128;                // 4 warps, each 16 columns of the tile, all its rows
constexpr int kLd = kBK + 8;                 // stage row of 144 bytes: conflict-free ldmatrix
constexpr int kStageElems = (kBM + kBN) * kLd;
constexpr size_t kSmem = size_t(kStages) * kStageElems * sizeof(bfloat);  // 72 KiB: 3 blocks an SM
constexpr int kTileElems = kBM * kBN;

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
  float* partials = nullptr;  // split-K: [split][tile][kBM x kBN]
  unsigned* counters = nullptr;
};

__global__ void __launch_bounds__(kGemmThreads) decode_gemm_kernel(Params p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bfloat* smem = reinterpret_cast<bfloat*>(smem_raw);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  int si = 0;
  for (int i = 1; i < p.count; ++i) si += int(blockIdx.y) >= p.seg[i].tile0;
  const Segment& sg = p.seg[si];
  const int m0 = int(blockIdx.x) * kBM, n0 = (int(blockIdx.y) - sg.tile0) * kBN;
  const int rows = min(kBM, p.M - m0), cols = min(kBN, sg.N - n0);
  const int splits = int(gridDim.z), split = int(blockIdx.z);
  const int chunks = (p.K + kBK - 1) / kBK;
  const int c_begin = chunks * split / splits, n_chunks = chunks * (split + 1) / splits - c_begin;
  const bfloat* xs = p.x + int64_t(m0) * p.K;
  const bfloat* ws = sg.w + int64_t(n0) * p.K;

  // Stage s: x's rows [0, kBM) then w's rows [0, kBN), each kBK wide. K is a multiple of 8, so a
  // 16-byte piece is wholly inside K or past it; past it, and past the rows, it is zero-filled.
  auto load = [&](int chunk, int s) {
    bfloat* sx = smem + s * kStageElems;
    bfloat* sw = sx + kBM * kLd;
    const int k0 = chunk * kBK;
#pragma unroll
    for (int i = tid; i < kBM * (kBK / 8); i += kGemmThreads) {
      const int r = i >> 3, c = (i & 7) * 8;
      const bool ok = r < rows && k0 + c < p.K;
      cp_async16(sx + r * kLd + c, ok ? xs + int64_t(r) * p.K + k0 + c : p.x, ok);
    }
#pragma unroll
    for (int i = tid; i < kBN * (kBK / 8); i += kGemmThreads) {
      const int r = i >> 3, c = (i & 7) * 8;
      const bool ok = r < cols && k0 + c < p.K;
      cp_async16(sw + r * kLd + c, ok ? ws + int64_t(r) * p.K + k0 + c : sg.w, ok);
    }
  };

  float acc[4][2][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;
  const int m_tiles = (rows + 15) / 16;  // 16-row pieces holding a row of x: the others are skipped

#pragma unroll
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
#pragma unroll
    for (int ks = 0; ks < kBK; ks += 16) {
      uint32_t b[4];  // the warp's two 8-column tiles: b[0], b[1] the first's k 0-7, 8-15
      ldsm_x4(b, sw + (warp * 16 + (lane & 7) + ((lane >> 4) << 3)) * kLd + ks + ((lane >> 3) & 1) * 8);
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
        if (mt < m_tiles) {
          uint32_t a[4];
          ldsm_x4(a, sx + (mt * 16 + (lane & 15)) * kLd + ks + (lane >> 4) * 8);
          mma(acc[mt][0], a, b[0], b[1]);
          mma(acc[mt][1], a, b[2], b[3]);
        }
      }
    }
  }
  cp_async_wait<0>();

  // Accumulator (mt, nt) of lane (g, t): rows 16 mt + g and + 8, columns 16 warp + 8 nt + 2 t and + 1.
  // f(pair, offset): the pair of accumulators of each row the lane holds, offset = r * kBN + c in
  // the tile.
  const int g = lane >> 2, t = lane & 3;
  auto each_pair = [&](auto&& f) {
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          if (mt < m_tiles) f(&acc[mt][nt][2 * h], (mt * 16 + g + 8 * h) * kBN + warp * 16 + nt * 8 + 2 * t);
  };
  if (splits > 1) {
    const int tile = int(blockIdx.y) * int(gridDim.x) + int(blockIdx.x);
    const int64_t tiles = int64_t(gridDim.x) * gridDim.y;
    auto partial = [&](int k) { return p.partials + (int64_t(k) * tiles + tile) * kTileElems; };
    float* mine = partial(split);
    each_pair([&](float* v, int at) { *reinterpret_cast<float2*>(mine + at) = make_float2(v[0], v[1]); });
    __threadfence();  // the partial is visible before this block is counted
    __syncthreads();
    __shared__ bool last;
    if (tid == 0) last = atomicAdd(p.counters + tile, 1u) == unsigned(splits - 1);
    __syncthreads();
    if (!last) return;
    __threadfence();
    // The last block: every split's partial, in split order (its own included), whatever the
    // order in which they arrived.
    each_pair([&](float* v, int at) {
      float2 sum = make_float2(0.0f, 0.0f);
      for (int k = 0; k < splits; ++k) {
        const float2 x = __ldcg(reinterpret_cast<const float2*>(partial(k) + at));
        sum.x += x.x;
        sum.y += x.y;
      }
      v[0] = sum.x;
      v[1] = sum.y;
    });
    if (tid == 0) p.counters[tile] = 0;  // ready for the next launch
  }

  // out = acc + bias + residual, rounded once; residual may be out (each element read, then written,
  // by one thread).
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = mt * 16 + g + 8 * h;
      if (mt >= m_tiles || r >= rows) continue;
      const int64_t row = int64_t(m0 + r) * sg.N;
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = warp * 16 + nt * 8 + 2 * t + e;
          if (c >= cols) continue;
          const int64_t col = n0 + c;
          float v = acc[mt][nt][2 * h + e];
          if (sg.bias) v += __bfloat162float(sg.bias[col]);
          if (sg.residual) v += __bfloat162float(sg.residual[row + col]);
          sg.out[row + col] = __float2bfloat16_rn(v);
        }
    }
}

// The kernel, its shared-memory limit raised on first use (an eager run precedes every capture).
void configure() {
  static const bool done = [] {
    CUDA_CHECK(cudaFuncSetAttribute(decode_gemm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmem)));
    return true;
  }();
  (void)done;
}

constexpr bool kDefaultOn = false;  // see the header
bool g_enabled = kDefaultOn;  // set_decode_gemm

}  // namespace

void set_decode_gemm(bool on) { g_enabled = on; }
bool decode_gemm_default() { return kDefaultOn; }

int decode_gemm_splits(int64_t M, int64_t K, int64_t column_tiles) {
  const int64_t tiles = (M + kBM - 1) / kBM * column_tiles;
  const int64_t chunks = (K + kBK - 1) / kBK;
  const int64_t want = 2 * int64_t(context().sm_count);  // blocks: two waves' worth of one an SM
  if (tiles >= want || tiles > Context::kCounters) return 1;
  // Each split at least two stages deep; the partials within the workspace.
  const int64_t room = int64_t(context().workspace_bytes / (sizeof(float) * kTileElems)) / tiles;
  return int(std::max<int64_t>(1, std::min({(want + tiles - 1) / tiles, chunks / 2, int64_t(16), room})));
}

bool decode_linear_takes(const DecodeProduct* products, int count, const bf16* x, int64_t M, int64_t K) {
  if (!g_enabled || count < 1 || count > kMaxDecodeSegments || M < 1 || M > kDecodeGemmMaxRows || K < 8 ||
      K % 8 != 0 || K > INT32_MAX || !aligned16(x))
    return false;
  int64_t tiles = 0;
  for (int i = 0; i < count; ++i) {
    const DecodeProduct& d = products[i];
    if (d.N < 1 || d.N > INT32_MAX / 2 || !aligned16(d.weight)) return false;
    tiles += (d.N + kBN - 1) / kBN;
  }
  return tiles <= 65535;  // grid y
}

bool decode_linear(const DecodeProduct* products, int count, const bf16* x, int64_t M, int64_t K) {
  if (!decode_linear_takes(products, count, x, M, K)) return false;
  Params p;
  p.x = dp(x);
  p.M = int(M);
  p.K = int(K);
  p.count = count;
  int tiles = 0;
  for (int i = 0; i < count; ++i) {
    const DecodeProduct& d = products[i];
    p.seg[i] = {dp(d.weight), dp(d.bias), dp(d.residual), dp(d.out), int(d.N), tiles};
    tiles += int((d.N + kBN - 1) / kBN);
  }
  configure();
  Context& ctx = context();
  const int splits = decode_gemm_splits(M, K, tiles);
  p.partials = static_cast<float*>(ctx.workspace);
  p.counters = ctx.counters;
  const dim3 grid(unsigned((M + kBM - 1) / kBM), unsigned(tiles), unsigned(splits));
  decode_gemm_kernel<<<grid, kGemmThreads, kSmem, ctx.stream>>>(p);
  CUDA_CHECK_LAUNCH();
  return true;
}

}  // namespace r1::cuda

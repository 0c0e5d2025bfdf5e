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
// A second kernel (set_decode_gemm_tma; decode_gemm_tma.cu) runs the same plans, fusions and end on
// Hopper's TMA and wgmma: this one, mma.sync fed by ldmatrix from a few warps an SM, is as slow as
// cuBLASLt's whole product even with no loads. What both share is in decode_gemm_tile.cuh.
//
// Off by default (set_decode_gemm). On an H100 the mma.sync kernel takes 1.2-3.4x cuBLASLt's time,
// the TMA one 0.95-1.76x, and a decode step with the TMA one is 1.05-1.26x slower than with
// cuBLASLt and separate norm and SwiGLU kernels (docs/CUDA.md, "The decode GEMM").
#include <cooperative_groups.h>

#include <algorithm>
#include <climits>
#include <string>

#include "base/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/decode_gemm_tile.cuh"
#include "kernels/cuda/tensor_core.cuh"

namespace r1::cuda {

namespace {

using namespace decode_gemm;

constexpr int kStages = 8;
constexpr int kLd = kBK + 8;       // stage row of 144 bytes: conflict-free ldmatrix

// x's rows, w's rows and one row for the RMSNorm's weights
constexpr size_t stage_elems(int warps) { return size_t(kBM + block_n(warps) + 1) * kLd; }
constexpr size_t smem_bytes(int warps) { return size_t(kStages) * stage_elems(warps) * sizeof(bfloat); }
// More than half an SM's 228 KiB, so one block runs per SM (a cluster's blocks on separate SMs,
// each with an SM's bandwidth), and no more than a block may have.
static_assert(smem_bytes(kMinWarps) > 114 * 1024 && smem_bytes(kMaxWarps) <= 227 * 1024, "one block an SM");

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
  if (kNorm && warp < m_tiles) store_row_squares(part_sq, sq, warp, g, t);
  reduce_and_store<kOutN, kLdp, kThreads, kNorm, kSwiglu>(p, sg, part, part_sq, tid, m0, n0, rows, cols, splits);
}

using Kernel = void (*)(Params);
Kernel kernel_of(int warps, int fusion) {
  return kernel_of_family<kMaxWarps, true>(warps, fusion, [](auto w, auto norm, auto swiglu) -> Kernel {
    return decode_gemm_kernel<decltype(w)::value, decltype(norm)::value, decltype(swiglu)::value>;
  });
}

}  // namespace

int decode_gemm::active_clusters(const void* kernel, int threads, size_t smem, int splits) {
  if (splits == 1) return context().sm_count;  // one block an SM: every SM
  cudaLaunchConfig_t lc{};
  lc.gridDim = dim3(1, 1, unsigned(splits));
  lc.blockDim = dim3(unsigned(threads));
  lc.dynamicSmemBytes = smem;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = attr.val.clusterDim.y = 1;
  attr.val.clusterDim.z = unsigned(splits);
  lc.attrs = &attr;
  lc.numAttrs = 1;
  int n = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveClusters(&n, kernel, &lc));
  return n;
}

namespace {

// A kernel's shared-memory limits raised, and how many clusters of each (warps, splits) run at
// once, on its first use (an eager run precedes every capture): the mma.sync kernel's, or the TMA
// kernel's (each set up only when it is used).
constexpr int kFusions = 4;  // kNorm + 2 kSwiglu
const Clusters& clusters(bool tma) {
  if (tma) {
    static const Clusters t = decode_gemm::tma_prepare();
    return t;
  }
  static const Clusters m = [] {
    Clusters o;
    for (int w = kMinWarps; w <= kMaxWarps; ++w) {
      for (int f = 0; f < kFusions; ++f)
        if (Kernel k = kernel_of(w, f))
          CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_bytes(w))));
      for (int s = 1; s <= kMaxSplits; ++s)
        o.n[w][s] = active_clusters(reinterpret_cast<const void*>(kernel_of(w, 0)), 32 * w, smem_bytes(w), s);
    }
    return o;
  }();
  return m;
}

constexpr bool kDefaultOn = false;  // see the header
bool g_enabled = kDefaultOn;  // set_decode_gemm
bool g_tma = false;           // set_decode_gemm_tma
unsigned g_products = kDecodeGemmAll;  // set_decode_gemm_products

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
void set_decode_gemm_products(unsigned mask) { g_products = mask & kDecodeGemmAll; }
bool decode_gemm_default() { return kDefaultOn; }
bool decode_gemm_on() { return g_enabled; }
int decode_gemm_max_warps() { return g_tma ? kMaxTmaWarps : kMaxWarps; }

DecodeGemmPlan decode_gemm_plan(const DecodeProduct* products, int count, int64_t M, int64_t K,
                                const DecodeFusion& fusion) {
  // Each candidate's cost, in bytes an SM must take in, per wave of clusters: a block's weights
  // (from DRAM) and rows of x (from L2, counted at half: L2 serves about twice DRAM's bandwidth),
  // plus, with a split, its share of the partials over distributed shared memory, and a fixed cost
  // per wave. The cheapest wins; ties go to fewer splits and warps.
  // - mma.sync: the fixed cost is a memory round trip (16 KiB).
  // - TMA (fitted to its sweep of 1,664 plans on an H100, bench_decode_gemm_gpu --sweep --tma): a
  //   wave costs about 5 us whatever its bytes (128 KiB of an SM's streaming); a split another 64
  //   KiB (the cluster's barriers) beside its fp32 partials; and a wave of B blocks takes at least
  //   B / 60 of its weights' time, since DRAM feeds about 60 SMs' worth of streaming. On the H100
  //   its plans for 0.5B and 1.5B's products at 64 and 256 rows were 1.3% slower than the sweep's
  //   best on average; the model before it (the mma.sync one with 128 KiB a wave) 8.7% slower.
  const double per_wave = g_tma ? 131072.0 : 16384.0;
  const double split_cost = g_tma ? 65536.0 : 0.0, dram_sms = 60.0;
  const Clusters& occ = clusters(g_tma);
  const int64_t row_tiles = (M + kBM - 1) / kBM, rows = std::min<int64_t>(M, kBM);
  const int64_t chunks = (K + kBK - 1) / kBK;
  DecodeGemmPlan best;
  double best_cost = 0;
  for (int w = kMinWarps; w <= decode_gemm_max_warps(); ++w) {
    if (fusion.swiglu && w % 2 && !g_tma) continue;  // the mma.sync kernel splits its warps between gate and up
    const int64_t tiles = row_tiles * column_tiles(products, count, w, fusion.swiglu);
    for (int s = 1; s <= std::min<int64_t>(kMaxSplits, chunks); ++s) {
      const int64_t active = occ.n[w][s];
      if (active < 1) continue;  // clusters this large do not fit the GPU's SM groups
      const int64_t waves = (tiles + active - 1) / active;
      const int64_t per_block = (chunks + s - 1) / s;
      const double w_bytes = double(per_block) * kBK * 2.0 * block_n(w), x_bytes = double(per_block) * kBK * double(rows);
      double cost = 0;
      if (!g_tma) {
        const double reduce = s > 1 ? double(rows) * block_n(w) * 2.0 : 0.0;
        cost = double(waves) * (w_bytes + x_bytes + reduce + per_wave);
      } else {
        const double reduce = s > 1 ? double(rows) * block_n(w) * 4.0 * (s - 1) / s + split_cost : 0.0;
        auto wave = [&](int64_t clusters) {
          return per_wave + reduce + std::max(w_bytes + x_bytes, double(clusters * s) * w_bytes / dram_sms);
        };
        cost = double(waves - 1) * wave(active) + wave(tiles - (waves - 1) * active);
      }
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
  const unsigned kind = fusion.swiglu ? kDecodeGemmNormSwiglu : fusion.norm ? kDecodeGemmNorm : kDecodeGemmPlain;
  if (!(g_products & kind)) return false;
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
  if (g_tma) {
    decode_gemm::tma_launch(lc, p, products, plan.warps, fusion);
    return;
  }
  const int f = (fusion.norm ? 1 : 0) + (fusion.swiglu ? 2 : 0);
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
  if (plan.warps < kMinWarps || plan.warps > decode_gemm_max_warps() || plan.splits < 1 || plan.splits > kMaxSplits)
    throw_error(("decode_linear_planned: warps must be in [4, " + std::to_string(decode_gemm_max_warps()) +
                 "] and splits in [1, 8]")
                    .c_str());
  if (fusion.swiglu && plan.warps % 2 && !g_tma)
    throw_error("decode_linear_planned: SwiGLU on the mma.sync kernel needs an even number of warps");
  if (!decode_linear_takes(products, count, x, M, K, fusion)) return false;
  if (clusters(g_tma).n[plan.warps][plan.splits] < 1)
    throw_error(("decode_linear_planned: a cluster of " + std::to_string(plan.splits) + " blocks of " +
                 std::to_string(plan.warps) + " warps does not fit this GPU")
                    .c_str());
  launch(products, count, x, M, K, plan, fusion);
  return true;
}

}  // namespace r1::cuda

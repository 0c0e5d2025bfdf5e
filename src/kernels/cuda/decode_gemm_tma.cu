// The decode GEMM's TMA kernel (cuda::set_decode_gemm_tma): decode_gemm.cu's plans, tiles, fusions
// and end on Hopper's asynchronous path (TMA loads into an mbarrier ring, wgmma), for the products
// decode_gemm.cu's planner sizes and launches.
#include <string>

#include "base/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/decode_gemm_tile.cuh"
#include "kernels/cuda/hopper.cuh"
#include "kernels/cuda/tensor_core.cuh"

namespace r1::cuda::decode_gemm {

namespace {

// The kernel: the same tiles, plans, fusions and end as decode_gemm.cu's, on Hopper's
// asynchronous path. Warp 4 (one thread) streams each stage's x tile (64 rows) and w tile (kBN
// rows, up to 256; SwiGLU: kOutN of gate and kOutN of up) with one TMA load each, 64 of K in
// 128-byte swizzled rows (kNorm: and the norm's 64 weights), into a ring whose stages are handed
// over by mbarriers; warps 0-3, a warpgroup, multiply them with wgmma (64 x kBN, 4 k steps a stage;
// past 128 columns, two instructions a k step) and free each stage once its MMAs are done, one
// stage behind. Without the norm both operands are read from shared memory; with it, x's fragments
// are loaded (ldmatrix, through the swizzle), their squares summed and they are scaled by the
// norm's weights in registers first, as decode_gemm.cu's kernel does, into one of two register
// sets: the next stage's are made while this one's MMAs run. Rows and K past the matrices arrive
// as zeros.
constexpr int kTmaThreads = 160;  // a consumer warpgroup and the producer warp
constexpr size_t kTmaSmemLimit = 227 * 1024;
constexpr size_t tma_x_bytes() { return size_t(kBM) * kBK * sizeof(bfloat); }
constexpr size_t tma_w_bytes(int warps) { return size_t(block_n(warps)) * kBK * sizeof(bfloat); }
// x, w, then 1 KiB holding the norm's 128 bytes, so the next stage starts on the swizzle's period.
constexpr size_t tma_stage_bytes(int warps) { return tma_x_bytes() + tma_w_bytes(warps) + 1024; }
// As deep as 8 stages, or as the shared memory allows (5 at 256 columns), beside 1 KiB to align
// the ring and two mbarriers a stage.
constexpr int tma_stages(int warps) {
  const size_t fit = (kTmaSmemLimit - 1024) / (tma_stage_bytes(warps) + 2 * sizeof(uint64_t));
  return fit < 8 ? int(fit) : 8;
}
constexpr size_t tma_smem_bytes(int warps) {
  return 1024 + size_t(tma_stages(warps)) * (tma_stage_bytes(warps) + 2 * sizeof(uint64_t));
}
static_assert(kBK * sizeof(bfloat) == 128, "a stage row is one 128-byte swizzle row");
static_assert(tma_x_bytes() % 1024 == 0 && block_n(kMinWarps) / 2 * kBK * sizeof(bfloat) % 1024 == 0,
              "tiles (and SwiGLU's up half) start on the swizzle's 1,024-byte period");
static_assert(tma_smem_bytes(kMinWarps) > 114 * 1024 && tma_stages(kMaxTmaWarps) >= 4, "one block an SM, a deep ring");

struct TmaParams {
  CUtensorMap x;                        // (M, K), boxes of 64 rows x 64 of K
  CUtensorMap w[kMaxDecodeSegments];    // (N, K), boxes of kBN rows (SwiGLU: (2N, K), kOutN rows)
  CUtensorMap norm;                     // kNorm: (1, K), boxes of 64
  Params p;
};

// wgmma's widths here: a multiple of 16 up to 128 in one instruction, past it two (the first
// min(128, kBN - 64) columns, then the rest), their accumulators side by side: the fragments'
// column order is the one-instruction order either way.
template <int kBN>
constexpr int first_width() {
  return kBN <= 128 ? kBN : (kBN - 64 < 128 ? kBN - 64 : 128);
}
// Accumulators kFrom .. kFrom + kCount - 1 of a thread's, as an array of their own.
template <int kFrom, int kCount, int kN>
__device__ inline float (&columns(float (&acc)[kN]))[kCount] {
  static_assert(kFrom + kCount <= kN, "inside the accumulators");
  return *reinterpret_cast<float(*)[kCount]>(&acc[kFrom]);
}
// acc (64 x kBN) += a (64 x 16: a shared-memory descriptor, or this warp's fragment registers) @
// the w tile's rows (descriptor b)^T.
template <int kBN, typename A>
__device__ inline void mma_tile(float (&acc)[kBN / 2], const A& a, uint64_t b) {
  constexpr int w0 = first_width<kBN>();
  if constexpr (w0 == kBN) {
    wgmma_bf16<kBN>(acc, a, b);
  } else {
    wgmma_bf16<w0>(columns<0, w0 / 2>(acc), a, b);
    wgmma_bf16<kBN - w0>(columns<w0 / 2, (kBN - w0) / 2>(acc), a, b + w0 * 128 / 16);  // w0 rows of 128 bytes on
  }
}

template <int kWarps, bool kNorm, bool kSwiglu>
__global__ void __launch_bounds__(kTmaThreads) decode_gemm_tma_kernel(const __grid_constant__ TmaParams tp) {
  constexpr int kBN = block_n(kWarps), kLdp = partial_ld(kWarps), kStages = tma_stages(kWarps);
  constexpr int kOutN = kSwiglu ? kBN / 2 : kBN;
  constexpr uint32_t kXBytes = uint32_t(tma_x_bytes()), kWBytes = uint32_t(tma_w_bytes(kWarps));
  constexpr uint32_t kStageBytes = uint32_t(tma_stage_bytes(kWarps));
  constexpr uint32_t kLoadBytes = kXBytes + kWBytes + (kNorm ? kBK * sizeof(bfloat) : 0);
  static_assert(size_t(kBM) * (kLdp + 1) * sizeof(float) <= size_t(kStages) * kStageBytes, "the partial tile fits");
  const Params& p = tp.p;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* ring = smem_raw + ((1024 - smem_addr(smem_raw) % 1024) % 1024);
  uint64_t* full = reinterpret_cast<uint64_t*>(ring + kStages * kStageBytes);
  uint64_t* empty = full + kStages;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  int si = 0;
  for (int i = 1; i < p.count; ++i) si += int(blockIdx.y) >= p.seg[i].tile0;
  const Segment sg = p.seg[si];
  const int m0 = int(blockIdx.x) * kBM, n0 = (int(blockIdx.y) - sg.tile0) * kOutN;
  const int rows = min(kBM, p.M - m0), cols = min(kOutN, sg.N - n0);
  const int splits = int(gridDim.z), split = int(blockIdx.z);
  const int chunks = (p.K + kBK - 1) / kBK;
  const int c_begin = chunks * split / splits, n_chunks = chunks * (split + 1) / splits - c_begin;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full[s], 1);      // the producer's expect_tx; the loads' bytes complete it
      mbar_init(&empty[s], 4);     // one arrival a consumer warp
    }
    mbar_fence_init();
  }
  __syncthreads();

  const int g = lane >> 2, t = lane & 3;
  float acc[kBN / 2];
#pragma unroll
  for (int j = 0; j < kBN / 2; ++j) acc[j] = 0.0f;
  float sq[2] = {0.0f, 0.0f};  // kNorm: Σ x^2 of rows 16 warp + g and + 8, this lane's columns
  if (warp == 4) {
    if (lane == 0) {
      tma_prefetch_map(&tp.x);
      tma_prefetch_map(&tp.w[si]);
      if (kNorm) tma_prefetch_map(&tp.norm);
      for (int i = 0; i < n_chunks; ++i) {
        const int s = i % kStages;
        if (i >= kStages) mbar_wait(&empty[s], uint32_t((i / kStages - 1) & 1));  // its last use freed
        unsigned char* st = ring + s * kStageBytes;
        const int k0 = (c_begin + i) * kBK;
        mbar_expect_tx(&full[s], kLoadBytes);
        tma_load_2d(st, &tp.x, &full[s], k0, m0);
        if (kSwiglu) {
          tma_load_2d(st + kXBytes, &tp.w[si], &full[s], k0, n0);
          tma_load_2d(st + kXBytes + kWBytes / 2, &tp.w[si], &full[s], k0, sg.N + n0);
        } else {
          tma_load_2d(st + kXBytes, &tp.w[si], &full[s], k0, n0);
        }
        if (kNorm) tma_load_2d(st + kXBytes + kWBytes, &tp.norm, &full[s], k0, 0);
      }
    }
  } else if (kNorm) {
    // Stage i: x's fragments of this warp's 16 rows (row r's 16-byte piece c sits at piece
    // c ^ (r % 8)), their squares summed, scaled by the norm's weights.
    constexpr int kSteps = kBK / 16;
    auto fragments = [&](uint32_t (&a)[kSteps][4], int i) {
      const int s = i % kStages;
      mbar_wait(&full[s], uint32_t((i / kStages) & 1));
      const unsigned char* st = ring + s * kStageBytes;
      const int r = warp * 16 + (lane & 15);
      const bfloat* gw = reinterpret_cast<const bfloat*>(st + kXBytes + kWBytes) + 2 * t;
#pragma unroll
      for (int kk = 0; kk < kSteps; ++kk) {
        const int piece = (kk * 2 + (lane >> 4)) ^ (r & 7);
        ldsm_x4(a[kk], reinterpret_cast<const bfloat*>(st + r * 128 + piece * 16));
        sq[0] += sum_squares_bf16x2(a[kk][0]) + sum_squares_bf16x2(a[kk][2]);
        sq[1] += sum_squares_bf16x2(a[kk][1]) + sum_squares_bf16x2(a[kk][3]);
        const uint32_t g0 = *reinterpret_cast<const uint32_t*>(gw + kk * 16);
        const uint32_t g1 = *reinterpret_cast<const uint32_t*>(gw + kk * 16 + 8);
        a[kk][0] = mul_bf16x2(a[kk][0], g0);
        a[kk][1] = mul_bf16x2(a[kk][1], g0);
        a[kk][2] = mul_bf16x2(a[kk][2], g1);
        a[kk][3] = mul_bf16x2(a[kk][3], g1);
      }
    };
    auto issue = [&](const uint32_t (&a)[kSteps][4], int i) {
      const uint64_t db = wgmma_desc_sw128(ring + (i % kStages) * kStageBytes + kXBytes);
      wgmma_pin(acc);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kSteps; ++kk) mma_tile<kBN>(acc, a[kk], db + 2 * kk);
      wgmma_commit();
      wgmma_pin(acc);
    };
    // After a wgmma_wait that covers stage i's MMAs: its registers may be reused (kept live until
    // here, so the compiler gives no other value their registers while the MMAs read them) and its
    // stage refilled.
    auto retire = [&](uint32_t (&a)[kSteps][4], int i) {
#pragma unroll
      for (int kk = 0; kk < kSteps; ++kk) wgmma_pin(a[kk]);
      if (lane == 0) mbar_arrive(&empty[i % kStages]);
    };
    uint32_t a0[kSteps][4], a1[kSteps][4];  // even stages' fragments, odd stages'
    if (n_chunks > 0) fragments(a0, 0);
#pragma unroll 1
    for (int i = 0; i < n_chunks; i += 2) {
      issue(a0, i);
      wgmma_wait<1>();  // stage i - 1's MMAs are done
      if (i > 0) retire(a1, i - 1);
      if (i + 1 == n_chunks) break;
      fragments(a1, i + 1);
      issue(a1, i + 1);
      wgmma_wait<1>();  // stage i's
      retire(a0, i);
      if (i + 2 < n_chunks) fragments(a0, i + 2);
    }
    wgmma_wait<0>();
#pragma unroll
    for (int kk = 0; kk < kSteps; ++kk) wgmma_pin(a0[kk]), wgmma_pin(a1[kk]);
    wgmma_pin(acc);
  } else {
    for (int i = 0; i < n_chunks; ++i) {
      const int s = i % kStages;
      mbar_wait(&full[s], uint32_t((i / kStages) & 1));
      const unsigned char* st = ring + s * kStageBytes;
      const uint64_t da = wgmma_desc_sw128(st), db = wgmma_desc_sw128(st + kXBytes);
      wgmma_pin(acc);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk) mma_tile<kBN>(acc, da + 2 * kk, db + 2 * kk);
      wgmma_commit();
      wgmma_pin(acc);
      wgmma_wait<1>();  // the previous stage's MMAs are done: its stage is free
      if (i > 0 && lane == 0) mbar_arrive(&empty[(i - 1) % kStages]);
    }
    wgmma_wait<0>();
    wgmma_pin(acc);
  }

  // Every MMA done (their reads of the ring too): the partial tile (kNorm: and the rows' sums of
  // squares) into the ring, then the end.
  __syncthreads();
  float* part = reinterpret_cast<float*>(ring);
  float* part_sq = part + kBM * kLdp;
  if (warp < 4) {
#pragma unroll
    for (int j = 0; j < kBN / 2; j += 2) {
      const int r = warp * 16 + g + 8 * ((j >> 1) & 1), c = (j >> 2) * 8 + 2 * t;
      *reinterpret_cast<float2*>(part + r * kLdp + c) = make_float2(acc[j], acc[j + 1]);
    }
    if (kNorm) store_row_squares(part_sq, sq, warp, g, t);
  }
  reduce_and_store<kOutN, kLdp, kTmaThreads, kNorm, kSwiglu>(p, sg, part, part_sq, tid, m0, n0, rows, cols, splits);
}

using TmaKernel = void (*)(TmaParams);
TmaKernel tma_kernel_of(int warps, int fusion) {
  return kernel_of_family<kMaxTmaWarps, false>(warps, fusion, [](auto w, auto norm, auto swiglu) -> TmaKernel {
    return decode_gemm_tma_kernel<decltype(w)::value, decltype(norm)::value, decltype(swiglu)::value>;
  });
}

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
// A (rows, K) bf16 row-major matrix read in boxes of box_rows x kBK (by default 128-byte swizzled),
// zeros past it. The norm's weights are a (1, K) one: the driver refused them as a rank-1 tensor
// (CUresult 1 on an H100).
CUtensorMap tile_map(const bfloat* base, int64_t rows, int64_t K, int box_rows,
                     CUtensorMapSwizzle swizzle = CU_TENSOR_MAP_SWIZZLE_128B) {
  CUtensorMap m;
  const cuuint64_t dims[2] = {cuuint64_t(K), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(K) * sizeof(bfloat)};
  const cuuint32_t box[2] = {cuuint32_t(kBK), cuuint32_t(box_rows)};
  const cuuint32_t steps[2] = {1, 1};
  const CUresult r = encode_tiled()(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<bfloat*>(base), dims, strides,
                                    box, steps, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                                    swizzle == CU_TENSOR_MAP_SWIZZLE_NONE ? CU_TENSOR_MAP_L2_PROMOTION_NONE
                                                                          : CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                    CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw_error(("decode GEMM: cuTensorMapEncodeTiled failed (CUresult " + std::to_string(int(r)) + ")").c_str());
  return m;
}

}  // namespace

Clusters tma_prepare() {
  Clusters o;
  for (int w = kMinWarps; w <= kMaxTmaWarps; ++w) {
    for (int f = 0; f < 4; ++f)  // kNorm + 2 kSwiglu
      CUDA_CHECK(cudaFuncSetAttribute(tma_kernel_of(w, f), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      int(tma_smem_bytes(w))));
    for (int s = 1; s <= kMaxSplits; ++s)
      o.n[w][s] = active_clusters(reinterpret_cast<const void*>(tma_kernel_of(w, 0)), kTmaThreads, tma_smem_bytes(w), s);
  }
  return o;
}

void tma_launch(cudaLaunchConfig_t lc, const Params& p, const DecodeProduct* products, int warps,
                const DecodeFusion& fusion) {
  TmaParams tp;
  tp.p = p;
  tp.x = tile_map(p.x, p.M, p.K, kBM);
  const int box = fusion.swiglu ? block_n(warps) / 2 : block_n(warps);  // SwiGLU: gate's and up's rows, a box each
  for (int i = 0; i < p.count; ++i)
    tp.w[i] = tile_map(p.seg[i].w, fusion.swiglu ? 2 * products[i].N : products[i].N, p.K, box);
  if (fusion.norm) tp.norm = tile_map(p.norm, 1, p.K, 1, CU_TENSOR_MAP_SWIZZLE_NONE);
  lc.blockDim = dim3(unsigned(kTmaThreads));
  lc.dynamicSmemBytes = tma_smem_bytes(warps);
  const int f = (fusion.norm ? 1 : 0) + (fusion.swiglu ? 2 : 0);
  CUDA_CHECK(cudaLaunchKernelEx(&lc, tma_kernel_of(warps, f), tp));
}

}  // namespace r1::cuda::decode_gemm

// Attention of new tokens over a latent paged cache (ops.h: MLA decoding in the absorbed form, the
// compressed KV laid out as FlashMLA does): a cached row is one kv head of HD numbers (DeepSeek: 576
// = the 512-wide normed latent and the 64-wide rope key) whose first HDv (512) are also the values,
// and every query head of the kv head attends over the same rows (16 heads for Moonlight and
// DeepSeek-V2-Lite, 128 for DeepSeek-V3). CUDA cores; f32 or bf16 rows, math in fp32, softmax in
// base 2.
//
// Why a kernel of its own: a latent row serves every head twice, as its key and as its value, and
// it is wide (decode_attention.cu takes head dims up to 256 and reads values from a cache of their
// own). So a block stages a tile of rows in shared memory once and runs both products of 16 heads
// on it: HD + HDv multiply-adds per head for each row read.
//
// - One block (256 threads) per (token, kv head, group of 16 query heads, split). The group's q
//   sits in shared memory in f32, pre-scaled by scale * log2(e); heads past the group's end compute
//   on q = 0 and are dropped.
// - The split's keys go a tile of 32 rows at a time, in four steps:
//   staging: each warp looks up 4 rows in the block table and copies them into shared memory as f32
//     (16-byte loads when the rows are 16-byte aligned); rows past the split's end are zeros;
//   scores: thread = (2 heads, 8 keys, every 8th 4-dim chunk): the 8 lanes of one (heads, keys)
//     pair read consecutive chunks, so each shared read takes one wavefront for the keys (the warp
//     shares them) and four for q, and feeds 16 or 4 FMAs; a 3-step butterfly sums the 8 partial
//     dot products, leaving each lane 2 scores;
//   softmax: one warp per head (lane = key) updates the head's running max and sum (online
//     softmax) and writes the probabilities key-major;
//   P.V: thread = (8 heads, one 4-dim chunk of the values per 512 dims) over the tile's rows, read
//     again as values: 8 probabilities (two broadcast reads) and one chunk feed 32 FMAs. A thread's
//     accumulators are whole (no sum across threads), so the end writes them divided by the sum.
// - Shared memory: (16 + 32) * HD floats (110.6 KB at HD 576: two blocks fit on an H100/H200 SM).
// - Split over the key range when the grid alone would leave the GPU idle (decode_split.h), merged
//   in split order: deterministic, no atomics, launch shapes from host shapes only (graph replays).
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/decode_split.h"

namespace r1::cuda {

namespace {

constexpr int kThreadsL = 256;
constexpr int kWarpsL = kThreadsL / 32;
constexpr int kHeads = 16;                      // query heads per block
constexpr int kKeys = 32;                       // key rows per tile: the softmax's lane is its key
constexpr int kRowsPerWarp = kKeys / kWarpsL;   // staging
constexpr int kSlices = 8;                      // scores: lanes sharing a (heads, keys) pair
constexpr int kScoreHeads = 2, kScoreKeys = 8;  // scores: per thread
constexpr int kPvHeads = 8;                     // P.V: heads per thread
constexpr int kPvThreads = kThreadsL * kPvHeads / kHeads;  // P.V: threads per head octet
constexpr int kPStride = kHeads + 4;  // p_s row: 16-byte aligned, 4-way (not 16-way) conflicts on writes
constexpr float kLog2e = 1.4426950408889634f;

// The score mapping below: lane = slice + 8 * (head quarter), warp = (head half, key octet).
static_assert(kKeys == 32 && kSlices * 4 == 32, "scores: 8 slices x 4 head rows per warp");
static_assert(kWarpsL == 2 * (kKeys / kScoreKeys) && kHeads == 2 * 4 * kScoreHeads,
              "scores: tiles per block");
static_assert(kHeads == 2 * kWarpsL, "softmax: two heads per warp");
static_assert(kPvThreads == 128, "P.V: 128 chunks of 4 = 512 value dims per pass");

size_t smem_bytes(int64_t HD) {
  return size_t(kHeads + kKeys) * size_t((HD + 3) & ~int64_t(3)) * sizeof(float);
}

// The paged cache's geometry, as the kernel reads it.
struct Pages {
  const int32_t* __restrict__ table;  // (slots, MB)
  int BS, MB;
};

__device__ __forceinline__ float4 lds4(const float* p) { return *reinterpret_cast<const float4*>(p); }

__device__ __forceinline__ float dot4(float4 a, float4 b, float acc) {
  return fmaf(a.w, b.w, fmaf(a.z, b.z, fmaf(a.y, b.y, fmaf(a.x, b.x, acc))));
}

// V floats to shared memory at p (16-byte aligned when V % 4 == 0).
template <int V>
__device__ __forceinline__ void sts(float* p, const float (&x)[V]) {
  if constexpr (V % 4 == 0) {
#pragma unroll
    for (int i = 0; i < V / 4; ++i)
      reinterpret_cast<float4*>(p)[i] = make_float4(x[4 * i], x[4 * i + 1], x[4 * i + 2], x[4 * i + 3]);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) p[i] = x[i];
  }
}

// One butterfly step over lanes `mask` apart on v[0, 2H): each lane of the pair keeps one half (the
// upper one on the `up` lane), summed with the partner's, in v[0, H).
template <int H, int N>
__device__ __forceinline__ void halve(float (&v)[N], int mask, bool up) {
#pragma unroll
  for (int i = 0; i < H; ++i) {
    const float send = up ? v[i] : v[i + H], keep = up ? v[i + H] : v[i];
    v[i] = keep + __shfl_xor_sync(0xffffffffu, send, mask);
  }
}

// T: float or __nv_bfloat16. VK: elements per staging load (16 bytes; 1 when the rows are not
// 16-byte aligned). CV: value chunks per P.V thread (1: HDv <= 512; 2: HDv <= 1024). part: the
// split partials (decode_split.h; null: one split, out written directly).
template <typename T, int VK, int CV>
__global__ void __launch_bounds__(kThreadsL, CV == 1 ? 2 : 1)
latent_attention_kernel(T* __restrict__ out, float* __restrict__ part, const T* __restrict__ q,
                        const T* __restrict__ k_cache, Pages pages, const int32_t* __restrict__ slots,
                        const int32_t* __restrict__ pos, int64_t T_, int NH, int NKV, int HD, int HDv, int HG,
                        int S, float qscale) {
  extern __shared__ __align__(16) float smem[];
  __shared__ float s_s[kHeads][kKeys];                   // scores, head-major
  __shared__ __align__(16) float p_s[kKeys * kPStride];  // probabilities, key-major
  __shared__ float corr_s[kHeads], m_s[kHeads], l_s[kHeads];
  const int ld = (HD + 3) & ~3;     // shared row stride: whole 4-dim chunks, the tail zero
  float* q_s = smem;                // (kHeads, ld)
  float* k_s = smem + kHeads * ld;  // (kKeys, ld): the tile's rows, keys and values alike

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const SplitBlock w = split_block(blockIdx.x, pos, T_, NH, NKV, HG, S, kHeads, kKeys);
  const int64_t t = w.t, k0 = w.k0, k1 = w.k1, prow = w.prow, len = w.len;
  const int kvh = w.kvh, h0 = w.h0, gn = w.gn;
  float* lse_out = part ? part + int64_t(S) * T_ * NH * HDv : nullptr;
  if (k0 >= len) {  // the merge skips this split (block-uniform: before any barrier)
    if (part && tid < gn) lse_out[prow + tid] = -INFINITY;
    return;
  }

  const T* qt = q + (t * NH + h0) * int64_t(HD);
  for (int i = tid; i < kHeads * ld; i += kThreadsL) {
    const int g = i / ld, d = i - g * ld;
    q_s[i] = g < gn && d < HD ? qscale * to_f32(qt[g * HD + d]) : 0.0f;
  }
  const int pad = ld - HD;  // the staging writes columns [0, HD) only
  for (int i = tid; i < kKeys * pad; i += kThreadsL) k_s[(i / pad) * ld + HD + i % pad] = 0.0f;

  const int64_t seq = int64_t(slots[t]) * pages.MB;  // this token's row of the block table
  const int NCK = HD / VK, NC = ld / 4, NCV = (HDv + 3) / 4;
  // Scores: heads sh + 4 * i, keys sk + k, chunks sl + kSlices * m.
  const int sl = lane % kSlices, sh = (warp & 1) * 8 + lane / kSlices, sk = (warp >> 1) * kScoreKeys;
  // P.V: heads ph + g, chunks pc + kPvThreads * cv.
  const int ph = tid / kPvThreads * kPvHeads, pc = tid % kPvThreads;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};  // heads warp, warp + kWarpsL
  float acc[CV][kPvHeads][4];
#pragma unroll
  for (int cv = 0; cv < CV; ++cv)
#pragma unroll
    for (int g = 0; g < kPvHeads; ++g)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[cv][g][e] = 0.0f;

  for (int64_t kb = k0; kb < k1; kb += kKeys) {
    const int n = k1 - kb < kKeys ? int(k1 - kb) : kKeys;

    // Staging: rows warp + kWarpsL * i, each looked up once (the lanes share the table entry).
    const T* src[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int j = warp + kWarpsL * i;
      src[i] = nullptr;
      if (j < n) {
        const int64_t key = kb + j;
        const int64_t row = int64_t(pages.table[seq + key / pages.BS]) * pages.BS + key % pages.BS;
        src[i] = k_cache + (row * NKV + kvh) * HD;
      }
    }
    for (int c = lane; c < NCK; c += 32) {
      float x[kRowsPerWarp][VK];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        if (src[i]) {
          load_vec<VK>(x[i], src[i] + c * VK);
        } else {
#pragma unroll
          for (int v = 0; v < VK; ++v) x[i][v] = 0.0f;
        }
      }
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) sts<VK>(k_s + (warp + kWarpsL * i) * ld + c * VK, x[i]);
    }
    __syncthreads();

    // Scores (base 2), -inf past the split's end.
    {
      float sc[kScoreHeads * kScoreKeys];  // head i, key k at i * kScoreKeys + k
#pragma unroll
      for (int i = 0; i < kScoreHeads * kScoreKeys; ++i) sc[i] = 0.0f;
#pragma unroll 1
      for (int c = sl; c < NC; c += kSlices) {
        float4 qv[kScoreHeads], kv[kScoreKeys];
#pragma unroll
        for (int i = 0; i < kScoreHeads; ++i) qv[i] = lds4(q_s + (sh + 4 * i) * ld + 4 * c);
#pragma unroll
        for (int k = 0; k < kScoreKeys; ++k) kv[k] = lds4(k_s + (sk + k) * ld + 4 * c);
#pragma unroll
        for (int i = 0; i < kScoreHeads; ++i)
#pragma unroll
          for (int k = 0; k < kScoreKeys; ++k)
            sc[i * kScoreKeys + k] = dot4(qv[i], kv[k], sc[i * kScoreKeys + k]);
      }
      // Every lane reaches the shuffles (the loop above ends on all of them).
      halve<8>(sc, 4, (sl & 4) != 0);  // keep head (sl >> 2) & 1
      halve<4>(sc, 2, (sl & 2) != 0);  // keys 4 * ((sl >> 1) & 1) + [0, 4)
      halve<2>(sc, 1, (sl & 1) != 0);  // keys ... + 2 * (sl & 1) + [0, 2)
      const int h = sh + 4 * ((sl >> 2) & 1), j = sk + 4 * ((sl >> 1) & 1) + 2 * (sl & 1);
      s_s[h][j] = j < n ? sc[0] : -INFINITY;
      s_s[h][j + 1] = j + 1 < n ? sc[1] : -INFINITY;
    }
    __syncthreads();

    // Online softmax, one warp per head. Key 0 of every tile is valid, so the max is finite.
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int g = warp + kWarpsL * i;
      const float x = s_s[g][lane];
      const float mnew = fmaxf(m_run[i], warp_reduce(x, MaxOp{}));
      const float corr = exp2f(m_run[i] - mnew), p = exp2f(x - mnew);
      p_s[lane * kPStride + g] = p;
      l_run[i] = l_run[i] * corr + warp_reduce(p, SumOp{});
      m_run[i] = mnew;
      if (lane == 0) corr_s[g] = corr;
    }
    __syncthreads();

    // P.V over the tile's valid rows, read as values.
#pragma unroll
    for (int g = 0; g < kPvHeads; ++g) {
      const float corr = corr_s[ph + g];
#pragma unroll
      for (int cv = 0; cv < CV; ++cv)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[cv][g][e] *= corr;
    }
#pragma unroll 4
    for (int j = 0; j < n; ++j) {
      const float4 pa = lds4(p_s + j * kPStride + ph), pb = lds4(p_s + j * kPStride + ph + 4);
      const float p[kPvHeads] = {pa.x, pa.y, pa.z, pa.w, pb.x, pb.y, pb.z, pb.w};
#pragma unroll
      for (int cv = 0; cv < CV; ++cv) {
        const int c = pc + kPvThreads * cv;
        if (c < NCV) {
          const float4 v = lds4(k_s + j * ld + 4 * c);
#pragma unroll
          for (int g = 0; g < kPvHeads; ++g) {
            acc[cv][g][0] = fmaf(p[g], v.x, acc[cv][g][0]);
            acc[cv][g][1] = fmaf(p[g], v.y, acc[cv][g][1]);
            acc[cv][g][2] = fmaf(p[g], v.z, acc[cv][g][2]);
            acc[cv][g][3] = fmaf(p[g], v.w, acc[cv][g][3]);
          }
        }
      }
    }
    __syncthreads();  // the next tile rewrites k_s, s_s, p_s and corr_s
  }

  if (lane == 0) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      m_s[warp + kWarpsL * i] = m_run[i];
      l_s[warp + kWarpsL * i] = l_run[i];
    }
  }
  __syncthreads();
#pragma unroll
  for (int g = 0; g < kPvHeads; ++g) {
    const int h = ph + g;
    if (h >= gn) continue;
    const float inv = 1.0f / l_s[h];
#pragma unroll
    for (int cv = 0; cv < CV; ++cv) {
      const int c = pc + kPvThreads * cv;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int d = 4 * c + e;
        if (c >= NCV || d >= HDv) continue;
        if (part) {
          part[(prow + h) * HDv + d] = acc[cv][g][e] * inv;
        } else {
          out[(t * NH + h0 + h) * HDv + d] = from_f32<T>(acc[cv][g][e] * inv);
        }
      }
    }
  }
  if (part && tid < gn) lse_out[prow + tid] = m_s[tid] + log2f(l_s[tid]);
}

template <typename T>
using LatentKernel = void (*)(T*, float*, const T*, const T*, Pages, const int32_t*, const int32_t*, int64_t,
                              int, int, int, int, int, int, float);

// The kernel, its shared-memory limit raised (to what the largest head dim needs) on first use.
template <typename T, int VK, int CV>
LatentKernel<T> configured() {
  static const LatentKernel<T> k = [] {
    const LatentKernel<T> f = latent_attention_kernel<T, VK, CV>;
    CUDA_CHECK(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(smem_bytes(kMaxLatentHeadDim))));
    CUDA_CHECK(cudaFuncSetAttribute(f, cudaFuncAttributePreferredSharedMemoryCarveout,
                                    int(cudaSharedmemCarveoutMaxShared)));
    return f;
  }();
  return k;
}

template <typename T>
LatentKernel<T> pick(bool vec, bool wide) {
  constexpr int V = kVec<T>;
  if (vec) return wide ? configured<T, V, 2>() : configured<T, V, 1>();
  return wide ? configured<T, 1, 2>() : configured<T, 1, 1>();
}

template <typename T>
void attention_cached_latent_t(T* out, const T* q, const T* k_cache, const PagedCache& pc,
                               const int32_t* slots, const int32_t* pos, int64_t T_, int64_t NH, float scale,
                               float* workspace, int64_t workspace_floats) {
  if (T_ == 0 || NH == 0) return;
  const int64_t NKV = pc.NKV, HD = pc.HD, HDv = pc.HDV, L = pc.MB * pc.BS;
  static_assert(kMaxLatentHeadDim <= 2 * 4 * kPvThreads, "P.V: CV = 2 covers the widest values");
  if (HD < 1 || HD > kMaxLatentHeadDim || HDv < 1 || HDv > HD)
    throw_error("CUDA attention_cached over a latent cache: head dims 1 <= HDv <= HD <= 1024 only");
  const int64_t G = NH / NKV, HG = (G + kHeads - 1) / kHeads, blocks = T_ * NKV * HG;
  // 16-byte staging loads when every row start is 16-byte aligned (row offsets are multiples of HD).
  const bool vec = HD % kVec<T> == 0 && aligned16(k_cache);
  const LatentKernel<T> kernel = pick<T>(vec, HDv > 4 * kPvThreads);
  const size_t smem = smem_bytes(HD);
  int resident = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, kernel, kThreadsL, smem));
  int64_t S = best_splits(blocks, L, resident);
  const int64_t per_split = T_ * NH * (HDv + 1);
  if (S > 1) S = std::min(S, workspace ? workspace_floats / per_split : 0);  // what the workspace holds
  float* part = S > 1 ? workspace : nullptr;
  S = std::max<int64_t>(S, 1);
  const Pages pages{pc.block_table, int(pc.BS), int(pc.MB)};
  kernel<<<unsigned(blocks * S), kThreadsL, smem, context().stream>>>(
      out, part, q, k_cache, pages, slots, pos, T_, int(NH), int(NKV), int(HD), int(HDv), int(HG), int(S),
      scale * kLog2e);
  CUDA_CHECK_LAUNCH();
  merge_splits(out, part, T_ * NH, HDv, S);
}

}  // namespace

void attention_cached_latent(float* out, const float* q, const float* k_cache, const PagedCache& pc,
                             const int32_t* slots, const int32_t* pos, int64_t T, int64_t NH, float scale,
                             float* workspace, int64_t workspace_floats) {
  attention_cached_latent_t(out, q, k_cache, pc, slots, pos, T, NH, scale, workspace, workspace_floats);
}

void attention_cached_latent(bf16* out, const bf16* q, const bf16* k_cache, const PagedCache& pc,
                             const int32_t* slots, const int32_t* pos, int64_t T, int64_t NH, float scale,
                             float* workspace, int64_t workspace_floats) {
  attention_cached_latent_t(dp(out), dp(q), dp(k_cache), pc, slots, pos, T, NH, scale, workspace,
                            workspace_floats);
}

}  // namespace r1::cuda

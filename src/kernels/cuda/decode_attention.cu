// Attention of new tokens over the paged KV cache (decode steps, prefill chunks), flash-decoding
// style. Memory-bound: each K/V row a token reaches is read once for all the query heads of its kv
// head (grouped-query attention); math in fp32, softmax in base 2.
//
// bf16 at the flash head dims goes to the tensor-core kernel (decode_attention_mma.cu); this file
// chooses the path and the splits (decode_split.h) for both and merges split partials. The CUDA-core
// kernel below takes f32, the other head dims and unaligned views.
//
// - The cache is a pool of blocks of BS rows; a sequence's row j is row j % BS of block
//   block_table[slot, j / BS]. Each tile of keys starts by looking up the physical rows of its keys
//   once (into shared memory, double-buffered so the previous tile's P.V may still read its own);
//   every K and V load then goes through that list. Keys (HD) and values (HDv) keep their own head
//   dims (MLA).
//
// - One block (128 threads) per (token, kv head, head group, split). A head group is up to 8 query
//   heads of one kv head (G > 8: several groups read the same rows, the later ones mostly from L2).
//   q of the group sits in shared memory, pre-scaled by scale * log2(e).
// - Keys go a tile of 128 at a time, in three steps:
//   scores: 4 lanes share a key row, each loading 16-byte chunks (64 contiguous bytes per row and
//     load instruction) and taking a quarter of the dims for every head, on 4 rows at once (one q
//     read from shared memory feeds 4 FMAs); a 2-step butterfly sums the quarters, leaving each
//     lane the sums of some heads;
//   softmax: one warp per head takes the tile max, rescales its running sum (online softmax) and
//     turns the scores into probabilities (stored key-major: the heads of a key in one vector);
//   P.V: each thread owns 2 dims of the row for every head and a share of the tile's keys (V rows
//     read coalesced, 16 loads in flight); the shares are summed once, at the end.
//   128 registers at most, so 4 blocks fit on an SM (the split policy counts on it).
// - Split over the key range (flash-decoding, decode_split.h) when T * NKV * groups blocks would
//   leave the GPU idle. The split count depends on host shapes only (a captured graph replays with new pos): split s
//   takes keys [s * chunk, (s + 1) * chunk) of len = pos[t] + 1, chunk = round_up(ceil(len /
//   splits), tile) computed on the device, and writes its normalized o and base-2 lse to the f32
//   workspace (an empty split writes lse = -inf and no o); a second kernel merges the splits.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/decode_attention_mma.h"
#include "kernels/cuda/decode_split.h"
#include "kernels/invariance.h"

namespace r1::cuda {

namespace {

constexpr int kBlock = 128;                         // threads per block
constexpr int kWarps = kBlock / 32;
constexpr int kTile = 128;                          // keys per tile
constexpr int kLanesPerKey = 4;                     // lanes sharing a key row in the score step
constexpr int kKeyGroups = kBlock / kLanesPerKey;   // key rows scored at once
constexpr int kRows = 4;                            // key rows per lane at once (K loads in flight)
constexpr int kVBatch = 16;                         // V loads in flight per thread
constexpr int kRed = kBlock * 2;                    // the P.V shares of one head: KS * HDv floats
constexpr int kBlocksPerSm = 4;                     // resident blocks per SM (the register bound)
constexpr float kLog2e = 1.4426950408889634f;

static_assert(kTile % (kKeyGroups * kRows) == 0 && kTile % 32 == 0, "tile rows");
// P.V owns VV <= 2 dims per thread (scalar rows: up to 2 chunks of 1), so KS * HDv <= kRed.
static_assert(kMaxHeadDim <= 2 * kBlock && kMaxHeadDim <= kRed, "P.V shares");

// V floats of shared memory (16-byte aligned when V % 4 == 0).
template <int V>
__device__ __forceinline__ void lds(float (&r)[V], const float* p) {
  if constexpr (V % 4 == 0) {
#pragma unroll
    for (int i = 0; i < V / 4; ++i) {
      const float4 x = reinterpret_cast<const float4*>(p)[i];
      r[4 * i] = x.x;
      r[4 * i + 1] = x.y;
      r[4 * i + 2] = x.z;
      r[4 * i + 3] = x.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) r[i] = p[i];
  }
}

// Sums each lane's GP partial scores over the 4 lanes of its key row (r = lane % 4). Each
// butterfly step hands half of the heads to the partner lane, so lane r ends with kHeld<GP> full
// sums: s[i] is head held_head<GP>(r, i). With GP < 4 some lanes hold the same head.
template <int GP>
constexpr int kHeld = GP >= 4 ? GP / 4 : 1;

template <int GP>
__device__ __forceinline__ int held_head(int r, int i) {
  int h = i;
  if constexpr (GP >= 4) h += (r & 1) * (GP / 4);
  if constexpr (GP >= 2) h += ((r >> 1) & 1) * (GP / 2);
  return h;
}

// One step over lanes `mask` apart: keep half of the n values (the upper half on the `up` lane).
template <int GP, int N>
__device__ __forceinline__ void butterfly(float (&s)[GP], int lane_mask, bool up) {
  if constexpr (N >= 2) {
    constexpr int H = N / 2;
#pragma unroll
    for (int i = 0; i < H; ++i) {
      const float send = up ? s[i] : s[i + H], keep = up ? s[i + H] : s[i];
      s[i] = keep + __shfl_xor_sync(0xffffffffu, send, lane_mask);
    }
  } else {
    s[0] += __shfl_xor_sync(0xffffffffu, s[0], lane_mask);
  }
}

template <int GP>
__device__ __forceinline__ void quad_reduce(float (&s)[GP], int r) {
  butterfly<GP, GP>(s, 2, (r & 2) != 0);
  butterfly<GP, (GP >= 2 ? GP / 2 : 1)>(s, 1, (r & 1) != 0);
}

// The paged cache's geometry, as the kernel reads it.
struct Pages {
  const int32_t* __restrict__ table;  // (slots, MB)
  int BS, MB;
};

// T: float or __nv_bfloat16. GP: query heads per block (1, 2, 4, 8; heads past the group's end
// compute on q = 0 and are dropped). VK: elements per K load (16 bytes; 1 when the rows are not
// 16-byte aligned). part: the split partials (null: one split, out written directly): o at
// ((split * T + t) * NH + h) * HDv, then lse (base 2) at S * T * NH * HDv + (split * T + t) * NH + h.
template <typename T, int GP, int VK>
__global__ void __launch_bounds__(kBlock, kBlocksPerSm)
decode_attention_kernel(T* __restrict__ out, float* __restrict__ part, const T* __restrict__ q,
                        const T* __restrict__ k_cache, const T* __restrict__ v_cache, Pages pages,
                        const int32_t* __restrict__ slots, const int32_t* __restrict__ pos, int64_t T_, int NH,
                        int NKV, int HD, int HDv, int HG, int S, float qscale) {
  constexpr int VV = VK == 1 ? 1 : 2;    // elements per V load
  constexpr int CPT = VK == 1 ? 2 : 1;   // V chunks per thread (scalar rows: up to 2 * kBlock dims)
  constexpr int kHeadsPerWarp = (GP + kWarps - 1) / kWarps;
  __shared__ __align__(16) float q_s[GP * kMaxHeadDim];
  __shared__ float p_s[GP * kTile];                  // scores, head-major
  __shared__ __align__(16) float pk_s[kTile * GP];   // probabilities, key-major (vector reads in P.V)
  __shared__ float red[kRed];
  __shared__ float corr_s[GP], m_s[GP], l_s[GP];
  __shared__ int64_t koff_s[2][kTile], voff_s[2][kTile];  // where the tile's key and value rows start

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const SplitBlock w = split_block(blockIdx.x, pos, T_, NH, NKV, HG, S, GP, kTile);
  const int64_t t = w.t, k0 = w.k0, k1 = w.k1, prow = w.prow, len = w.len;
  const int kvh = w.kvh, h0 = w.h0, gn = w.gn;
  float* lse_out = part ? part + int64_t(S) * T_ * NH * HDv : nullptr;
  if (k0 >= len) {  // the merge skips this split (block-uniform: before any barrier)
    if (part && tid < gn) lse_out[prow + tid] = -INFINITY;
    return;
  }

  const T* qt = q + (t * NH + h0) * HD;
  for (int i = tid; i < GP * HD; i += kBlock) {
    const int g = i / HD, d = i - g * HD;
    q_s[g * kMaxHeadDim + d] = g < gn ? qscale * to_f32(qt[i]) : 0.0f;
  }

  float m_run[kHeadsPerWarp], l_run[kHeadsPerWarp];  // of heads warp + kWarps * i
#pragma unroll
  for (int i = 0; i < kHeadsPerWarp; ++i) {
    m_run[i] = -INFINITY;
    l_run[i] = 0.0f;
  }
  float acc[CPT][GP][VV];
#pragma unroll
  for (int cc = 0; cc < CPT; ++cc)
#pragma unroll
    for (int g = 0; g < GP; ++g)
#pragma unroll
      for (int v = 0; v < VV; ++v) acc[cc][g][v] = 0.0f;

  const int NCK = HD / VK, NCV = HDv / VV;
  // P.V: thread = (key share vs of KS, chunk vc; chunk vc + kBlock too when NCV > kBlock).
  const int KS = max(1, kBlock / NCV), vs = tid / NCV, vc = tid - vs * NCV;
  const bool vactive = vs < KS;
  // Scores: 4 lanes (r) per key row grp + kKeyGroups * i.
  const int grp = tid / kLanesPerKey, r = tid % kLanesPerKey;
  const bool writer = (GP >= 4 || (r & 1) == 0) && (GP >= 2 || (r & 2) == 0);  // one lane per held head
  __syncthreads();

  for (int64_t kb = k0; kb < k1; kb += kTile) {
    const int n = k1 - kb < kTile ? int(k1 - kb) : kTile;
    const int buf = int(kb / kTile) & 1;  // kb is a multiple of kTile: consecutive tiles alternate
    for (int j = tid; j < kTile; j += kBlock) {
      const int64_t key = kb + j;
      // Physical row r of the cache; kv head kvh of it starts at element (r * NKV + kvh) * HD.
      const int64_t r = j < n ? int64_t(pages.table[int64_t(slots[t]) * pages.MB + key / pages.BS]) * pages.BS +
                                    key % pages.BS
                              : 0;
      koff_s[buf][j] = (r * NKV + kvh) * HD;
      voff_s[buf][j] = (r * NKV + kvh) * HDv;
    }
    __syncthreads();

    // Scores. Each lane takes kRows rows at once, so one q load from shared memory feeds kRows FMAs.
#pragma unroll 1
    for (int j0 = grp; j0 < kTile; j0 += kKeyGroups * kRows) {  // the same trip count on every lane
      float s[kRows][GP];
#pragma unroll
      for (int i = 0; i < kRows; ++i)
#pragma unroll
        for (int g = 0; g < GP; ++g) s[i][g] = 0.0f;
#pragma unroll 1
      for (int c = r; c < NCK; c += kLanesPerKey) {
        float kx[kRows][VK];
#pragma unroll
        for (int i = 0; i < kRows; ++i) {
          const int j = j0 + i * kKeyGroups;
          if (j < n) {
            load_vec<VK>(kx[i], k_cache + koff_s[buf][j] + c * VK);
          } else {
#pragma unroll
            for (int v = 0; v < VK; ++v) kx[i][v] = 0.0f;
          }
        }
#pragma unroll
        for (int g = 0; g < GP; ++g) {
          float qv[VK];
          lds<VK>(qv, q_s + g * kMaxHeadDim + c * VK);
#pragma unroll
          for (int i = 0; i < kRows; ++i)
#pragma unroll
            for (int v = 0; v < VK; ++v) s[i][g] = fmaf(qv[v], kx[i][v], s[i][g]);
        }
      }
#pragma unroll
      for (int i = 0; i < kRows; ++i) {
        const int j = j0 + i * kKeyGroups;
        quad_reduce<GP>(s[i], r);
        if (writer) {
#pragma unroll
          for (int x = 0; x < kHeld<GP>; ++x) p_s[held_head<GP>(r, x) * kTile + j] = j < n ? s[i][x] : -INFINITY;
        }
      }
    }
    __syncthreads();

    // Online softmax, one warp per head. Every tile has a valid key, so the max is finite.
#pragma unroll
    for (int i = 0; i < kHeadsPerWarp; ++i) {
      const int g = warp + kWarps * i;
      if (g < GP) {
        float x[kTile / 32], mx = -INFINITY;
#pragma unroll
        for (int e = 0; e < kTile / 32; ++e) {
          x[e] = p_s[g * kTile + lane + 32 * e];
          mx = fmaxf(mx, x[e]);
        }
        mx = warp_reduce(mx, MaxOp{});
        const float mnew = fmaxf(m_run[i], mx), corr = exp2f(m_run[i] - mnew);
        float sum = 0.0f;
#pragma unroll
        for (int e = 0; e < kTile / 32; ++e) {
          const float p = exp2f(x[e] - mnew);
          pk_s[(lane + 32 * e) * GP + g] = p;
          sum += p;
        }
        sum = warp_reduce(sum, SumOp{});
        l_run[i] = l_run[i] * corr + sum;
        m_run[i] = mnew;
        if (lane == 0) corr_s[g] = corr;
      }
    }
    __syncthreads();

#pragma unroll
    for (int g = 0; g < GP; ++g) {
      const float corr = corr_s[g];
#pragma unroll
      for (int cc = 0; cc < CPT; ++cc)
#pragma unroll
        for (int v = 0; v < VV; ++v) acc[cc][g][v] *= corr;
    }
    if (vactive) {
#pragma unroll 1
      for (int j0 = vs; j0 < n; j0 += KS * kVBatch) {
        float vx[kVBatch][CPT][VV];
#pragma unroll
        for (int u = 0; u < kVBatch; ++u) {
          const int j = j0 + u * KS;
#pragma unroll
          for (int cc = 0; cc < CPT; ++cc) {
            const int c = vc + cc * kBlock;
            if (j < n && c < NCV) {
              load_vec<VV>(vx[u][cc], v_cache + voff_s[buf][j] + c * VV);
            } else {
#pragma unroll
              for (int v = 0; v < VV; ++v) vx[u][cc][v] = 0.0f;
            }
          }
        }
#pragma unroll
        for (int u = 0; u < kVBatch; ++u) {
          const int j = j0 + u * KS;
          if (j < n) {
            float p[GP];
            lds<GP>(p, pk_s + j * GP);
#pragma unroll
            for (int cc = 0; cc < CPT; ++cc)
#pragma unroll
              for (int g = 0; g < GP; ++g)
#pragma unroll
                for (int v = 0; v < VV; ++v) acc[cc][g][v] = fmaf(p[g], vx[u][cc][v], acc[cc][g][v]);
          }
        }
      }
    }
    // No barrier here: the next tile writes the other koff_s/voff_s buffer, p_s (last read before the
    // barrier above), and pk_s and corr_s only after its barriers, which every thread reaches after
    // this P.V.
  }

#pragma unroll
  for (int i = 0; i < kHeadsPerWarp; ++i) {
    const int g = warp + kWarps * i;
    if (g < GP && lane == 0) {
      m_s[g] = m_run[i];
      l_s[g] = l_run[i];
    }
  }
  __syncthreads();

  // Sum the key shares of each head (g < gn: block-uniform, so the barriers are safe).
#pragma unroll
  for (int g = 0; g < GP; ++g) {
    if (g < gn) {
      if (vactive) {
#pragma unroll
        for (int cc = 0; cc < CPT; ++cc) {
          const int c = vc + cc * kBlock;
          if (c < NCV) {
#pragma unroll
            for (int v = 0; v < VV; ++v) red[vs * HDv + c * VV + v] = acc[cc][g][v];
          }
        }
      }
      __syncthreads();
      const float inv = 1.0f / l_s[g];
      for (int d = tid; d < HDv; d += kBlock) {
        float o = 0.0f;
        for (int x = 0; x < KS; ++x) o += red[x * HDv + d];
        if (part) {
          part[(prow + g) * HDv + d] = o * inv;
        } else {
          out[(t * NH + h0 + g) * HDv + d] = from_f32<T>(o * inv);
        }
      }
      __syncthreads();
    }
  }
  if (part && tid < gn) lse_out[prow + tid] = m_s[tid] + log2f(l_s[tid]);
}

bool g_tensor_cores = true;  // set_decode_attention_tensor_cores
int64_t g_splits = 0;        // set_decode_attention_splits
bool g_fused_rope = true;    // set_decode_rope_fused
unsigned long long* g_stamps = nullptr;  // set_decode_attention_stamps
int64_t g_stamp_words = 0;

// Query heads per block for a GQA group of G: 1, 2, 4 or 8 (larger groups take several blocks).
int heads_per_block(int64_t G) { return G >= 5 ? 8 : G >= 3 ? 4 : int(G); }

template <typename T, int GP>
void launch(bool vec, unsigned grid, T* out, float* part, const T* q, const T* k_cache, const T* v_cache,
            Pages pages, const int32_t* slots, const int32_t* pos, int64_t T_, int NH, int NKV, int HD, int HDv,
            int HG, int S, float qscale) {
  cudaStream_t st = context().stream;
  if (vec) {
    decode_attention_kernel<T, GP, kVec<T>><<<grid, kBlock, 0, st>>>(out, part, q, k_cache, v_cache, pages, slots,
                                                                      pos, T_, NH, NKV, HD, HDv, HG, S, qscale);
  } else {
    decode_attention_kernel<T, GP, 1><<<grid, kBlock, 0, st>>>(out, part, q, k_cache, v_cache, pages, slots, pos, T_,
                                                               NH, NKV, HD, HDv, HG, S, qscale);
  }
  CUDA_CHECK_LAUNCH();
}

// The tensor-core kernel (decode_attention_mma.cu) on a's operands: its key splits (by waves, or
// set_decode_attention_splits; as many as the workspace holds), then the merge of the splits.
void run_mma(flash::DecodeArgs a, const PagedCache& pc, float* workspace, int64_t workspace_floats) {
  const int64_t G = a.NH / a.NKV, HG = (G + flash::kDecodeMmaHeads - 1) / flash::kDecodeMmaHeads;
  const int64_t blocks = a.T * a.NKV * HG, L = pc.MB * pc.BS, per_split = a.T * a.NH * (pc.HDV + 1);
  int64_t S = g_splits > 0 ? g_splits
                           : best_splits(blocks, L, flash::decode_mma_blocks_per_sm(pc.HD, pc.HDV), kMmaSplitKeys);
  if (S > 1) S = std::min(S, workspace ? workspace_floats / per_split : 0);  // what the workspace holds
  a.part = S > 1 ? workspace : nullptr;
  S = std::max<int64_t>(S, 1);
  if (g_stamps) {
    const int64_t need = blocks * S * kDecodeStampWords;
    if (need > g_stamp_words)
      throw_error(("CUDA attention_cached: the stamp buffer holds " + std::to_string(g_stamp_words) +
                   " words, the launch needs " + std::to_string(need))
                      .c_str());
    a.stamps = g_stamps;
  }
  flash::decode_mma(a, pc.HD, pc.HDV, int(HG), int(S));
  merge_splits(a.out, a.part, a.T * a.NH, pc.HDV, S);
}

template <typename T>
void attention_cached_t(T* out, const T* q, const T* k_cache, const T* v_cache, const PagedCache& pc,
                        const int32_t* slots, const int32_t* pos, int64_t T_, int64_t NH, float scale,
                        float* workspace, int64_t workspace_floats) {
  if (T_ == 0 || NH == 0) return;
  const int64_t NKV = pc.NKV, HD = pc.HD, HDv = pc.HDV, L = pc.MB * pc.BS;
  if (HD > kMaxHeadDim || HDv > kMaxHeadDim)
    throw_error("CUDA attention_cached: head dims HD, HDv > 256 are not supported");
  const int64_t G = NH / NKV, per_split = T_ * NH * (HDv + 1);
  if (ops::batch_invariant()) {  // the training forward's order (ops::supports vetted the case)
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      if (flash_attention_native(HD, HDv) && aligned16(q) && aligned16(k_cache) && aligned16(v_cache)) {
        const flash::DecodeArgs a{out, nullptr, q, k_cache, v_cache, pc.block_table, pc.BS, pc.MB, slots, pos, T_,
                                  int(NH), int(NKV), scale * kLog2e};
        flash::decode_exact(a, HD, HDv, exact_attention_split(HD, HDv), workspace, workspace_floats, L);
        return;
      }
    }
    throw_error("CUDA attention_cached: the batch-invariant decode takes bf16 at the tensor-core head dims, "
                "16-byte aligned");
  }
  // The tensor cores for bf16 at the flash head dims (decode_attention_mma.cu), else this file's kernel.
  bool mma = false;
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    mma = g_tensor_cores && flash_attention_native(HD, HDv) && aligned16(q) && aligned16(k_cache) && aligned16(v_cache);
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    if (mma) {
      flash::DecodeArgs a{out, nullptr, q, k_cache, v_cache, pc.block_table, pc.BS, pc.MB, slots, pos, T_,
                          int(NH), int(NKV), scale * kLog2e};
      run_mma(a, pc, workspace, workspace_floats);
      return;
    }
  }
  const int GP = heads_per_block(G);
  const int64_t HG = (G + GP - 1) / GP, blocks = T_ * NKV * HG;
  int64_t S = g_splits > 0 ? g_splits : best_splits(blocks, L, kBlocksPerSm);
  if (S > 1) S = std::min(S, workspace ? workspace_floats / per_split : 0);  // what the workspace holds
  float* part = S > 1 ? workspace : nullptr;
  S = std::max<int64_t>(S, 1);
  // Vector loads when every row start is 16-byte aligned (row offsets are multiples of HD and HDv).
  const bool vec = HD % kVec<T> == 0 && HDv % kVec<T> == 0 && aligned16(k_cache) && aligned16(v_cache);
  const unsigned grid = unsigned(blocks * S);
  const float qs = scale * kLog2e;
  const Pages pages{pc.block_table, int(pc.BS), int(pc.MB)};
  const int nh = int(NH), nkv = int(NKV), hd = int(HD), hdv = int(HDv), hg = int(HG), s = int(S);
  switch (GP) {
    case 1: launch<T, 1>(vec, grid, out, part, q, k_cache, v_cache, pages, slots, pos, T_, nh, nkv, hd, hdv, hg, s, qs); break;
    case 2: launch<T, 2>(vec, grid, out, part, q, k_cache, v_cache, pages, slots, pos, T_, nh, nkv, hd, hdv, hg, s, qs); break;
    case 4: launch<T, 4>(vec, grid, out, part, q, k_cache, v_cache, pages, slots, pos, T_, nh, nkv, hd, hdv, hg, s, qs); break;
    default: launch<T, 8>(vec, grid, out, part, q, k_cache, v_cache, pages, slots, pos, T_, nh, nkv, hd, hdv, hg, s, qs);
  }
  merge_splits(out, part, T_ * NH, HDv, S);
}

}  // namespace

void set_decode_attention_tensor_cores(bool on) { g_tensor_cores = on; }
void set_decode_rope_fused(bool on) { g_fused_rope = on; }

bool rope_qkv_attention_cached(bf16* out, const bf16* qkv, int64_t qkv_row, bf16* k_cache, bf16* v_cache,
                               const PagedCache& pc, const int32_t* slots, const int32_t* pos, const float* inv_freq,
                               int64_t T, int64_t NH, float scale, float* workspace, int64_t workspace_floats) {
  if (!g_fused_rope || !g_tensor_cores || ops::batch_invariant() || T == 0 || NH == 0) return false;
  static_assert(kFusedRopeMaxGroup == flash::kDecodeMmaHeads, "one head group per kv head");
  if (NH / pc.NKV > kFusedRopeMaxGroup || !flash_attention_native(pc.HD, pc.HDV)) return false;
  if (!aligned16(out) || !aligned16(k_cache) || !aligned16(v_cache)) return false;
  flash::DecodeArgs a{dp(out), nullptr, nullptr, dp(k_cache), dp(v_cache), pc.block_table, pc.BS, pc.MB, slots, pos,
                      T, int(NH), int(pc.NKV), scale * kLog2e};
  a.qkv = dp(qkv);
  a.qkv_row = qkv_row;
  a.inv_freq = inv_freq;
  a.k_write = dp(k_cache);
  a.v_write = dp(v_cache);
  run_mma(a, pc, workspace, workspace_floats);
  return true;
}
void set_decode_attention_splits(int64_t S) { g_splits = std::max<int64_t>(S, 0); }
void set_decode_attention_stamps(unsigned long long* stamps, int64_t words) {
  g_stamps = stamps && words > 0 ? stamps : nullptr;
  g_stamp_words = g_stamps ? words : 0;
}

void attention_cached(float* out, const float* q, const float* k_cache, const float* v_cache, const PagedCache& pc,
                      const int32_t* slots, const int32_t* pos, int64_t T, int64_t NH, float scale, float* workspace,
                      int64_t workspace_floats) {
  attention_cached_t(out, q, k_cache, v_cache, pc, slots, pos, T, NH, scale, workspace, workspace_floats);
}

void attention_cached(bf16* out, const bf16* q, const bf16* k_cache, const bf16* v_cache, const PagedCache& pc,
                      const int32_t* slots, const int32_t* pos, int64_t T, int64_t NH, float scale, float* workspace,
                      int64_t workspace_floats) {
  attention_cached_t(dp(out), dp(q), dp(k_cache), dp(v_cache), pc, slots, pos, T, NH, scale, workspace,
                     workspace_floats);
}

}  // namespace r1::cuda

// bf16 attention of new tokens over the paged KV cache on the tensor cores (decode steps, prefill
// chunks): the path decode_attention.cu takes for the head-dim pairs with tensor-core kernels.
//
// One block (4 warps) per (token, kv head, head group of up to 16 query heads, split). The group's
// query rows are the M = 16 rows of an mma.m16n8k16 (rows past the group are zero and dropped), so
// one pass over a key row serves every query head that shares it (grouped-query attention).
// The split's keys go out to the warps in tiles of 16: warp w takes tiles w, w + 4, ... and streams
// them through its own ring of kStages shared-memory stages with cp.async (each row looked up in the
// block table once, by the lane that owns it), so a warp has up to kStages - 1 tiles in flight while
// it computes one, and no block barrier stands between tiles. Per tile: S = Q K^T on the tensor
// cores, online softmax on the fragment rows (base 2), O += P V with P rounded to bf16 (as the
// training forward does). At the end the 4 warps' (m, l, O) are merged through shared memory, and
// the block writes the output, or its split's normalised o and base-2 lse for the merge kernel.
//
// Why: the CUDA-core kernel (decode_attention.cu) keeps too few bytes in flight per SM; at long
// contexts (Qwen2.5-1.5B, 64 sequences, 21k keys) it read the cache at 0.9 TB/s.
#include "kernels/cuda/decode_attention_mma.h"
#include "kernels/cuda/decode_split.h"

#include <algorithm>

#include "kernels/cuda/cuda_context.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/flash_attention.cuh"
#include "kernels/cuda/rope.cuh"

namespace r1::cuda::flash {

namespace {

constexpr int kWarpsD = 4;
constexpr int kThreadsD = 32 * kWarpsD;
constexpr int kKeysD = 16;  // keys per tile (queue_rows16's chunk)
constexpr int kStages = 3;  // tiles per warp's ring

// The phase stamps (cuda_ops.h's set_decode_attention_stamps): the GPU's ns clock and the SM.
__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ unsigned sm_id() {
  unsigned id;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
  return id;
}

template <int HD, int HDV>
struct DecodeConfig {
  static constexpr int ld = HD + kPadH, ldv = HDV + kPadH;
  static constexpr int kStage = kKeysD * (ld + ldv);        // bf16 per stage (K then V)
  static constexpr int kWarpSmem = kStages * kStage;       // bf16 per warp
  static constexpr bool kQInRegs = HD <= 128;
  static constexpr size_t kSmem = size_t(16 * ld + kWarpsD * kWarpSmem) * sizeof(bfloat);
  // The merge of the warps reuses each warp's ring: O (16 x HDV) and m, l (16 each) in f32.
  static_assert(size_t(16 * HDV + 32) * sizeof(float) <= size_t(kWarpSmem) * sizeof(bfloat), "merge space");
};

template <int HD, int HDV, bool kStamp>
__global__ void __launch_bounds__(kThreadsD) decode_mma_kernel(DecodeArgs a, int HG, int S) {
  using Cfg = DecodeConfig<HD, HDV>;
  long long c_entry = 0, c_prologue = 0, c_loops = 0;  // kStamp: thread 0's clocks
  unsigned long long g_entry = 0;
  if constexpr (kStamp) {
    c_entry = clock64();
    g_entry = global_ns();
  }
  constexpr int ld = Cfg::ld, ldv = Cfg::ldv;
  extern __shared__ __align__(128) unsigned char smem[];
  bfloat* sQ = reinterpret_cast<bfloat*>(smem);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
  // This split's keys [k0, k1): chunks of whole warp rounds (4 tiles).
  const SplitBlock w = split_block(blockIdx.x, a.pos, a.T, a.NH, a.NKV, HG, S, kDecodeMmaHeads, kWarpsD * kKeysD);
  const int64_t t = w.t, k0 = w.k0, k1 = w.k1, prow = w.prow, len = w.len;
  const int kvh = w.kvh, h0 = w.h0, gn = w.gn;
  const int64_t rows_out = a.T * a.NH;
  // kStamp: thread 0 writes the block's words (lanes 0 of the warps their loop ends).
  auto stamp = [&](long long c_exit, int tiles) {
    unsigned long long* st = a.stamps + int64_t(blockIdx.x) * kDecodeStampWords;
    st[0] = c_entry;
    st[1] = c_prologue;
    st[6] = c_loops;
    st[7] = c_exit;
    st[8] = g_entry;
    st[9] = global_ns();
    st[10] = sm_id();
    st[11] = unsigned(tiles);
  };
  if (k0 >= len) {  // the merge skips this split (block-uniform: before any barrier)
    if (a.part && threadIdx.x < gn) a.part[int64_t(S) * rows_out * HDV + prow + threadIdx.x] = -INFINITY;
    if constexpr (kStamp) {
      if (threadIdx.x == 0) {
        c_prologue = c_loops = c_entry;
        for (int w = 0; w < kWarpsD; ++w) a.stamps[int64_t(blockIdx.x) * kDecodeStampWords + 2 + w] = c_entry;
        stamp(c_entry, 0);
      }
    }
    return;
  }

  bfloat* ring = sQ + 16 * ld + warp * Cfg::kWarpSmem;
  const int32_t* table = a.table + int64_t(a.slots[t]) * a.MB;
  const int n_tiles = int((k1 - k0 + kKeysD - 1) / kKeysD);
  const int mine = n_tiles > warp ? (n_tiles - warp + kWarpsD - 1) / kWarpsD : 0;  // tiles of this warp

  // Queues tile i of this warp (its j-th: keys k0 + (warp + 4 j) * 16 ...) into stage j % kStages.
  // Lanes 0-15 look up one key row each; the copies take the row offsets by shuffle. Rows past k1
  // are zero-filled and never read from the cache.
  auto queue = [&](int j) {
    if (j < mine) {
      const int64_t kb = k0 + int64_t(warp + kWarpsD * j) * kKeysD, key = kb + (lane & 15);
      const bool valid = key < k1;
      const int64_t phys = valid ? int64_t(table[key / a.BS]) * a.BS + key % a.BS : 0;
      const int64_t koff = (phys * a.NKV + kvh) * HD, voff = (phys * a.NKV + kvh) * HDV;
      bfloat* sK = ring + (j % kStages) * Cfg::kStage;
      const int rows = k1 - kb < kKeysD ? int(k1 - kb) : kKeysD;
      queue_rows16<HD>(sK, a.k_cache, koff, rows, lane);
      queue_rows16<HDV>(sK + kKeysD * ld, a.v_cache, voff, rows, lane);
    }
    cp_async_commit();  // an empty group past the warp's last tile keeps the wait counts uniform
  };
  if (!a.qkv) {
    load_tile_async<HD, 16, kThreadsD>(sQ, a.q + (t * a.NH + h0) * HD, HD, gn);
    cp_async_commit();
#pragma unroll
    for (int j = 0; j < kStages - 1; ++j) queue(j);
    cp_async_wait<kStages - 1>();  // Q (the oldest group) has landed for this thread
  } else {
    // The fused RoPE. The block that holds key pos (the last split's, head group 0) writes that
    // row; the tiles queued before the barrier below must not hold it, so that block queues its
    // first tiles after the barrier when they would reach it (up to kWarpsD * (kStages - 1) tiles).
    const bool writes = k1 == len && h0 == kvh * (a.NH / a.NKV);
    const bool early = !writes || k1 - k0 > int64_t(kWarpsD * (kStages - 1) * kKeysD);
    if (early) {
#pragma unroll
      for (int j = 0; j < kStages - 1; ++j) queue(j);
    }
    constexpr int half = HD / 2;
    const int32_t p = a.pos[t];
    const bfloat* row = a.qkv + t * a.qkv_row;
    for (int i = threadIdx.x; i < 16 * half; i += kThreadsD) {  // the group's query rows, rotated
      const int r = i / half, j = i - r * half;
      bfloat x = __float2bfloat16_rn(0.0f), y = x;  // rows past the group are zero
      if (r < gn) {
        float cs, sn;
        rope_angle(p, a.inv_freq[j], 1.0f, cs, sn);
        const bfloat* src = row + (h0 + r) * HD;
        rope_pair<bfloat>(to_f32(src[j]), to_f32(src[j + half]), cs, sn, x, y);
      }
      sQ[r * ld + j] = x;
      sQ[r * ld + j + half] = y;
    }
    if (writes) {  // the token's cache row: its rotated keys and its values
      const int64_t phys = int64_t(table[p / a.BS]) * a.BS + p % a.BS;
      const bfloat* kr = row + int64_t(a.NH) * HD + kvh * HD;
      const bfloat* vr = row + int64_t(a.NH) * HD + int64_t(a.NKV) * HD + kvh * HDV;
      for (int j = threadIdx.x; j < half; j += kThreadsD) {
        float cs, sn;
        rope_angle(p, a.inv_freq[j], 1.0f, cs, sn);
        bfloat x, y;
        rope_pair<bfloat>(to_f32(kr[j]), to_f32(kr[j + half]), cs, sn, x, y);
        a.k_write[(phys * a.NKV + kvh) * HD + j] = x;
        a.k_write[(phys * a.NKV + kvh) * HD + j + half] = y;
      }
      for (int d = threadIdx.x; d < HDV; d += kThreadsD) a.v_write[(phys * a.NKV + kvh) * HDV + d] = vr[d];
    }
    __syncthreads();  // the row is written (and visible to the block's copies) and sQ is full
    if (!early) {
#pragma unroll
      for (int j = 0; j < kStages - 1; ++j) queue(j);
    }
  }

  float o[HDV / 8][4];
#pragma unroll
  for (int i = 0; i < HDV / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  uint32_t qf[Cfg::kQInRegs ? HD / 16 : 1][4];
  __syncthreads();  // Q has landed for every thread
  if constexpr (Cfg::kQInRegs) {
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) row_fragment<ld>(qf[kk], sQ, 0, kk, lane);
  }
  if constexpr (kStamp) c_prologue = clock64();

  for (int j = 0; j < mine; ++j) {
    queue(j + kStages - 1);
    cp_async_wait<kStages - 1>();
    __syncwarp();
    const bfloat* sK = ring + (j % kStages) * Cfg::kStage;
    const bfloat* sV = sK + kKeysD * ld;
    const int64_t kb = k0 + int64_t(warp + kWarpsD * j) * kKeysD;

    // S (16 heads x 16 keys) = Q K^T
    float s[2][4];
    qk_scores<HD, kKeysD, ld, Cfg::kQInRegs>(s, qf, sQ, sK, lane);

    // Online softmax (base 2); rows gq (elements 0, 1) and gq + 8 (2, 3). A tile's first key is
    // always in range, so every row max is finite (the step's fully-masked case never arises).
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = kb + nt * 8 + 2 * tq + (e & 1);
        const float x = key < k1 ? s[nt][e] * a.qscale : -INFINITY;
        s[nt][e] = x;
        mx[e >> 1] = fmaxf(mx[e >> 1], x);
      }
    }
    online_softmax_step(s, mx, m, l, o);

    // O (16 x HDV) += P (16 x 16) V (16 x HDV)
    pv16<HDV, ldv>(o, s[0], s[1], sV, lane);
    __syncwarp();  // every lane is done with this stage before the next queue() refills it
  }
  if constexpr (kStamp) {
    if (lane == 0) a.stamps[int64_t(blockIdx.x) * kDecodeStampWords + 2 + warp] = clock64();
  }
  cp_async_wait<0>();  // the trailing empty groups
  __syncthreads();     // every warp is done with its ring: it becomes the merge space
  if constexpr (kStamp) c_loops = clock64();

  // Each warp publishes its (m, l, O) rows; m is already the same on the 4 lanes of a quad.
  float* mo = reinterpret_cast<float*>(sQ + 16 * ld + warp * Cfg::kWarpSmem);  // O, then m, then l
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    const int row = gq + 8 * r;
#pragma unroll
    for (int nt = 0; nt < HDV / 8; ++nt) {
      mo[row * HDV + nt * 8 + 2 * tq] = o[nt][2 * r];
      mo[row * HDV + nt * 8 + 2 * tq + 1] = o[nt][2 * r + 1];
    }
    if (tq == 0) {
      mo[16 * HDV + row] = m[r];
      mo[16 * HDV + 16 + row] = l[r];
    }
  }
  __syncthreads();

  // out row (head h0 + row) = sum_w 2^(m_w - M) O_w / sum_w 2^(m_w - M) l_w. A warp without keys has
  // m = -inf and weighs 0; warp 0 always has keys.
  auto part_of = [&](int w) {
    return reinterpret_cast<const float*>(sQ + 16 * ld + w * Cfg::kWarpSmem);
  };
  for (int i = threadIdx.x; i < gn * HDV; i += kThreadsD) {
    const int row = i / HDV, d = i - row * HDV;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarpsD; ++w) M = fmaxf(M, part_of(w)[16 * HDV + row]);
    float den = 0.0f, num = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarpsD; ++w) {
      const float* pw = part_of(w);
      const float mw = pw[16 * HDV + row];
      if (mw == -INFINITY) continue;
      const float x = exp2f(mw - M);
      den += x * pw[16 * HDV + 16 + row];
      num += x * pw[row * HDV + d];
    }
    if (a.part) {
      a.part[(prow + row) * HDV + d] = num / den;
      if (d == 0) a.part[int64_t(S) * rows_out * HDV + prow + row] = M + log2f(den);
    } else {
      a.out[(t * a.NH + h0 + row) * HDV + d] = __float2bfloat16_rn(num / den);
    }
  }
  if constexpr (kStamp) {
    if (threadIdx.x == 0) stamp(clock64(), n_tiles);
  }
}

// The kernel's resident blocks per SM; the first call also raises its shared-memory limit (and
// the stamping instantiation's).
template <int HD, int HDV>
int blocks_per_sm() {
  using Cfg = DecodeConfig<HD, HDV>;
  static const int n = [] {
    allow_smem(decode_mma_kernel<HD, HDV, false>, Cfg::kSmem);
    allow_smem(decode_mma_kernel<HD, HDV, true>, Cfg::kSmem);
    int b = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, decode_mma_kernel<HD, HDV, false>, kThreadsD,
                                                             Cfg::kSmem));
    return std::max(b, 1);
  }();
  return n;
}

template <int HD, int HDV>
void launch(const DecodeArgs& a, int HG, int S, unsigned grid) {
  blocks_per_sm<HD, HDV>();  // configured before the first launch
  if (a.stamps)
    decode_mma_kernel<HD, HDV, true><<<grid, kThreadsD, DecodeConfig<HD, HDV>::kSmem, context().stream>>>(a, HG, S);
  else
    decode_mma_kernel<HD, HDV, false><<<grid, kThreadsD, DecodeConfig<HD, HDV>::kSmem, context().stream>>>(a, HG, S);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

int decode_mma_blocks_per_sm(int64_t HD, int64_t HDV) {
  int n = 0;
#define R1_CASE(D, DV) \
  if (HD == D && HDV == DV) n = blocks_per_sm<D, DV>();
  R1_FLASH_HEAD_DIMS(R1_CASE)
#undef R1_CASE
  return n;
}

void decode_mma(const DecodeArgs& a, int64_t HD, int64_t HDV, int HG, int S) {
  const unsigned grid = unsigned(a.T * a.NKV * HG * S);
#define R1_CASE(D, DV)                    \
  if (HD == D && HDV == DV) {             \
    launch<D, DV>(a, HG, S, grid);        \
    return;                               \
  }
  R1_FLASH_HEAD_DIMS(R1_CASE)
#undef R1_CASE
  throw_error("CUDA attention_cached: no tensor-core decode kernel for these head dims");
}

}  // namespace r1::cuda::flash

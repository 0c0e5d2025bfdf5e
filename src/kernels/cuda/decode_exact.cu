// The batch-invariant decode attention (kernels/invariance.h, rollout.exact_logprobs): attention of
// new tokens over the paged KV cache computed exactly as the training forward computes the same
// rows (flash_forward.cu), so a decoded token's output is the same bits as the trainer's.
//
// The training forward walks a query row's keys in tiles of FwdConfig::kKeys from key 0, one warp
// holding 16 query rows, and runs WarpForward::tile (flash_attention.cuh) on each. Here one warp (one
// block) takes the 16 query heads of a head group of one kv head for one token (the mma's rows,
// as decode_attention_mma.cu groups them; rows past the group are zero and dropped), streams the
// same key tiles from the paged cache through a ring of 16-row stages with cp.async (rows past the
// token's position zero-filled, as the training forward zero-fills rows past the sequence) and runs
// the same tile code on each in pieces (WarpForward::scores16, softmax_step, then pv16: tile()'s bits),
// up to the tile holding the token's position. A training row also
// visits tiles past its last key (its query tile's); for the row they change nothing, bit for bit.
// No split of the key range: a split would merge partial sums in another order.
//
// The price: one warp per (token, kv head, head group) and no split, so a few long sequences use
// few SMs (the fixed-split variant below is the hedge). The 16-row ring keeps a warp's shared
// memory near 20 KB; whole double-buffered 64-key tiles took twice that and left 5 warps per SM.
#include "kernels/cuda/decode_attention_mma.h"

#include <algorithm>

#include "kernels/cuda/cuda_context.h"
#include "kernels/cuda/flash_attention.cuh"

namespace r1::cuda::flash {

namespace {

template <int HD, int HDV>
struct ExactConfig {
  static constexpr int kKeys = FwdConfig<HD, HDV>::kKeys;  // the training forward's key tile
  static constexpr int kChunks = kKeys / 16;               // 16-row chunks of K (and of V) per tile
  static constexpr bool kQInRegs = FwdConfig<HD, HDV>::kQInRegs;
  static constexpr int ld = HD + kPadH, ldv = HDV + kPadH, lds = ld > ldv ? ld : ldv;
  // Ring stages of 16 rows (K or V): kRing - 1 chunks in flight while one is computed. About 20 KB
  // a warp at head dims 64 and 128, so ten or more warps share an SM.
  static constexpr int kRing = HD <= 64 ? 8 : 4;
  static constexpr size_t kSmem = size_t(16 * ld + kRing * 16 * lds) * sizeof(bfloat);  // Q, the ring
};

// Where the split partials go (SPLIT > 0): split s of row (t, h): o at ((s T + t) NH + h) HDV, then
// m and l at S T NH HDV + 2 ((s T + t) NH + h) (+ 1). A split with no keys writes m = -inf only.
struct ExactParts {
  float* o;
  int64_t S;  // splits of the longest sequence
  __device__ int64_t row(int64_t s, int64_t t, int64_t T, int NH, int h) const { return (s * T + t) * NH + h; }
};

// SPLIT = 0: one pass over the token's keys. SPLIT > 0: split s (blockIdx's slowest index after the
// token) takes key tiles [s SPLIT, (s + 1) SPLIT) and writes its partial for the merge.
template <int HD, int HDV, int SPLIT>
__global__ void __launch_bounds__(32) decode_exact_kernel(DecodeArgs a, int HG, ExactParts parts) {
  using Cfg = ExactConfig<HD, HDV>;
  constexpr int KN = Cfg::kKeys, C = Cfg::kChunks, R = Cfg::kRing, lds = Cfg::lds;
  extern __shared__ __align__(128) unsigned char smem[];
  bfloat* sQ = reinterpret_cast<bfloat*>(smem);  // 16 rows
  bfloat* ring = sQ + 16 * Cfg::ld;              // [R][16 * lds]
  const int lane = threadIdx.x, gq = lane >> 2, tq = lane & 3;

  int64_t x = blockIdx.x;
  const int hg = int(x % HG);
  x /= HG;
  const int64_t split = SPLIT > 0 ? x % parts.S : 0;
  if constexpr (SPLIT > 0) x /= parts.S;
  const int kvh = int(x % a.NKV);
  const int64_t t = x / a.NKV;
  const int G = a.NH / a.NKV, h0 = kvh * G + hg * kDecodeMmaHeads, gn = min(kDecodeMmaHeads, G - hg * kDecodeMmaHeads);
  const int pos = a.pos[t], len = pos + 1, BS = int(a.BS);
  const int32_t* table = a.table + int64_t(a.slots[t]) * a.MB;
  const int all_tiles = (len + KN - 1) / KN;
  const int j0 = SPLIT > 0 ? int(split) * SPLIT : 0;
  const int j1 = SPLIT > 0 ? min(j0 + SPLIT, all_tiles) : all_tiles;
  if constexpr (SPLIT > 0) {
    if (j0 >= all_tiles) {  // no keys in this split: the merge skips it
      if (lane < gn) parts.o[parts.S * a.T * a.NH * HDV + 2 * parts.row(split, t, a.T, a.NH, h0 + lane)] = -INFINITY;
      return;
    }
  }

  // The tiles' keys stream through the ring in chunks of 16 rows: tile j's K chunks 0 ... C - 1, then
  // its V chunks 0 ... C - 1. Chunk c goes to stage c % R; rows past the token's position are
  // zero-filled (as the training forward zero-fills rows past the sequence), never read. Each lane
  // of 0-15 looks up one key row of the chunk in the block table.
  const int n_chunks = (j1 - j0) * 2 * C;
  auto queue = [&](int c) {
    if (c < n_chunks) {
      const int q = c % (2 * C), kb = (j0 + c / (2 * C)) * KN + (q % C) * 16, key = kb + (lane & 15);
      const int64_t phys = key < len ? int64_t(table[key / BS]) * BS + key % BS : 0;
      const int rows = max(0, min(16, len - kb));
      bfloat* dst = ring + (c % R) * 16 * lds;
      if (q < C)
        queue_rows16<HD>(dst, a.k_cache, (phys * a.NKV + kvh) * HD, rows, lane);
      else
        queue_rows16<HDV>(dst, a.v_cache, (phys * a.NKV + kvh) * HDV, rows, lane);
    }
    cp_async_commit();  // an empty group past the last chunk keeps the wait counts uniform
  };
  load_tile_async<HD, 16, 32>(sQ, a.q + (t * a.NH + h0) * HD, HD, gn);
  cp_async_commit();
  for (int c = 0; c < R - 1; ++c) queue(c);

  WarpForward<HD, HDV, Cfg::kQInRegs> w;
  cp_async_wait<R - 1>();  // Q (the oldest group) has landed for every lane
  __syncwarp();
  w.load_q(sQ, lane);
  const int lim[2] = {pos, pos};  // every row is this token's: keys [0, pos]

  int c = 0;
  for (int j = j0; j < j1; ++j) {
    float s[KN / 8][4];  // WarpForward::tile's scores of tile j, in pieces (scores16, softmax_step, pv16)
#pragma unroll
    for (int q = 0; q < 2 * C; ++q, ++c) {
      queue(c + R - 1);  // into the stage chunk c - 1 left
      cp_async_wait<R - 1>();
      __syncwarp();  // every lane's copies of chunk c have landed
      const bfloat* st = ring + (c % R) * 16 * lds;
      if (q < C) {
        w.scores16(s[2 * q], s[2 * q + 1], sQ, st, lane);
      } else {
        if (q == C) w.template softmax_step<KN>(s, j * KN, lim, a.qscale, lane);
        pv16<HDV, Cfg::ldv>(w.o, s[2 * (q - C)], s[2 * (q - C) + 1], st, lane);
      }
      __syncwarp();  // every lane is done with this stage before it is refilled
    }
  }
  cp_async_wait<0>();  // the trailing empty groups

  if constexpr (SPLIT > 0) {  // the split's partial: m, l summed over the quad, unnormalised o
    float* ml = parts.o + parts.S * a.T * a.NH * HDV;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float l = quad_sum(w.l[r]);
      const int row = gq + 8 * r;
      if (row >= gn) continue;
      const int64_t pr = parts.row(split, t, a.T, a.NH, h0 + row);
      if (tq == 0) {
        ml[2 * pr] = w.m[r];
        ml[2 * pr + 1] = l;
      }
      float* o = parts.o + pr * HDV + 2 * tq;
#pragma unroll
      for (int nt = 0; nt < HDV / 8; ++nt) {
        o[nt * 8] = w.o[nt][2 * r];
        o[nt * 8 + 1] = w.o[nt][2 * r + 1];
      }
    }
  } else {
    bfloat* dst0 = gq < gn ? a.out + (t * a.NH + h0 + gq) * HDV : nullptr;
    bfloat* dst1 = gq + 8 < gn ? a.out + (t * a.NH + h0 + gq + 8) * HDV : nullptr;
    w.finish(dst0, dst1, lane);
  }
}

// out row (t, h) = the splits' partials merged in split order by the training forward's merge
// (SplitSum: merge_row, merge_elem), then o / L in bf16. One block per row, a thread per dim.
__global__ void exact_merge_kernel(bfloat* out, ExactParts parts, int64_t T, int NH, int HDV) {
  const int64_t rowi = blockIdx.x;  // t * NH + h
  const int64_t t = rowi / NH;
  const int h = int(rowi % NH);
  const float* ml = parts.o + parts.S * T * NH * HDV;
  for (int d = threadIdx.x; d < HDV; d += blockDim.x) {
    float M = -INFINITY, L = 0.0f, O = 0.0f;
    for (int64_t s = 0; s < parts.S; ++s) {
      const int64_t pr = parts.row(s, t, T, NH, h);
      const float m = ml[2 * pr];
      if (m == -INFINITY) break;  // no keys here, nor in later splits: a no-op merge, skipped
      float a, b;
      SplitMerge::merge_row(M, L, m, ml[2 * pr + 1], a, b);
      O = SplitMerge::merge_elem(O, parts.o[pr * HDV + d], a, b);
    }
    const float inv = 1.0f / L;
    out[rowi * HDV + d] = __float2bfloat16_rn(O * inv);
  }
}

template <int HD, int HDV, int SPLIT>
void launch_exact(const DecodeArgs& a, int HG, ExactParts parts) {
  using Cfg = ExactConfig<HD, HDV>;
  static const bool configured = (allow_smem(decode_exact_kernel<HD, HDV, SPLIT>, Cfg::kSmem), true);
  (void)configured;
  const unsigned grid = unsigned(a.T * a.NKV * HG * (SPLIT > 0 ? parts.S : 1));
  decode_exact_kernel<HD, HDV, SPLIT><<<grid, 32, Cfg::kSmem, context().stream>>>(a, HG, parts);
  CUDA_CHECK_LAUNCH();
  if constexpr (SPLIT > 0) {
    exact_merge_kernel<<<unsigned(a.T * a.NH), std::min(HDV, 128), 0, context().stream>>>(a.out, parts, a.T, a.NH,
                                                                                        HDV);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

int64_t decode_exact_workspace(int64_t T, int64_t NH, int64_t HDV, int64_t L) {
  const int64_t S = (L + kExactSplitKeys - 1) / kExactSplitKeys;
  return S * T * NH * (HDV + 2);
}

void decode_exact(const DecodeArgs& a, int64_t HD, int64_t HDV, bool split, float* workspace, int64_t workspace_floats,
                  int64_t L) {
  if (a.T == 0) return;
  const int G = a.NH / a.NKV, HG = (G + kDecodeMmaHeads - 1) / kDecodeMmaHeads;
  ExactParts parts{workspace, (L + kExactSplitKeys - 1) / kExactSplitKeys};
  if (split && (!workspace || workspace_floats < decode_exact_workspace(a.T, a.NH, HDV, L)))
    throw_error("CUDA attention_cached: the batch-invariant split decode needs attention_cached_workspace's floats");
#define R1_CASE(D, DV)                                                         \
  if (HD == D && HDV == DV) {                                                  \
    if constexpr (exact_split_tiles<D, DV>() > 0) {                            \
      if (split) return launch_exact<D, DV, exact_split_tiles<D, DV>()>(a, HG, parts); \
    }                                                                          \
    if (split) throw_error("CUDA attention_cached: no split decode for these head dims"); \
    return launch_exact<D, DV, 0>(a, HG, parts);                               \
  }
  R1_FLASH_HEAD_DIMS(R1_CASE)
#undef R1_CASE
  throw_error("CUDA attention_cached: no batch-invariant decode kernel for these head dims");
}

}  // namespace r1::cuda::flash

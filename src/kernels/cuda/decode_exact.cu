// The batch-invariant decode attention (kernels/invariance.h, rollout.exact_logprobs): attention of
// new tokens over the paged KV cache computed exactly as the training forward computes the same
// rows (flash_forward.cu), so a decoded token's output is the same bits as the trainer's.
//
// The training forward walks a query row's keys in tiles of FwdConfig::kKeys from key 0, one warp
// holding 16 query rows, and runs WarpForward::tile (flash_attention.cuh) on each. Here one warp (one
// block) takes the 16 query heads of a head group of one kv head for one token (the mma's rows,
// as decode_attention_mma.cu groups them; rows past the group are zero and dropped), loads the
// same key tiles from the paged cache (double-buffered with cp.async; rows past the token's
// position zero-filled, as the training forward zero-fills rows past the sequence) and runs the
// same tile code on each, up to the tile holding the token's position. A training row also
// visits tiles past its last key (its query tile's); for the row they change nothing, bit for bit.
// No split of the key range: a split would merge partial sums in another order.
//
// The price: one warp per (token, kv head, head group) and no split, so a few long sequences use
// few SMs; and two stages of kKeys rows per warp in shared memory bound the warps per SM.
#include "kernels/cuda/decode_attention_mma.h"

#include "kernels/cuda/cuda_context.h"
#include "kernels/cuda/flash_attention.cuh"

namespace r1::cuda::flash {

namespace {

template <int HD, int HDV>
struct ExactConfig {
  static constexpr int kKeys = FwdConfig<HD, HDV>::kKeys;  // the training forward's key tile
  static constexpr bool kQInRegs = FwdConfig<HD, HDV>::kQInRegs;
  static constexpr int ld = HD + kPadH, ldv = HDV + kPadH;
  static constexpr size_t kSmem = size_t(16 * ld + 2 * kKeys * (ld + ldv)) * sizeof(bfloat);  // Q, 2 x (K, V)
};

// Queues the copy of key rows kt ... kt + KN - 1 of kv head kvh (those below len; the rest
// zero-filled) from the paged cache into one stage. One warp; every lane calls.
template <int D, int KN>
__device__ inline void queue_paged(bfloat* dst, const bfloat* cache, const int32_t* table, int64_t BS, int NKV,
                                   int kvh, int kt, int len, int lane) {
  constexpr int NC = D / 8;
  for (int i = lane; i < KN * NC; i += 32) {
    const int r = i / NC, c = (i % NC) * 8, key = kt + r;
    const bool valid = key < len;
    const int64_t phys = valid ? int64_t(table[key / BS]) * BS + key % BS : 0;
    cp_async16(dst + r * (D + kPadH) + c, cache + (phys * NKV + kvh) * D + c, valid);
  }
}

template <int HD, int HDV>
__global__ void __launch_bounds__(32) decode_exact_kernel(DecodeArgs a, int HG) {
  using Cfg = ExactConfig<HD, HDV>;
  constexpr int KN = Cfg::kKeys, ld = Cfg::ld, ldv = Cfg::ldv;
  extern __shared__ __align__(128) unsigned char smem[];
  bfloat* sQ = reinterpret_cast<bfloat*>(smem);  // 16 rows
  bfloat* sK = sQ + 16 * ld;                     // [2][KN * ld]
  bfloat* sV = sK + 2 * KN * ld;                 // [2][KN * ldv]
  const int lane = threadIdx.x, gq = lane >> 2;

  const int64_t x = blockIdx.x;
  const int hg = int(x % HG), kvh = int((x / HG) % a.NKV);
  const int64_t t = x / (int64_t(HG) * a.NKV);
  const int G = a.NH / a.NKV, h0 = kvh * G + hg * kDecodeMmaHeads, gn = min(kDecodeMmaHeads, G - hg * kDecodeMmaHeads);
  const int pos = a.pos[t], len = pos + 1;
  const int32_t* table = a.table + int64_t(a.slots[t]) * a.MB;
  const int n_kv = (len + KN - 1) / KN;

  load_tile_async<HD, 16, 32>(sQ, a.q + (t * a.NH + h0) * HD, HD, gn);
  queue_paged<HD, KN>(sK, a.k_cache, table, a.BS, a.NKV, kvh, 0, len, lane);
  queue_paged<HDV, KN>(sV, a.v_cache, table, a.BS, a.NKV, kvh, 0, len, lane);
  cp_async_commit();

  WarpForward<HD, HDV, Cfg::kQInRegs> w;
  const int lim[2] = {pos, pos};  // every row is this token's: keys [0, pos]

  for (int j = 0; j < n_kv; ++j) {
    if (j + 1 < n_kv) {
      const int s = (j + 1) & 1;
      queue_paged<HD, KN>(sK + s * KN * ld, a.k_cache, table, a.BS, a.NKV, kvh, (j + 1) * KN, len, lane);
      queue_paged<HDV, KN>(sV + s * KN * ldv, a.v_cache, table, a.BS, a.NKV, kvh, (j + 1) * KN, len, lane);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncwarp();  // every lane's copies of tile j (and Q) have landed
    if (j == 0) w.load_q(sQ, lane);
    w.template tile<KN>(sQ, sK + (j & 1) * KN * ld, sV + (j & 1) * KN * ldv, j * KN, lim, a.qscale, lane);
    __syncwarp();  // every lane is done with this stage before it is refilled
  }

  bfloat* dst0 = gq < gn ? a.out + (t * a.NH + h0 + gq) * HDV : nullptr;
  bfloat* dst1 = gq + 8 < gn ? a.out + (t * a.NH + h0 + gq + 8) * HDV : nullptr;
  w.finish(dst0, dst1, lane);
}

template <int HD, int HDV>
void launch_exact(const DecodeArgs& a, int HG) {
  using Cfg = ExactConfig<HD, HDV>;
  static const bool configured = (allow_smem(decode_exact_kernel<HD, HDV>, Cfg::kSmem), true);
  (void)configured;
  const unsigned grid = unsigned(a.T * a.NKV * HG);
  decode_exact_kernel<HD, HDV><<<grid, 32, Cfg::kSmem, context().stream>>>(a, HG);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void decode_exact(const DecodeArgs& a, int64_t HD, int64_t HDV) {
  if (a.T == 0) return;
  const int G = a.NH / a.NKV, HG = (G + kDecodeMmaHeads - 1) / kDecodeMmaHeads;
#define R1_CASE(D, DV)          \
  if (HD == D && HDV == DV) {   \
    launch_exact<D, DV>(a, HG); \
    return;                     \
  }
  R1_FLASH_HEAD_DIMS(R1_CASE)
#undef R1_CASE
  throw_error("CUDA attention_cached: no batch-invariant decode kernel for these head dims");
}

}  // namespace r1::cuda::flash

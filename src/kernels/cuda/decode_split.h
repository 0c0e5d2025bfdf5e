#pragma once
// The split of the paged cache attention's key range over more blocks (flash-decoding), shared by
// its kernels (decode_attention.cu, decode_attention_mma.cu, latent_attention.cu): how many splits
// a launch takes, and the merge of the splits' partials. Internal to the backend.
//
// The split count depends on host shapes only (a captured graph replays with new pos): split s of S
// takes keys [s * chunk, (s + 1) * chunk) of len = pos[t] + 1, chunk = round_up(ceil(len / S), tile)
// computed on the device (tile: the kernel's key tile), and writes into the f32 workspace `part` its
// normalized o at ((s * T + t) * NH + h) * HDv and its base-2 lse at S * T * NH * HDv +
// (s * T + t) * NH + h; a split with no keys writes lse = -inf and no o.
#include <cuda_bf16.h>

#include <cstdint>

namespace r1::cuda {

// A split takes at least this many keys of the longest sequence (kMmaSplitKeys below for the
// tensor-core decode kernel).
constexpr int64_t kSplitKeys = 128;
// The most splits for a grid of `blocks` blocks over sequences of up to L keys: enough to give each
// SM a few blocks, at most one per min_keys keys, at most 64. Host shapes only; non-increasing in
// blocks and in min_keys, so attention_cached_workspace(T, ...) (blocks >= T, kSplitKeys) covers
// every kernel's splits.
int64_t splits_for(int64_t blocks, int64_t L, int64_t min_keys = kSplitKeys);
// Of 1 ... splits_for(blocks, L, min_keys) splits, the one with the least time by waves, for a
// kernel that keeps `resident` blocks on each SM. min_keys: a split must save more than its fixed
// costs (its blocks' start, the partials, the merge launch).
int64_t best_splits(int64_t blocks, int64_t L, int64_t resident, int64_t min_keys = kSplitKeys);
// The tensor-core decode kernel (decode_attention_mma.cu) splits no context under this many keys.
// Measured (H100, 64 sequences, 2 kv heads: a grid of 128 blocks for 132 SMs, where splitting is
// most tempting): one split against the 2 or 3 the waves alone chose, per decode step, 0.5B
// 128 + 1024 tokens 1.379 against 1.460 ms, 128 + 2048 1.535 against 1.601, 1.5B 128 + 1024 2.498
// against 2.634, 128 + 2048 2.818 against 2.946 (docs/CUDA.md, "Key splits"). Long contexts (16k)
// still split 3 ways, as before.
constexpr int64_t kMmaSplitKeys = 4096;
// out (rows, HDv) = the S splits' partials merged in split order (rows = T * NH); none (part null):
// nothing to do.
void merge_splits(float* out, const float* part, int64_t rows, int64_t HDv, int64_t S);
void merge_splits(__nv_bfloat16* out, const float* part, int64_t rows, int64_t HDv, int64_t S);

#ifdef __CUDACC__
// What block b of a split kernel's grid (T * NKV * S * HG blocks, the head group fastest) works on:
// token t, key/value head kvh, heads h0 .. h0 + gn - 1 (head groups of GP), split `split` over
// keys [k0, k1) of the token's len = pos[t] + 1 in chunks of whole `round`s of keys; prow: head
// h0's partial row. k0 >= len: a split with no keys (the merge skips it).
struct SplitBlock {
  int64_t t, len, k0, k1, prow;
  int kvh, split, h0, gn;
};
__device__ inline SplitBlock split_block(int64_t b, const int32_t* pos, int64_t T, int NH, int NKV, int HG, int S,
                                         int GP, int round) {
  SplitBlock w;
  const int hg = int(b % HG);
  b /= HG;
  w.split = int(b % S);
  b /= S;
  w.kvh = int(b % NKV);
  w.t = b / NKV;
  const int G = NH / NKV;
  w.h0 = w.kvh * G + hg * GP;
  w.gn = G - hg * GP < GP ? G - hg * GP : GP;
  w.len = int64_t(pos[w.t]) + 1;
  const int64_t chunk = ((w.len + S - 1) / S + round - 1) / round * round;
  w.k0 = w.split * chunk;
  w.k1 = w.k0 + chunk < w.len ? w.k0 + chunk : w.len;
  w.prow = (int64_t(w.split) * T + w.t) * NH + w.h0;
  return w;
}
#endif

}  // namespace r1::cuda

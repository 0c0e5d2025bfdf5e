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

// The most splits for a grid of `blocks` blocks over sequences of up to L keys: enough to give each
// SM a few blocks, at most one per 128 keys, at most 64. Host shapes only; non-increasing in blocks,
// so attention_cached_workspace(T, ...) (blocks >= T) covers every kernel's splits.
int64_t splits_for(int64_t blocks, int64_t L);
// Of 1 ... splits_for(blocks, L) splits, the one with the least time by waves, for a kernel that
// keeps `resident` blocks on each SM.
int64_t best_splits(int64_t blocks, int64_t L, int64_t resident);
// out (rows, HDv) = the S splits' partials merged in split order (rows = T * NH); none (part null):
// nothing to do.
void merge_splits(float* out, const float* part, int64_t rows, int64_t HDv, int64_t S);
void merge_splits(__nv_bfloat16* out, const float* part, int64_t rows, int64_t HDv, int64_t S);

}  // namespace r1::cuda

// The bf16 flash attention forward on the tensor cores (FlashAttention-2 order): one block per
// (query tile of 64 rows, query head); each of 4 warps owns 16 query rows and keeps S, P and O in
// mma.sync fragments (online softmax on fragment rows, quad shuffles). Key/value tiles (64 rows, or
// 32 for the largest head dims: FwdConfig) are double-buffered in shared memory with cp.async.
// Scores never leave registers, so memory stays linear in T; only the log-sum-exp is saved.
#include "kernels/cuda/flash_attention.cuh"

namespace r1::cuda::flash {

namespace {

// SPLIT > 0: the batch-invariant forward's fixed key splits of SPLIT tiles (SplitSum), else one pass.
template <int HD, int HDV, int SPLIT>
__global__ void __launch_bounds__(FwdConfig<HD, HDV>::kThreads) flash_forward_kernel(
    bfloat* out, float* lse, const bfloat* q, const bfloat* k, const bfloat* v, const int32_t* cu,
    const int32_t* tiles, int64_t B, int64_t NH, int64_t NKV, float scale_log2) {
  using Cfg = FwdConfig<HD, HDV>;
  constexpr int KN = Cfg::kKeys, NT = Cfg::kThreads;
  int b, tile;
  if (!find_tile(tiles, B, true, b, tile)) return;
  constexpr int ld = HD + kPadH, ldv = HDV + kPadH;
  extern __shared__ __align__(128) unsigned char smem[];
  bfloat* sQ = reinterpret_cast<bfloat*>(smem);
  bfloat* sK = sQ + kTile * ld;      // [2][KN * ld]
  bfloat* sV = sK + 2 * KN * ld;     // [2][KN * ldv]

  const int h = blockIdx.y, g = int(h / (NH / NKV));
  const int64_t start = cu[b];
  const int L = cu[b + 1] - cu[b], q0 = tile * kTile;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
  const int64_t qstride = NH * HD, ostride = NH * HDV, kstride = NKV * HD, vstride = NKV * HDV;
  const bfloat* kbase = k + start * kstride + int64_t(g) * HD;
  const bfloat* vbase = v + start * vstride + int64_t(g) * HDV;

  load_tile_async<HD, kTile, NT>(sQ, q + (start + q0) * qstride + int64_t(h) * HD, qstride, min(kTile, L - q0));
  const int n_kv = (min(L, q0 + kTile) + KN - 1) / KN;
  load_tile_async<HD, KN, NT>(sK, kbase, kstride, min(KN, L));
  load_tile_async<HDV, KN, NT>(sV, vbase, vstride, min(KN, L));
  cp_async_commit();

  WarpForward<HD, HDV, Cfg::kQInRegs> w;
  const int qrow[2] = {q0 + warp * 16 + gq, q0 + warp * 16 + gq + 8};
  const int lim[2] = {min(qrow[0], L - 1), min(qrow[1], L - 1)};  // each row's last key (causal)
  const bfloat* sQw = sQ + warp * 16 * ld;

  [[maybe_unused]] SplitSum<(SPLIT > 0 ? HDV : 8)> acc;
  for (int j = 0; j < n_kv; ++j) {
    kv_tile_ready<HD, HDV, KN, NT>(sK, sV, kbase, vbase, kstride, vstride, j, n_kv, L);
    if (j == 0) w.load_q(sQw, lane);
    w.template tile<KN>(sQw, sK + (j & 1) * KN * ld, sV + (j & 1) * KN * ldv, j * KN, lim, scale_log2, lane);
    if constexpr (SPLIT > 0) {
      if ((j + 1) % SPLIT == 0 || j + 1 == n_kv) acc.take(w);
    }
    __syncthreads();  // all warps are done with this buffer before it is refilled
  }

  bfloat* dst[2];
#pragma unroll
  for (int r = 0; r < 2; ++r)
    dst[r] = qrow[r] < L ? out + (start + qrow[r]) * ostride + int64_t(h) * HDV : nullptr;
  float row_m[2], row_l[2];
  if constexpr (SPLIT > 0) {
    acc.finish(dst[0], dst[1], lane);
    row_m[0] = acc.M[0], row_m[1] = acc.M[1], row_l[0] = acc.L[0], row_l[1] = acc.L[1];
  } else {
    w.finish(dst[0], dst[1], lane);
    row_m[0] = w.m[0], row_m[1] = w.m[1], row_l[0] = w.l[0], row_l[1] = w.l[1];
  }
#pragma unroll
  for (int r = 0; r < 2; ++r)
    if (qrow[r] < L && tq == 0) lse[(start + qrow[r]) * NH + h] = (row_m[r] + log2f(row_l[r])) * kLn2;
}

template <int HD, int HDV, int SPLIT>
void launch_forward_t(bfloat* out, float* lse, const bfloat* q, const bfloat* k, const bfloat* v, const int32_t* cu,
                      const int32_t* tiles, int64_t B, int64_t T, int64_t NH, int64_t NKV, float scale) {
  using Cfg = FwdConfig<HD, HDV>;
  static const bool configured = (allow_smem(flash_forward_kernel<HD, HDV, SPLIT>, Cfg::kSmem), true);
  (void)configured;
  const dim3 grid(max_tiles(B, T), unsigned(NH));
  flash_forward_kernel<HD, HDV, SPLIT><<<grid, Cfg::kThreads, Cfg::kSmem, context().stream>>>(
      out, lse, q, k, v, cu, tiles, B, NH, NKV, scale * kLog2e);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace

template <int HD, int HDV>
void launch_forward(bfloat* out, float* lse, const bfloat* q, const bfloat* k, const bfloat* v, const int32_t* cu,
                    const int32_t* tiles, int64_t B, int64_t T, int64_t NH, int64_t NKV, float scale, bool split) {
  constexpr int kSplitTiles = exact_split_tiles<HD, HDV>();
  if constexpr (kSplitTiles > 0) {
    if (split) {
      launch_forward_t<HD, HDV, kSplitTiles>(out, lse, q, k, v, cu, tiles, B, T, NH, NKV, scale);
      return;
    }
  }
  if (split) throw_error("flash attention: no fixed-split forward for these head dims");
  launch_forward_t<HD, HDV, 0>(out, lse, q, k, v, cu, tiles, B, T, NH, NKV, scale);
}

#define R1_INSTANTIATE(D, DV)                                                                                       \
  template void launch_forward<D, DV>(bfloat*, float*, const bfloat*, const bfloat*, const bfloat*, const int32_t*, \
                                      const int32_t*, int64_t, int64_t, int64_t, int64_t, float, bool);
R1_FLASH_HEAD_DIMS(R1_INSTANTIATE)
#undef R1_INSTANTIATE

}  // namespace r1::cuda::flash

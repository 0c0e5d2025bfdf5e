// The bf16 flash attention backward's dQ on the tensor cores, without atomics: one block per (query
// tile of 64 rows, query head), laid out as the forward (4 warps of 16 query rows, key tiles
// double-buffered with cp.async). For each key tile in order it recomputes S = Q K^T and
// P = exp(S * scale - lse), forms dP = dO V^T and dS = P (dP - D) * scale, and adds dS K into the
// warp's dQ fragments. Each dQ element is summed by one thread over the key tiles in a fixed order,
// so the result is the same bits every run. The cost is a second S and dP per (query, key) tile pair
// (the dK/dV kernel, flash_backward.cu, forms its own); FlashAttention 3's deterministic mode
// serialises atomics instead.
#include "kernels/cuda/flash_attention.cuh"

namespace r1::cuda::flash {

namespace {

template <int HD, int HDV>
__global__ void __launch_bounds__(DqConfig<HD, HDV>::kThreads) flash_backward_dq_kernel(
    float* dq, const bfloat* dout, const bfloat* q, const bfloat* k, const bfloat* v, const float* lse,
    const float* D, const int32_t* cu, const int32_t* tiles, int64_t B, int64_t NH, int64_t NKV, float scale) {
  using Cfg = DqConfig<HD, HDV>;
  constexpr int KN = Cfg::kKeys, NT = Cfg::kThreads;
  int b, tile;
  if (!find_tile(tiles, B, true, b, tile)) return;
  constexpr int ld = HD + kPadH, ldv = HDV + kPadH;
  extern __shared__ __align__(128) unsigned char smem[];
  bfloat* sQ = reinterpret_cast<bfloat*>(smem);
  bfloat* sdO = sQ + kTile * ld;     // kTile * ldv
  bfloat* sK = sdO + kTile * ldv;    // [2][KN * ld]
  bfloat* sV = sK + 2 * KN * ld;     // [2][KN * ldv]

  const int h = blockIdx.y, g = int(h / (NH / NKV));
  const int64_t start = cu[b];
  const int L = cu[b + 1] - cu[b], q0 = tile * kTile;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
  const int64_t qstride = NH * HD, ostride = NH * HDV, kstride = NKV * HD, vstride = NKV * HDV;
  const bfloat* kbase = k + start * kstride + int64_t(g) * HD;
  const bfloat* vbase = v + start * vstride + int64_t(g) * HDV;
  const float scale_log2 = scale * kLog2e;

  const int q_rows = min(kTile, L - q0);
  load_tile_async<HD, kTile, NT>(sQ, q + (start + q0) * qstride + int64_t(h) * HD, qstride, q_rows);
  load_tile_async<HDV, kTile, NT>(sdO, dout + (start + q0) * ostride + int64_t(h) * HDV, ostride, q_rows);
  const int n_kv = (min(L, q0 + kTile) + KN - 1) / KN;
  load_tile_async<HD, KN, NT>(sK, kbase, kstride, min(KN, L));
  load_tile_async<HDV, KN, NT>(sV, vbase, vstride, min(KN, L));
  cp_async_commit();

  // This lane's two query rows: lse (base 2) and D = rowsum(dO * O); rows past L are never written.
  const int qrow[2] = {q0 + warp * 16 + gq, q0 + warp * 16 + gq + 8};
  float lse2[2], d_row[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const bool ok = qrow[r] < L;
    lse2[r] = ok ? lse[(start + qrow[r]) * NH + h] * kLog2e : INFINITY;
    d_row[r] = ok ? D[(start + qrow[r]) * NH + h] : 0.0f;
  }

  float acc[HD / 8][4];
#pragma unroll
  for (int i = 0; i < HD / 8; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
  uint32_t qf[Cfg::kQInRegs ? HD / 16 : 1][4];

  for (int j = 0; j < n_kv; ++j) {
    kv_tile_ready<HD, HDV, KN, NT>(sK, sV, kbase, vbase, kstride, vstride, j, n_kv, L);
    if constexpr (Cfg::kQInRegs) {
      if (j == 0) {
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk) row_fragment<ld>(qf[kk], sQ, warp, kk, lane);
      }
    }
    const bfloat* sKb = sK + (j & 1) * KN * ld;
    const bfloat* sVb = sV + (j & 1) * KN * ldv;
    const int kt = j * KN;

    // S (16 x KN) = Q K^T and dP (16 x KN) = dO V^T
    float s[KN / 8][4], dp[KN / 8][4];
    qk_scores<HD, KN, ld, Cfg::kQInRegs>(s, qf, sQ + warp * 16 * ld, sKb, lane);
    constexpr uint32_t kNoRegs[1][4] = {};  // dO's fragments come from shared memory
    qk_scores<HDV, KN, ldv, false>(dp, kNoRegs, sdO + warp * 16 * ldv, sVb, lane);

    // P and dS = P (dP - D) * scale, element (qrow[e / 2], key); 0 past the causal bound or L.
#pragma unroll
    for (int nt = 0; nt < KN / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = kt + nt * 8 + 2 * tq + (e & 1), r = e >> 1;
        const bool ok = key <= qrow[r] && key < L;
        const float p = ok ? exp2f(s[nt][e] * scale_log2 - lse2[r]) : 0.0f;
        s[nt][e] = p * (dp[nt][e] - d_row[r]) * scale;
      }
    }

    // dQ (16 x HD) += dS (16 x KN) K (KN x HD)
#pragma unroll
    for (int kk = 0; kk < KN / 16; ++kk) {
      uint32_t da[4];
      acc_to_a(da, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int dpi = 0; dpi < HD / 16; ++dpi) {
        uint32_t bk[4];
        ldsm_x4_t(bk, sKb + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + dpi * 16 + (lane >> 4) * 8);
        mma(acc[2 * dpi], da, bk[0], bk[1]);
        mma(acc[2 * dpi + 1], da, bk[2], bk[3]);
      }
    }
    __syncthreads();  // all warps are done with this buffer before it is refilled
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (qrow[r] >= L) continue;
    float* dst = dq + (start + qrow[r]) * qstride + int64_t(h) * HD + 2 * tq;
#pragma unroll
    for (int nt = 0; nt < HD / 8; ++nt)
      *reinterpret_cast<float2*>(dst + nt * 8) = make_float2(acc[nt][2 * r], acc[nt][2 * r + 1]);
  }
}

}  // namespace

template <int HD, int HDV>
void launch_backward_dq(float* dq, const bfloat* dout, const bfloat* q, const bfloat* k, const bfloat* v,
                        const float* lse, const float* D, const int32_t* cu, const int32_t* tiles, int64_t B,
                        int64_t T, int64_t NH, int64_t NKV, float scale) {
  using Cfg = DqConfig<HD, HDV>;
  static const bool configured = (allow_smem(flash_backward_dq_kernel<HD, HDV>, Cfg::kSmem), true);
  (void)configured;
  const dim3 grid(max_tiles(B, T), unsigned(NH));
  flash_backward_dq_kernel<HD, HDV><<<grid, Cfg::kThreads, Cfg::kSmem, context().stream>>>(
      dq, dout, q, k, v, lse, D, cu, tiles, B, NH, NKV, scale);
  CUDA_CHECK(cudaGetLastError());
}

#define R1_INSTANTIATE(D, DV)                                                                                 \
  template void launch_backward_dq<D, DV>(float*, const bfloat*, const bfloat*, const bfloat*, const bfloat*, \
                                          const float*, const float*, const int32_t*, const int32_t*, int64_t, \
                                          int64_t, int64_t, int64_t, float);
R1_FLASH_HEAD_DIMS(R1_INSTANTIATE)
#undef R1_INSTANTIATE

}  // namespace r1::cuda::flash

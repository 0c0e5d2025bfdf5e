// The bf16 flash attention backward on the tensor cores. D = rowsum(dO * O) comes first (host side,
// flash_attention.cu); then one block per (key tile of 64 rows, query head) walks the query tiles
// (32 rows) at or after it:
// - each 16-key row group computes S^T and dP^T for its keys, so P^T and dS^T = P^T (dP^T - D)
//   stay in registers for dV += P^T dO and dK += dS^T Q. Up to head dim 128 one warp owns a group;
//   beyond, two warps (BwdConfig::WN) split it: each contracts half of the head dims of S^T and
//   dP^T, the halves are summed through shared memory, and each accumulates half of dK's and dV's
//   columns, so no warp holds more than 128 accumulator columns;
// dQ comes from its own kernel (flash_backward_dq.cu), one block per query tile walking the key
// tiles in order. The blocks here write per-query-head partial dK/dV, and a last pass sums them
// into dk/dv in a fixed order: no atomics anywhere, so the backward gives the same bits every run.
#include "kernels/cuda/flash_attention.cuh"

namespace r1::cuda::flash {

namespace {

template <int HD, int HDV>
__global__ void __launch_bounds__(BwdConfig<HD, HDV>::kThreads) flash_backward_kernel(
    float* dk_part, float* dv_part, const bfloat* dout, const bfloat* q, const bfloat* k, const bfloat* v,
    const float* lse, const float* D, const int32_t* cu, const int32_t* tiles, int64_t B, int64_t NH, int64_t NKV,
    float scale) {
  using Cfg = BwdConfig<HD, HDV>;
  constexpr int WN = Cfg::WN, NT = Cfg::kThreads;
  int b, tile;
  if (!find_tile(tiles, B, false, b, tile)) return;
  constexpr int ld = HD + kPadH, ldv = HDV + kPadH;
  extern __shared__ __align__(128) unsigned char smem[];
  bfloat* sK = reinterpret_cast<bfloat*>(smem);
  bfloat* sV = sK + kTile * ld;
  bfloat* sQ = sV + kTile * ldv;        // [2][kBwdQ * ld]
  bfloat* sdO = sQ + 2 * kBwdQ * ld;    // [2][kBwdQ * ldv]
  float* sLse = reinterpret_cast<float*>(sdO + 2 * kBwdQ * ldv);  // [2][kBwdQ], lse * log2(e)
  float* sD = sLse + 2 * kBwdQ;                                 // [2][kBwdQ]
  float* sX = sD + 2 * kBwdQ;  // WN > 1: [warp][32 values][lane], the contraction halves

  const int h = blockIdx.y, g = int(h / (NH / NKV));
  const int64_t start = cu[b];
  const int L = cu[b + 1] - cu[b], kt = tile * kTile;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
  // This warp's 16 key rows (kw) and, with WN = 2, its half of the head dims (wc).
  const int kw = WN == 1 ? warp : warp & 3, wc = WN == 1 ? 0 : warp >> 2;
  const int64_t qstride = NH * HD, ostride = NH * HDV, kstride = NKV * HD, vstride = NKV * HDV;
  const bfloat* qbase = q + start * qstride + int64_t(h) * HD;
  const bfloat* dobase = dout + start * ostride + int64_t(h) * HDV;
  const float scale_log2 = scale * kLog2e;

  load_tile_async<HD, kTile, NT>(sK, k + (start + kt) * kstride + int64_t(g) * HD, kstride, min(kTile, L - kt));
  load_tile_async<HDV, kTile, NT>(sV, v + (start + kt) * vstride + int64_t(g) * HDV, vstride, min(kTile, L - kt));
  // Queues query tile qt into buffer buf (Q and dO by cp.async; lse and D by plain stores, which
  // the __syncthreads before their use publishes).
  auto load_query_tile = [&](int qt, int buf) {
    const int rows = min(kBwdQ, L - qt);
    load_tile_async<HD, kBwdQ, NT>(sQ + buf * kBwdQ * ld, qbase + int64_t(qt) * qstride, qstride, rows);
    load_tile_async<HDV, kBwdQ, NT>(sdO + buf * kBwdQ * ldv, dobase + int64_t(qt) * ostride, ostride, rows);
    for (int i = threadIdx.x; i < kBwdQ; i += NT) {
      const bool ok = i < rows;
      sLse[buf * kBwdQ + i] = ok ? lse[(start + qt + i) * NH + h] * kLog2e : INFINITY;
      sD[buf * kBwdQ + i] = ok ? D[(start + qt + i) * NH + h] : 0.0f;
    }
  };
  load_query_tile(kt, 0);
  cp_async_commit();

  // Per warp: the 16-column steps of the S^T (over HD) and dP^T (over HDV) contractions, and the
  // 16-column tiles of dK (HD) and dV (HDV) it accumulates: the same slices of the head dims.
  constexpr int kKS = HD / 16 / WN, kKP = HDV / 16 / WN, kKMax = kKS > kKP ? kKS : kKP;
  constexpr int kDK = kKS, kDV = kKP, kDMax = kKMax;
  float dk[HD / 8 / WN][4], dv[HDV / 8 / WN][4];
#pragma unroll
  for (int i = 0; i < HD / 8 / WN; ++i) dk[i][0] = dk[i][1] = dk[i][2] = dk[i][3] = 0.0f;
#pragma unroll
  for (int i = 0; i < HDV / 8 / WN; ++i) dv[i][0] = dv[i][1] = dv[i][2] = dv[i][3] = 0.0f;
  const int key[2] = {kt + kw * 16 + gq, kt + kw * 16 + gq + 8};
  const int n_q = (L - kt + kBwdQ - 1) / kBwdQ;

  for (int j = 0; j < n_q; ++j) {
    const int qt = kt + j * kBwdQ, buf = j & 1;
    if (j + 1 < n_q) {
      load_query_tile(qt + kBwdQ, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const bfloat* sQb = sQ + buf * kBwdQ * ld;
    const bfloat* sdOb = sdO + buf * kBwdQ * ldv;

    // S^T (16 keys x 32 queries) = K Q^T and dP^T = V dO^T for this warp's keys (and head dims).
    float st[4][4], dpt[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) st[i][0] = st[i][1] = st[i][2] = st[i][3] = dpt[i][0] = dpt[i][1] = dpt[i][2] = dpt[i][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kKMax; ++kk) {
      const int cs = (wc * kKS + kk) * 16, cp = (wc * kKP + kk) * 16;
      uint32_t kf[4], vf[4];
      if (kk < kKS) ldsm_x4(kf, sK + (kw * 16 + (lane & 15)) * ld + cs + (lane >> 4) * 8);
      if (kk < kKP) ldsm_x4(vf, sV + (kw * 16 + (lane & 15)) * ldv + cp + (lane >> 4) * 8);
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        const int rs = (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * ld + cs + ((lane >> 3) & 1) * 8;
        const int rp = (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * ldv + cp + ((lane >> 3) & 1) * 8;
        uint32_t bq[4], bo[4];
        if (kk < kKS) ldsm_x4(bq, sQb + rs);
        if (kk < kKP) ldsm_x4(bo, sdOb + rp);
        if (kk < kKS) {
          mma(st[2 * np], kf, bq[0], bq[1]);
          mma(st[2 * np + 1], kf, bq[2], bq[3]);
        }
        if (kk < kKP) {
          mma(dpt[2 * np], vf, bo[0], bo[1]);
          mma(dpt[2 * np + 1], vf, bo[2], bo[3]);
        }
      }
    }
    if constexpr (WN > 1) {
      // The partner warp (warp ^ 4) holds the other half of each sum in the same lanes and slots.
#pragma unroll
      for (int e = 0; e < 16; ++e) {
        sX[(warp * 32 + e) * 32 + lane] = st[e >> 2][e & 3];
        sX[(warp * 32 + 16 + e) * 32 + lane] = dpt[e >> 2][e & 3];
      }
      __syncthreads();
      const int partner = warp ^ 4;
#pragma unroll
      for (int e = 0; e < 16; ++e) {
        st[e >> 2][e & 3] += sX[(partner * 32 + e) * 32 + lane];
        dpt[e >> 2][e & 3] += sX[(partner * 32 + 16 + e) * 32 + lane];
      }
    }
    // P^T and dS^T = P^T (dP^T - D) * scale, element (key[e / 2], query column c).
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = nt * 8 + 2 * tq + (e & 1), qi = qt + c, kj = key[e >> 1];
        const bool ok = qi < L && kj <= qi;  // kj <= qi < L
        const float p = ok ? exp2f(st[nt][e] * scale_log2 - sLse[buf * kBwdQ + c]) : 0.0f;
        st[nt][e] = p;
        dpt[nt][e] = p * (dpt[nt][e] - sD[buf * kBwdQ + c]) * scale;
      }
    }
    // dV += P^T dO, dK += dS^T Q (k runs over the 32 queries), over this warp's columns.
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      uint32_t pa[4], da[4];
      acc_to_a(pa, st[2 * kk], st[2 * kk + 1]);
      acc_to_a(da, dpt[2 * kk], dpt[2 * kk + 1]);
#pragma unroll
      for (int dp = 0; dp < kDMax; ++dp) {
        const int rv = (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ldv + (wc * kDV + dp) * 16 + (lane >> 4) * 8;
        const int rk = (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + (wc * kDK + dp) * 16 + (lane >> 4) * 8;
        uint32_t bo[4], bq[4];
        if (dp < kDV) ldsm_x4_t(bo, sdOb + rv);
        if (dp < kDK) ldsm_x4_t(bq, sQb + rk);
        if (dp < kDV) {
          mma(dv[2 * dp], pa, bo[0], bo[1]);
          mma(dv[2 * dp + 1], pa, bo[2], bo[3]);
        }
        if (dp < kDK) {
          mma(dk[2 * dp], da, bq[0], bq[1]);
          mma(dk[2 * dp + 1], da, bq[2], bq[3]);
        }
      }
    }
    __syncthreads();  // the buffers and the exchange are free for the next tile
  }

  // This (key tile, query head)'s share of dK and dV (this warp's columns), in fp32 rows of the
  // partial buffers.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (key[r] >= L) continue;
    const int64_t offk = (start + key[r]) * qstride + int64_t(h) * HD + wc * (HD / WN) + 2 * tq;
    const int64_t offv = (start + key[r]) * ostride + int64_t(h) * HDV + wc * (HDV / WN) + 2 * tq;
#pragma unroll
    for (int nt = 0; nt < kDMax * 2; ++nt) {
      if (nt < HD / 8 / WN)
        *reinterpret_cast<float2*>(dk_part + offk + nt * 8) = make_float2(dk[nt][2 * r], dk[nt][2 * r + 1]);
      if (nt < HDV / 8 / WN)
        *reinterpret_cast<float2*>(dv_part + offv + nt * 8) = make_float2(dv[nt][2 * r], dv[nt][2 * r + 1]);
    }
  }
}

}  // namespace

template <int HD, int HDV>
void launch_backward(float* dk_part, float* dv_part, const bfloat* dout, const bfloat* q, const bfloat* k,
                     const bfloat* v, const float* lse, const float* D, const int32_t* cu, const int32_t* tiles,
                     int64_t B, int64_t T, int64_t NH, int64_t NKV, float scale) {
  using Cfg = BwdConfig<HD, HDV>;
  static const bool configured = (allow_smem(flash_backward_kernel<HD, HDV>, Cfg::kSmem), true);
  (void)configured;
  const dim3 grid(max_tiles(B, T), unsigned(NH));
  flash_backward_kernel<HD, HDV><<<grid, Cfg::kThreads, Cfg::kSmem, context().stream>>>(
      dk_part, dv_part, dout, q, k, v, lse, D, cu, tiles, B, NH, NKV, scale);
  CUDA_CHECK(cudaGetLastError());
}

#define R1_INSTANTIATE(D, DV)                                                                                 \
  template void launch_backward<D, DV>(float*, float*, const bfloat*, const bfloat*, const bfloat*,           \
                                       const bfloat*, const float*, const float*, const int32_t*,             \
                                       const int32_t*, int64_t, int64_t, int64_t, int64_t, float);
R1_FLASH_HEAD_DIMS(R1_INSTANTIATE)
#undef R1_INSTANTIATE

}  // namespace r1::cuda::flash

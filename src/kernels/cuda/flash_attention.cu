// bf16 causal attention over packed variable-length sequences on the tensor cores, flash-style
// (FlashAttention-2 order): scores are computed a tile at a time in registers and never stored,
// so memory stays linear in T.
//
// - forward: one block per (query tile of 64 rows, query head); each of 4 warps owns 16 query rows
//   and keeps S, P and O in mma.sync fragments (online softmax on fragment rows, quad shuffles).
//   Key/value tiles of 64 rows are double-buffered in shared memory with cp.async.
// - backward: D = rowsum(dO * O) first; then one block per (key tile of 64 rows, query head) walks
//   the query tiles (32 rows) at or after it: each warp owns 16 keys and computes S^T and dP^T for
//   them, so P^T and dS^T = P^T (dP^T - D) stay in registers for dV += P^T dO and dK += dS^T Q;
//   dS^T goes through shared memory for dQ += dS K, added to an fp32 accumulator with atomics.
//   The blocks of one kv group write per-query-head partial dK/dV (no atomics); a last pass sums
//   them into dk/dv and dq_acc into dq.
// Fragment layouts are those of mma.m16n8k16 (PTX ISA, "Matrix fragments for mma.m16n8k16"): in a
// quad (4 lanes), lane (g = lane / 4, t = lane % 4) holds rows g and g + 8, columns 2t and 2t + 1
// of each 8-column tile. Shapes these kernels do not take (HD not in {32, 64, 96, 128}, unaligned
// pointers) run the simple f32 kernels of attention.cu on widened copies.
#include <cuda_bf16.h>

#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

using bfloat = __nv_bfloat16;

constexpr int kTile = 64;        // forward query rows, key rows per tile
constexpr int kBwdQ = 32;        // backward query rows per tile
constexpr int kFlashThreads = 128;
constexpr int kPadH = 8;         // bf16 row padding: 16-byte rows, conflict-free ldmatrix
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

const bfloat* nv(const bf16* p) { return reinterpret_cast<const bfloat*>(p); }
bfloat* nv(bf16* p) { return reinterpret_cast<bfloat*>(p); }

// ---- PTX wrappers ----

__device__ inline uint32_t smem_addr(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

__device__ inline void ldsm_x4(uint32_t (&r)[4], const bfloat* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ inline void ldsm_x4_t(uint32_t (&r)[4], const bfloat* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ inline void ldsm_x2_t(uint32_t (&r)[2], const bfloat* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_addr(p)));
}

// d (16x8 f32) += a (16x16 bf16) @ b (16x8 bf16)
__device__ inline void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ inline uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// The A fragment (16 x 16) made of two 16x8 accumulator tiles c0 (columns 0-7) and c1 (8-15).
__device__ inline void acc_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack_bf16(c0[0], c0[1]);
  a[1] = pack_bf16(c0[2], c0[3]);
  a[2] = pack_bf16(c1[0], c1[1]);
  a[3] = pack_bf16(c1[2], c1[3]);
}

__device__ inline void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ inline void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Queues the copy of `rows` rows (HD bf16 each, global row stride gstride) into ROWS shared rows
// of stride HD + kPadH, zero-filling the rows past `rows`.
template <int HD, int ROWS>
__device__ inline void load_tile_async(bfloat* dst, const bfloat* src, int64_t gstride, int rows) {
  constexpr int kVec = HD / 8;
  for (int i = threadIdx.x; i < ROWS * kVec; i += kFlashThreads) {
    const int r = i / kVec, c = (i % kVec) * 8;
    const bool valid = r < rows;
    cp_async16(dst + r * (HD + kPadH) + c, src + int64_t(valid ? r : 0) * gstride + c, valid);
  }
}

// tiles[b] = number of `rows`-row tiles before sequence b; tiles[B] = total.
__global__ void tile_offsets_kernel(int32_t* tiles, const int32_t* cu, int64_t B, int rows) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  int32_t acc = 0;
  for (int64_t b = 0; b < B; ++b) {
    tiles[b] = acc;
    acc += (cu[b + 1] - cu[b] + rows - 1) / rows;
  }
  tiles[B] = acc;
}

// Maps a block index to (sequence, tile within it); false for blocks past the last tile. The
// forward visits blocks last-first, so each sequence's late (most expensive, causal) query tiles
// start first; the backward's expensive key tiles are the early ones, visited first as they come.
__device__ inline bool find_tile(const int32_t* tiles, int64_t B, bool reverse, int& b, int& tile) {
  const int x = reverse ? int(gridDim.x) - 1 - int(blockIdx.x) : int(blockIdx.x);
  if (x >= tiles[B]) return false;
  int lo = 0, hi = int(B) - 1;
  while (lo < hi) {  // largest b with tiles[b] <= x (skips empty sequences)
    const int mid = (lo + hi + 1) / 2;
    if (tiles[mid] <= x) lo = mid; else hi = mid - 1;
  }
  b = lo;
  tile = x - tiles[lo];
  return true;
}

template <int HD>
constexpr size_t fwd_smem_bytes() {
  return size_t(5 * kTile * (HD + kPadH)) * sizeof(bfloat);  // Q, 2 x K, 2 x V
}

template <int HD>
__global__ void __launch_bounds__(kFlashThreads) flash_forward_kernel(
    bfloat* out, float* lse, const bfloat* q, const bfloat* k, const bfloat* v, const int32_t* cu,
    const int32_t* tiles, int64_t B, int64_t NH, int64_t NKV, float scale_log2) {
  int b, tile;
  if (!find_tile(tiles, B, true, b, tile)) return;
  constexpr int ld = HD + kPadH;
  extern __shared__ __align__(128) unsigned char smem[];
  bfloat* sQ = reinterpret_cast<bfloat*>(smem);
  bfloat* sK = sQ + kTile * ld;        // [2][kTile * ld]
  bfloat* sV = sK + 2 * kTile * ld;    // [2][kTile * ld]

  const int h = blockIdx.y, g = int(h / (NH / NKV));
  const int64_t start = cu[b];
  const int L = cu[b + 1] - cu[b], q0 = tile * kTile;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
  const int64_t qstride = NH * HD, kvstride = NKV * HD;
  const bfloat* kbase = k + start * kvstride + int64_t(g) * HD;
  const bfloat* vbase = v + start * kvstride + int64_t(g) * HD;

  load_tile_async<HD, kTile>(sQ, q + (start + q0) * qstride + int64_t(h) * HD, qstride, min(kTile, L - q0));
  const int n_kv = (min(L, q0 + kTile) + kTile - 1) / kTile;
  load_tile_async<HD, kTile>(sK, kbase, kvstride, min(kTile, L));
  load_tile_async<HD, kTile>(sV, vbase, kvstride, min(kTile, L));
  cp_async_commit();

  float o[HD / 8][4];
#pragma unroll
  for (int i = 0; i < HD / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  uint32_t qf[HD / 16][4];
  const int qrow[2] = {q0 + warp * 16 + gq, q0 + warp * 16 + gq + 8};

  for (int j = 0; j < n_kv; ++j) {
    if (j + 1 < n_kv) {
      const int kt = (j + 1) * kTile, rows = min(kTile, L - kt);
      load_tile_async<HD, kTile>(sK + ((j + 1) & 1) * kTile * ld, kbase + int64_t(kt) * kvstride, kvstride, rows);
      load_tile_async<HD, kTile>(sV + ((j + 1) & 1) * kTile * ld, vbase + int64_t(kt) * kvstride, kvstride, rows);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (j == 0) {
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk)
        ldsm_x4(qf[kk], sQ + (warp * 16 + (lane & 15)) * ld + kk * 16 + (lane >> 4) * 8);
    }
    const bfloat* sKb = sK + (j & 1) * kTile * ld;
    const bfloat* sVb = sV + (j & 1) * kTile * ld;
    const int kt = j * kTile;

    // S (16 x 64) = Q K^T
    float s[8][4];
#pragma unroll
    for (int i = 0; i < 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t bk[4];
        ldsm_x4(bk, sKb + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * ld + kk * 16 + ((lane >> 3) & 1) * 8);
        mma(s[2 * np], qf[kk], bk[0], bk[1]);
        mma(s[2 * np + 1], qf[kk], bk[2], bk[3]);
      }
    }

    // Online softmax (log2 domain); rows qrow[0] (elements 0, 1) and qrow[1] (2, 3).
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = kt + nt * 8 + 2 * tq + (e & 1), row = qrow[e >> 1];
        const float x = (key <= row && key < L) ? s[nt][e] * scale_log2 : -INFINITY;
        s[nt][e] = x;
        mx[e >> 1] = fmaxf(mx[e >> 1], x);
      }
    }
    float alpha[2], base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m_new = fmaxf(m[r], mx[r]);
      base[r] = m_new == -INFINITY ? 0.0f : m_new;  // fully masked so far: p = 0
      alpha[r] = exp2f(m[r] - base[r]);
      m[r] = m_new;
      l[r] *= alpha[r];  // per-lane partial sums; reduced over the quad at the end
    }
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(s[nt][e] - base[e >> 1]);
        s[nt][e] = p;
        l[e >> 1] += p;
      }
    }
#pragma unroll
    for (int i = 0; i < HD / 8; ++i) {
      o[i][0] *= alpha[0];
      o[i][1] *= alpha[0];
      o[i][2] *= alpha[1];
      o[i][3] *= alpha[1];
    }

    // O (16 x HD) += P (16 x 64) V (64 x HD)
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      uint32_t pa[4];
      acc_to_a(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int dp = 0; dp < HD / 16; ++dp) {
        uint32_t bv[4];
        ldsm_x4_t(bv, sVb + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + dp * 16 + (lane >> 4) * 8);
        mma(o[2 * dp], pa, bv[0], bv[1]);
        mma(o[2 * dp + 1], pa, bv[2], bv[3]);
      }
    }
    __syncthreads();  // all warps are done with this buffer before it is refilled
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    if (qrow[r] >= L) continue;
    const int64_t t = start + qrow[r];
    const float inv = 1.0f / l[r];
    bfloat* dst = out + t * qstride + int64_t(h) * HD + 2 * tq;
#pragma unroll
    for (int nt = 0; nt < HD / 8; ++nt)
      *reinterpret_cast<__nv_bfloat162*>(dst + nt * 8) =
          __floats2bfloat162_rn(o[nt][2 * r] * inv, o[nt][2 * r + 1] * inv);
    if (tq == 0) lse[t * NH + h] = (m[r] + log2f(l[r])) * kLn2;
  }
}

// D[t, h] = sum_d dout[t, h, d] * out[t, h, d] (fp32), one warp per row.
__global__ void attention_delta_kernel(float* D, const bfloat* dout, const bfloat* out, int64_t rows, int HD) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  float s = 0.0f;
  for (int d = lane; d < HD; d += 32)
    s += __bfloat162float(dout[row * HD + d]) * __bfloat162float(out[row * HD + d]);
  s = warp_reduce(s, SumOp{});
  if (lane == 0) D[row] = s;
}

template <int HD>
constexpr size_t bwd_smem_bytes() {
  // K, V (64 rows); 2 x Q, 2 x dO (32 rows); dS^T (64 x (32 + 8)); 2 x lse, 2 x D (32 floats)
  return size_t(2 * kTile * (HD + kPadH) + 4 * kBwdQ * (HD + kPadH) + kTile * (kBwdQ + kPadH)) * sizeof(bfloat) +
         size_t(4 * kBwdQ) * sizeof(float);
}

template <int HD>
__global__ void __launch_bounds__(kFlashThreads) flash_backward_kernel(
    float* dk_part, float* dv_part, float* dq_acc, const bfloat* dout, const bfloat* q, const bfloat* k,
    const bfloat* v, const float* lse, const float* D, const int32_t* cu, const int32_t* tiles, int64_t B,
    int64_t NH, int64_t NKV, float scale) {
  int b, tile;
  if (!find_tile(tiles, B, false, b, tile)) return;
  constexpr int ld = HD + kPadH, lds = kBwdQ + kPadH;
  extern __shared__ __align__(128) unsigned char smem[];
  bfloat* sK = reinterpret_cast<bfloat*>(smem);
  bfloat* sV = sK + kTile * ld;
  bfloat* sQ = sV + kTile * ld;        // [2][kBwdQ * ld]
  bfloat* sdO = sQ + 2 * kBwdQ * ld;   // [2][kBwdQ * ld]
  bfloat* sdS = sdO + 2 * kBwdQ * ld;  // [kTile][lds]: dS^T, keys x queries
  float* sLse = reinterpret_cast<float*>(sdS + kTile * lds);  // [2][kBwdQ], lse * log2(e)
  float* sD = sLse + 2 * kBwdQ;                                 // [2][kBwdQ]

  const int h = blockIdx.y, g = int(h / (NH / NKV));
  const int64_t start = cu[b];
  const int L = cu[b + 1] - cu[b], kt = tile * kTile;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
  const int64_t qstride = NH * HD, kvstride = NKV * HD;
  const bfloat* qbase = q + start * qstride + int64_t(h) * HD;
  const bfloat* dobase = dout + start * qstride + int64_t(h) * HD;
  const float scale_log2 = scale * kLog2e;

  load_tile_async<HD, kTile>(sK, k + (start + kt) * kvstride + int64_t(g) * HD, kvstride, min(kTile, L - kt));
  load_tile_async<HD, kTile>(sV, v + (start + kt) * kvstride + int64_t(g) * HD, kvstride, min(kTile, L - kt));
  // Queues query tile qt into buffer buf (Q and dO by cp.async; lse and D by plain stores, which
  // the __syncthreads before their use publishes).
  auto load_query_tile = [&](int qt, int buf) {
    const int rows = min(kBwdQ, L - qt);
    load_tile_async<HD, kBwdQ>(sQ + buf * kBwdQ * ld, qbase + int64_t(qt) * qstride, qstride, rows);
    load_tile_async<HD, kBwdQ>(sdO + buf * kBwdQ * ld, dobase + int64_t(qt) * qstride, qstride, rows);
    for (int i = threadIdx.x; i < kBwdQ; i += kFlashThreads) {
      const bool ok = i < rows;
      sLse[buf * kBwdQ + i] = ok ? lse[(start + qt + i) * NH + h] * kLog2e : INFINITY;
      sD[buf * kBwdQ + i] = ok ? D[(start + qt + i) * NH + h] : 0.0f;
    }
  };
  load_query_tile(kt, 0);
  cp_async_commit();

  float dk[HD / 8][4], dv[HD / 8][4];
#pragma unroll
  for (int i = 0; i < HD / 8; ++i) {
    dk[i][0] = dk[i][1] = dk[i][2] = dk[i][3] = 0.0f;
    dv[i][0] = dv[i][1] = dv[i][2] = dv[i][3] = 0.0f;
  }
  const int key[2] = {kt + warp * 16 + gq, kt + warp * 16 + gq + 8};
  const int n_q = (L - kt + kBwdQ - 1) / kBwdQ;
  constexpr int kSlice = HD / 4;  // dQ columns per warp

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
    const bfloat* sdOb = sdO + buf * kBwdQ * ld;

    // S^T (16 keys x 32 queries) = K Q^T and dP^T = V dO^T for this warp's keys.
    float st[4][4], dpt[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) st[i][0] = st[i][1] = st[i][2] = st[i][3] = dpt[i][0] = dpt[i][1] = dpt[i][2] = dpt[i][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t kf[4], vf[4];
      ldsm_x4(kf, sK + (warp * 16 + (lane & 15)) * ld + kk * 16 + (lane >> 4) * 8);
      ldsm_x4(vf, sV + (warp * 16 + (lane & 15)) * ld + kk * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        const int r = (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * ld + kk * 16 + ((lane >> 3) & 1) * 8;
        uint32_t bq[4], bo[4];
        ldsm_x4(bq, sQb + r);
        ldsm_x4(bo, sdOb + r);
        mma(st[2 * np], kf, bq[0], bq[1]);
        mma(st[2 * np + 1], kf, bq[2], bq[3]);
        mma(dpt[2 * np], vf, bo[0], bo[1]);
        mma(dpt[2 * np + 1], vf, bo[2], bo[3]);
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
    // dV += P^T dO, dK += dS^T Q (k runs over the 32 queries)
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      uint32_t pa[4], da[4];
      acc_to_a(pa, st[2 * kk], st[2 * kk + 1]);
      acc_to_a(da, dpt[2 * kk], dpt[2 * kk + 1]);
#pragma unroll
      for (int dp = 0; dp < HD / 16; ++dp) {
        const int r = (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + dp * 16 + (lane >> 4) * 8;
        uint32_t bo[4], bq[4];
        ldsm_x4_t(bo, sdOb + r);
        ldsm_x4_t(bq, sQb + r);
        mma(dv[2 * dp], pa, bo[0], bo[1]);
        mma(dv[2 * dp + 1], pa, bo[2], bo[3]);
        mma(dk[2 * dp], da, bq[0], bq[1]);
        mma(dk[2 * dp + 1], da, bq[2], bq[3]);
      }
    }
    // dS^T to shared memory (keys x queries) for dQ.
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const int c = nt * 8 + 2 * tq;
      *reinterpret_cast<uint32_t*>(sdS + (warp * 16 + gq) * lds + c) = pack_bf16(dpt[nt][0], dpt[nt][1]);
      *reinterpret_cast<uint32_t*>(sdS + (warp * 16 + gq + 8) * lds + c) = pack_bf16(dpt[nt][2], dpt[nt][3]);
    }
    __syncthreads();
    // dQ (32 queries x this warp's HD/4 columns) = dS (32 x 64 keys) K (64 x HD)
    {
      float dq[2][kSlice / 8][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nt = 0; nt < kSlice / 8; ++nt) dq[mt][nt][0] = dq[mt][nt][1] = dq[mt][nt][2] = dq[mt][nt][3] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < kTile / 16; ++kk) {
        uint32_t a[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
          ldsm_x4_t(a[mt], sdS + (kk * 16 + (lane & 7) + (lane >> 4) * 8) * lds + mt * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
        for (int nt = 0; nt < kSlice / 8; ++nt) {
          uint32_t bk[2];
          ldsm_x2_t(bk, sK + (kk * 16 + (lane & 15)) * ld + warp * kSlice + nt * 8);
          mma(dq[0][nt], a[0], bk[0], bk[1]);
          mma(dq[1][nt], a[1], bk[0], bk[1]);
        }
      }
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
        for (int e2 = 0; e2 < 2; ++e2) {
          const int qi = qt + mt * 16 + gq + e2 * 8;
          if (qi >= L) continue;
          float* dst = dq_acc + (start + qi) * qstride + int64_t(h) * HD + warp * kSlice + 2 * tq;
#pragma unroll
          for (int nt = 0; nt < kSlice / 8; ++nt) {
            // One 8-byte atomic per pair (sm_90): half the atomic traffic of two scalar ones.
            atomicAdd(reinterpret_cast<float2*>(dst + nt * 8), make_float2(dq[mt][nt][2 * e2], dq[mt][nt][2 * e2 + 1]));
          }
        }
      }
    }
    __syncthreads();  // buffers and dS^T are free for the next tile
  }

  // This (key tile, query head)'s share of dK and dV, in fp32 rows of the partial buffers.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (key[r] >= L) continue;
    const int64_t off = (start + key[r]) * qstride + int64_t(h) * HD + 2 * tq;
#pragma unroll
    for (int nt = 0; nt < HD / 8; ++nt) {
      *reinterpret_cast<float2*>(dk_part + off + nt * 8) = make_float2(dk[nt][2 * r], dk[nt][2 * r + 1]);
      *reinterpret_cast<float2*>(dv_part + off + nt * 8) = make_float2(dv[nt][2 * r], dv[nt][2 * r + 1]);
    }
  }
}

// dk[t, g, d] += sum over the group's query heads of dk_part[t, h, d] (likewise dv); dq += dq_acc.
__global__ void attention_grad_finish_kernel(bfloat* dq, bfloat* dk, bfloat* dv, const float* dq_acc,
                                             const float* dk_part, const float* dv_part, int64_t T, int64_t NH,
                                             int64_t NKV, int64_t HD) {
  const int64_t nq = T * NH * HD, nkv = T * NKV * HD, group = NH / NKV;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < nq + nkv;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (i < nq) {
      dq[i] = __float2bfloat16(__bfloat162float(dq[i]) + dq_acc[i]);
      continue;
    }
    const int64_t j = i - nq, d = j % HD, g = (j / HD) % NKV, t = j / (HD * NKV);
    float sk = 0.0f, sv = 0.0f;
    for (int64_t hh = 0; hh < group; ++hh) {
      const int64_t p = (t * NH + g * group + hh) * HD + d;
      sk += dk_part[p];
      sv += dv_part[p];
    }
    dk[j] = __float2bfloat16(__bfloat162float(dk[j]) + sk);
    dv[j] = __float2bfloat16(__bfloat162float(dv[j]) + sv);
  }
}

// ---- the f32 fallback for shapes the tensor-core kernels do not take ----

__global__ void widen_kernel(float* dst, const bfloat* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = __bfloat162float(src[i]);
}

// dst = src (accumulate = false) or dst += src, rounding to bf16.
__global__ void narrow_kernel(bfloat* dst, const float* src, int64_t n, bool accumulate) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16((accumulate ? __bfloat162float(dst[i]) : 0.0f) + src[i]);
}

float* widened(float* dst, const bf16* src, int64_t n) {
  widen_kernel<<<grid_for(n), kThreads, 0, context().stream>>>(dst, nv(src), n);
  CUDA_CHECK(cudaGetLastError());
  return dst;
}

void narrowed(bf16* dst, const float* src, int64_t n, bool accumulate) {
  narrow_kernel<<<grid_for(n), kThreads, 0, context().stream>>>(nv(dst), src, n, accumulate);
  CUDA_CHECK(cudaGetLastError());
}

// Memory for the widened copies: the f32 kernels use the context's scratch themselves, so the
// fallback keeps its own grow-only buffer (only shapes outside the flash kernels ever touch it).
float* fallback_buffer(size_t floats) {
  static float* buf = nullptr;
  static size_t size = 0;
  if (floats > size) {
    if (buf) CUDA_CHECK(cudaFree(buf));  // waits for the work still using it
    CUDA_CHECK(cudaMalloc(&buf, floats * sizeof(float)));
    size = floats;
  }
  return buf;
}

bool flash_supported(int64_t HD, std::initializer_list<const void*> ptrs) {
  if (HD % 32 != 0 || HD > 128) return false;
  for (const void* p : ptrs)
    if (!aligned16(p)) return false;
  return true;
}

// Scratch layout: tile offsets (B + 1 ints, rounded up to 256 bytes), then the backward's fp32
// buffers.
size_t round256(size_t bytes) { return (bytes + 255) / 256 * 256; }
size_t tiles_bytes(int64_t B) { return round256(size_t(B + 1) * sizeof(int32_t)); }

int32_t* tile_offsets(void* scratch, const int32_t* cu, int64_t B, int rows) {
  int32_t* tiles = static_cast<int32_t*>(scratch);
  tile_offsets_kernel<<<1, 1, 0, context().stream>>>(tiles, cu, B, rows);
  CUDA_CHECK(cudaGetLastError());
  return tiles;
}

// An upper bound on the tiles of all sequences: each adds at most one partial tile.
unsigned max_tiles(int64_t B, int64_t T) { return unsigned(T / kTile + B); }

template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024) CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

template <int HD>
void launch_forward(bfloat* out, float* lse, const bfloat* q, const bfloat* k, const bfloat* v, const int32_t* cu,
                    const int32_t* tiles, int64_t B, int64_t T, int64_t NH, int64_t NKV, float scale) {
  constexpr size_t smem = fwd_smem_bytes<HD>();
  static const bool configured = (allow_smem(flash_forward_kernel<HD>, smem), true);
  (void)configured;
  const dim3 grid(max_tiles(B, T), unsigned(NH));
  flash_forward_kernel<HD><<<grid, kFlashThreads, smem, context().stream>>>(out, lse, q, k, v, cu, tiles, B, NH, NKV,
                                                                            scale * kLog2e);
  CUDA_CHECK(cudaGetLastError());
}

template <int HD>
void launch_backward(float* dk_part, float* dv_part, float* dq_acc, const bfloat* dout, const bfloat* q,
                     const bfloat* k, const bfloat* v, const float* lse, const float* D, const int32_t* cu,
                     const int32_t* tiles, int64_t B, int64_t T, int64_t NH, int64_t NKV, float scale) {
  constexpr size_t smem = bwd_smem_bytes<HD>();
  static const bool configured = (allow_smem(flash_backward_kernel<HD>, smem), true);
  (void)configured;
  const dim3 grid(max_tiles(B, T), unsigned(NH));
  flash_backward_kernel<HD><<<grid, kFlashThreads, smem, context().stream>>>(dk_part, dv_part, dq_acc, dout, q, k, v,
                                                                             lse, D, cu, tiles, B, NH, NKV, scale);
  CUDA_CHECK(cudaGetLastError());
}

// The head dims with a tensor-core instantiation (flash_supported keeps the rest out).
#define R1_FLASH_HEAD_DIMS(X) X(32) X(64) X(96) X(128)

}  // namespace

void attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                       const int32_t* cu_seqlens, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                       float scale) {
  if (T == 0 || B == 0) return;
  if (!flash_supported(HD, {out, q, k, v})) {
    const int64_t nq = T * NH * HD, nkv = T * NKV * HD;
    float* s = fallback_buffer(size_t(2 * nq + 2 * nkv));
    float *q32 = s, *o32 = s + nq, *k32 = s + 2 * nq, *v32 = k32 + nkv;
    attention_forward(o32, lse, widened(q32, q, nq), widened(k32, k, nkv), widened(v32, v, nkv), cu_seqlens, B, T,
                      NH, NKV, HD, scale);
    narrowed(out, o32, nq, false);
    return;
  }
  const int32_t* tiles = tile_offsets(context().scratch(tiles_bytes(B)), cu_seqlens, B, kTile);
  switch (HD) {
#define R1_CASE(D) \
  case D: launch_forward<D>(nv(out), lse, nv(q), nv(k), nv(v), cu_seqlens, tiles, B, T, NH, NKV, scale); break;
    R1_FLASH_HEAD_DIMS(R1_CASE)
#undef R1_CASE
    default: break;
  }
}

void attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k,
                        const bf16* v, const bf16* out, const float* lse, const int32_t* cu_seqlens, int64_t B,
                        int64_t T, int64_t NH, int64_t NKV, int64_t HD, float scale) {
  if (T == 0 || B == 0) return;
  const int64_t nq = T * NH * HD, nkv = T * NKV * HD;
  cudaStream_t stream = context().stream;
  if (!flash_supported(HD, {dq, dk, dv, dout, q, k, v, out})) {
    float* s = fallback_buffer(size_t(4 * nq + 4 * nkv));
    float *q32 = s, *o32 = s + nq, *do32 = s + 2 * nq, *dq32 = s + 3 * nq;
    float *k32 = s + 4 * nq, *v32 = k32 + nkv, *dk32 = v32 + nkv, *dv32 = dk32 + nkv;
    CUDA_CHECK(cudaMemsetAsync(dq32, 0, size_t(nq) * sizeof(float), stream));
    CUDA_CHECK(cudaMemsetAsync(dk32, 0, size_t(2 * nkv) * sizeof(float), stream));
    attention_backward(dq32, dk32, dv32, widened(do32, dout, nq), widened(q32, q, nq), widened(k32, k, nkv),
                       widened(v32, v, nkv), widened(o32, out, nq), lse, cu_seqlens, B, T, NH, NKV, HD, scale);
    narrowed(dq, dq32, nq, true);
    narrowed(dk, dk32, nkv, true);
    narrowed(dv, dv32, nkv, true);
    return;
  }
  // Scratch: tile offsets | D (T, NH) | dq_acc, dk_part, dv_part (T, NH, HD) each, fp32; every
  // section starts 256-byte aligned (the float2 atomics and stores need 8 bytes).
  const size_t d_bytes = round256(size_t(T * NH) * sizeof(float)), g_bytes = round256(size_t(nq) * sizeof(float));
  unsigned char* s = static_cast<unsigned char*>(context().scratch(tiles_bytes(B) + d_bytes + 3 * g_bytes));
  const int32_t* tiles = tile_offsets(s, cu_seqlens, B, kTile);
  float* D = reinterpret_cast<float*>(s + tiles_bytes(B));
  float* dq_acc = reinterpret_cast<float*>(s + tiles_bytes(B) + d_bytes);
  float* dk_part = reinterpret_cast<float*>(s + tiles_bytes(B) + d_bytes + g_bytes);
  float* dv_part = reinterpret_cast<float*>(s + tiles_bytes(B) + d_bytes + 2 * g_bytes);
  // dq_acc gathers atomics; the partials of keys past a sequence's end are never written, but no
  // such rows exist (every key row of a sequence belongs to one of its tiles), so only dq is zeroed.
  CUDA_CHECK(cudaMemsetAsync(dq_acc, 0, size_t(nq) * sizeof(float), stream));
  const int64_t rows = T * NH;
  attention_delta_kernel<<<unsigned((rows + 7) / 8), 256, 0, stream>>>(D, nv(dout), nv(out), rows, int(HD));
  CUDA_CHECK(cudaGetLastError());
  switch (HD) {
#define R1_CASE(HDc)                                                                                            \
  case HDc:                                                                                                      \
    launch_backward<HDc>(dk_part, dv_part, dq_acc, nv(dout), nv(q), nv(k), nv(v), lse, D, cu_seqlens, tiles, B, \
                         T, NH, NKV, scale);                                                                     \
    break;
    R1_FLASH_HEAD_DIMS(R1_CASE)
#undef R1_CASE
    default: break;
  }
  attention_grad_finish_kernel<<<grid_for(nq + nkv), kThreads, 0, stream>>>(nv(dq), nv(dk), nv(dv), dq_acc, dk_part,
                                                                            dv_part, T, NH, NKV, HD);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace r1::cuda

#pragma once
// Shared by the bf16 tensor-core attention: the kernels (flash_forward.cu, flash_backward.cu) and
// their host entry points (flash_attention.cu). PTX wrappers, tile loads, the block -> tile map, the
// per-head-dim configurations and the launchers. Internal to the backend.
//
// Fragment layouts are those of mma.m16n8k16 (PTX ISA, "Matrix fragments for mma.m16n8k16"): in a
// quad (4 lanes), lane (g = lane / 4, t = lane % 4) holds rows g and g + 8, columns 2t and 2t + 1
// of each 8-column tile.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/tensor_core.cuh"

namespace r1::cuda::flash {

using bfloat = __nv_bfloat16;

// The (HD, HDV) pairs with tensor-core kernels (q/k head dim, v head dim). Other head dims run the
// f32 kernels on widened copies (a fallback that ops::supports declares).
#define R1_FLASH_HEAD_DIMS(X) X(32, 32) X(64, 64) X(96, 96) X(128, 128) X(192, 192) X(256, 256) X(192, 128)

constexpr int kTile = 64;    // forward query rows per block; backward key rows per block
constexpr int kBwdQ = 32;    // backward query rows per tile
constexpr int kPadH = 8;     // bf16 row padding: 16-byte rows, conflict-free ldmatrix
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
// Dynamic shared memory that still lets two blocks share an SM (228 KB, 1 KB reserved per block).
constexpr size_t kTwoBlocksSmem = 113 * 1024;

// Forward: 4 warps of 16 query rows. Q stays in registers up to HD 128 (beyond, its fragments are
// reloaded from shared memory per key tile, which keeps the O accumulator out of local memory);
// key tiles of 64 rows unless that would leave one block per SM.
template <int HD, int HDV>
struct FwdConfig {
  static constexpr int kThreads = 128;
  static constexpr bool kQInRegs = HD <= 128;
  static constexpr size_t smem_for(int kn) {
    return size_t(kTile * (HD + kPadH) + 2 * kn * (HD + kPadH) + 2 * kn * (HDV + kPadH)) * sizeof(bfloat);
  }
  static constexpr int kKeys = smem_for(64) <= kTwoBlocksSmem ? 64 : 32;  // key rows per tile
  static constexpr size_t kSmem = smem_for(kKeys);                          // Q, 2 x K, 2 x V
};

// Backward: each group of 16 key rows is one warp's up to head dims 128; beyond, WN = 2 warps share
// it, each accumulating half of the dK/dV columns (the register budget) after exchanging halves of
// the S^T and dP^T contractions through shared memory.
template <int HD, int HDV>
struct BwdConfig {
  static constexpr int WN = HD <= 128 && HDV <= 128 ? 1 : 2;
  static constexpr int kThreads = 128 * WN;
  // K, V (64 rows); 2 x Q, 2 x dO (32 rows) bf16; 2 x lse, 2 x D (32 floats); with WN = 2 the
  // exchange of the contraction halves: 32 floats per thread.
  static constexpr size_t kSmem =
      size_t(kTile * (HD + kPadH) + kTile * (HDV + kPadH) + 2 * kBwdQ * (HD + kPadH) + 2 * kBwdQ * (HDV + kPadH)) *
          sizeof(bfloat) +
      size_t(4 * kBwdQ) * sizeof(float) + (WN > 1 ? size_t(kThreads) * 32 * sizeof(float) : 0);
};

// The backward's dQ (flash_backward_dq.cu): the forward's layout (4 warps of 16 query rows, key
// tiles double-buffered) with dO beside Q; Q's fragments stay in registers up to HD 128, dO's are
// read from shared memory per key tile; key tiles of 64 rows unless that would leave one block per SM.
template <int HD, int HDV>
struct DqConfig {
  static constexpr int kThreads = 128;
  static constexpr bool kQInRegs = HD <= 128;
  static constexpr size_t smem_for(int kn) {
    return size_t(kTile * (HD + kPadH) + kTile * (HDV + kPadH) + 2 * kn * (HD + kPadH) + 2 * kn * (HDV + kPadH)) *
           sizeof(bfloat);
  }
  static constexpr int kKeys = smem_for(64) <= kTwoBlocksSmem ? 64 : 32;  // key rows per tile
  static constexpr size_t kSmem = smem_for(kKeys);                          // Q, dO, 2 x K, 2 x V
};

// The A fragment (16 x 16) made of two 16x8 accumulator tiles c0 (columns 0-7) and c1 (8-15).
__device__ inline void acc_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack_bf16(c0[0], c0[1]);
  a[1] = pack_bf16(c0[2], c0[3]);
  a[2] = pack_bf16(c1[0], c1[1]);
  a[3] = pack_bf16(c1[2], c1[3]);
}

// One online-softmax step (base 2) on the fragment rows of a score tile s (16 x 8 NT: a lane holds
// rows gq and gq + 8, elements 0-1 and 2-3 of each 8-column tile), masked entries -inf; mx holds
// the lane's maxima of its two rows. The row maxima go over the quad, the running max m and the
// lane's partial sum l are rescaled, s becomes the probabilities, and the accumulator o (16 x 8 NO)
// is rescaled. A row masked everywhere so far keeps p = 0.
template <int NT, int NO>
__device__ inline void online_softmax_step(float (&s)[NT][4], float (&mx)[2], float (&m)[2], float (&l)[2],
                                           float (&o)[NO][4]) {
  float alpha[2], base[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    const float m_new = fmaxf(m[r], mx[r]);
    base[r] = m_new == -INFINITY ? 0.0f : m_new;  // fully masked so far: p = 0
    alpha[r] = exp2f(m[r] - base[r]);
    m[r] = m_new;
    l[r] = __fmul_rn(l[r], alpha[r]);  // per-lane partial sums, reduced over the quad at the end; never
                                       // fused with the adds below (every kernel rounds alike)
  }
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float p = exp2f(s[nt][e] - base[e >> 1]);
      s[nt][e] = p;
      l[e >> 1] += p;
    }
  }
#pragma unroll
  for (int i = 0; i < NO; ++i) {
    o[i][0] = __fmul_rn(o[i][0], alpha[0]);
    o[i][1] = __fmul_rn(o[i][1], alpha[0]);
    o[i][2] = __fmul_rn(o[i][2], alpha[1]);
    o[i][3] = __fmul_rn(o[i][3], alpha[1]);
  }
}

// The 16 x 16 A fragment kk (columns kk * 16 on) of rows warp * 16 on of a tile in shared memory
// (row stride LD): a warp's query (or dO) rows.
template <int LD>
__device__ inline void row_fragment(uint32_t (&f)[4], const bfloat* s, int warp, int kk, int lane) {
  ldsm_x4(f, s + (warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
}

// A lane's partial sum summed over its quad (the same order on every lane: the same bits).
__device__ inline float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  return x;
}

// Rows gq and gq + 8 of the warp's output, o / l (l: each row's whole sum) rounded to bf16 at dst0,
// dst1 (the lane's columns 2 tq, 2 tq + 1 of each 8), a null dst skipped.
template <int HDV>
__device__ inline void write_rows(const float (&o)[HDV / 8][4], const float (&l)[2], bfloat* dst0, bfloat* dst1,
                                  int lane) {
  const int tq = lane & 3;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    bfloat* dst = r == 0 ? dst0 : dst1;
    if (!dst) continue;
    const float inv = 1.0f / l[r];
#pragma unroll
    for (int nt = 0; nt < HDV / 8; ++nt)
      *reinterpret_cast<__nv_bfloat162*>(dst + nt * 8 + 2 * tq) =
          __floats2bfloat162_rn(o[nt][2 * r] * inv, o[nt][2 * r + 1] * inv);
  }
}

// Q's A fragment kk for a warp's 16 query rows: from its registers qf (Q_REGS), else from the rows at
// sQw (row stride LD).
template <int LD, bool Q_REGS, int NQ>
__device__ inline void q_fragment(uint32_t (&qa)[4], const uint32_t (&qf)[NQ][4], const bfloat* sQw, int kk,
                                  int lane) {
  if constexpr (Q_REGS) {
    qa[0] = qf[kk][0], qa[1] = qf[kk][1], qa[2] = qf[kk][2], qa[3] = qf[kk][3];
  } else {
    row_fragment<LD>(qa, sQw, 0, kk, lane);
  }
}

// S (16 x KN) = Q K^T on the tensor cores, from zero: K's rows at sK (row stride LD). Each score is
// one mma chain over kk in order, whatever KN, so a tile's scores and its 16-key chunks' agree bit
// for bit. The forward, the dQ backward (S, and dP = dO V^T) and both decodes contract here.
template <int HD, int KN, int LD, bool Q_REGS, int NQ>
__device__ inline void qk_scores(float (&s)[KN / 8][4], const uint32_t (&qf)[NQ][4], const bfloat* sQw,
                                 const bfloat* sK, int lane) {
#pragma unroll
  for (int i = 0; i < KN / 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
    uint32_t qa[4];
    q_fragment<LD, Q_REGS>(qa, qf, sQw, kk, lane);
#pragma unroll
    for (int np = 0; np < KN / 16; ++np) {
      uint32_t bk[4];
      ldsm_x4(bk, sK + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * LD + kk * 16 + ((lane >> 3) & 1) * 8);
      mma(s[2 * np], qa, bk[0], bk[1]);
      mma(s[2 * np + 1], qa, bk[2], bk[3]);
    }
  }
}

// O (16 x HDV) += P (16 x 16: p0, p1, the probabilities of 16 keys, rounded to bf16) V (those keys'
// rows at sV16, row stride LDV).
template <int HDV, int LDV>
__device__ inline void pv16(float (&o)[HDV / 8][4], const float (&p0)[4], const float (&p1)[4], const bfloat* sV16,
                            int lane) {
  uint32_t pa[4];
  acc_to_a(pa, p0, p1);
#pragma unroll
  for (int dp = 0; dp < HDV / 16; ++dp) {
    uint32_t bv[4];
    ldsm_x4_t(bv, sV16 + ((lane & 7) + ((lane >> 3) & 1) * 8) * LDV + dp * 16 + (lane >> 4) * 8);
    mma(o[2 * dp], pa, bv[0], bv[1]);
    mma(o[2 * dp + 1], pa, bv[2], bv[3]);
  }
}

// A warp's forward over its 16 query rows, in FlashAttention-2 order: the output accumulator (16 x
// HDV in mma fragments), the running max m and the lane's partial sums l of its rows gq and gq + 8,
// and Q's fragments (in registers when Q_REGS, else read from the warp's rows at sQ per tile). The
// training forward (flash_forward.cu) and the exact decode (decode_exact.cu) run this one code on the
// same key tiles, so a row's output is the same bits in both: it depends on the row's own query and
// keys only (a tile past a row's last key is a no-op for it, bit for bit: alpha 1, p 0). Products are
// rounded before the subtractions (never fused), so how the compiler schedules each kernel around
// this code cannot change them.
template <int HD, int HDV, bool Q_REGS>
struct WarpForward {
  static constexpr int ld = HD + kPadH, ldv = HDV + kPadH;
  float o[HDV / 8][4];
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  uint32_t qf[Q_REGS ? HD / 16 : 1][4];

  __device__ WarpForward() {
#pragma unroll
    for (int i = 0; i < HDV / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  }

  // Q's fragments into registers (Q_REGS), from the warp's 16 rows at sQ, once Q has landed.
  __device__ void load_q(const bfloat* sQ, int lane) {
    if constexpr (Q_REGS) {
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) row_fragment<ld>(qf[kk], sQ, 0, kk, lane);
    }
  }

  // One key tile: S = Q K^T on the tensor cores (K's rows kt ... kt + KN - 1 at sK), scaled to base 2
  // and masked (key > lim[r], r the lane's rows: -inf), the online softmax step, O += P V with P
  // rounded to bf16 (V's rows at sV).
  template <int KN>
  __device__ void tile(const bfloat* sQ, const bfloat* sK, const bfloat* sV, int kt, const int (&lim)[2],
                       float scale_log2, int lane) {
    float s[KN / 8][4];
    qk_scores<HD, KN, ld, Q_REGS>(s, qf, sQ, sK, lane);
    softmax_step<KN>(s, kt, lim, scale_log2, lane);
    // O (16 x HDV) += P (16 x KN) V (KN x HDV)
#pragma unroll
    for (int kk = 0; kk < KN / 16; ++kk) pv16<HDV, ldv>(o, s[2 * kk], s[2 * kk + 1], sV + kk * 16 * ldv, lane);
  }

  // The same tile in pieces, for a caller that streams a tile's keys through shared memory 16 rows at
  // a time (decode_exact.cu): scores16 of each 16-key chunk of K (keys kt + 16 c ..., giving s[2 c]
  // and s[2 c + 1]), then softmax_step, then pv16 (on o) of each 16-key chunk of V in order: tile()'s
  // own code, so tile()'s bits.
  __device__ void scores16(float (&s0)[4], float (&s1)[4], const bfloat* sQ, const bfloat* sK16, int lane) const {
    float c[2][4];
    qk_scores<HD, 16, ld, Q_REGS>(c, qf, sQ, sK16, lane);
#pragma unroll
    for (int e = 0; e < 4; ++e) s0[e] = c[0][e], s1[e] = c[1][e];
  }

  // Scale to base 2 and mask (key > lim[r], r the lane's rows: -inf) the tile's scores (keys kt ...),
  // then the online softmax step: s becomes P, o is rescaled. Rows gq (elements 0, 1), gq + 8 (2, 3).
  template <int KN>
  __device__ void softmax_step(float (&s)[KN / 8][4], int kt, const int (&lim)[2], float scale_log2, int lane) {
    const int tq = lane & 3;
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < KN / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = kt + nt * 8 + 2 * tq + (e & 1);
        const float x = key <= lim[e >> 1] ? __fmul_rn(s[nt][e], scale_log2) : -INFINITY;
        s[nt][e] = x;
        mx[e >> 1] = fmaxf(mx[e >> 1], x);
      }
    }
    online_softmax_step(s, mx, m, l, o);
  }

  // The end: l summed over the quad, and row r's output o / l rounded to bf16 at dst_r (the lane's
  // columns 2 tq, 2 tq + 1 of each 8) when dst_r is not null.
  __device__ void finish(bfloat* dst0, bfloat* dst1, int lane) {
#pragma unroll
    for (int r = 0; r < 2; ++r) l[r] = quad_sum(l[r]);
    write_rows<HDV>(o, l, dst0, dst1, lane);
  }
};

// The batch-invariant forward's fixed key splits (kExactSplitKeys, set_exact_attention_split): a
// row's keys in splits of that many keys from key 0, each split a fresh WarpForward over its tiles,
// its (m, l summed over the quad, unnormalised o) merged in split order into (M, L, O) by merge_row
// and merge_elem. The training forward merges in registers as it goes; the split decode
// (decode_exact.cu) computes splits in parallel and its merge kernel runs the same two functions in
// the same order, so both give the same bits. A split past a row's last key is a no-op for it.
constexpr int kExactSplitKeys = 512;

// Key tiles per fixed split for (HD, HDV), 0 where the split forward does not exist: its extra
// accumulator (HDV / 2 registers a lane) fits up to HDV 128 with 64-key tiles.
template <int HD, int HDV>
constexpr int exact_split_tiles() {
  return HDV <= 128 && FwdConfig<HD, HDV>::kKeys == 64 ? kExactSplitKeys / 64 : 0;
}

struct SplitMerge {
  // Merges a split's max m and whole sum l into the row's (M, L); a and b: the weights of the old
  // O and of the split's o. Explicit roundings: no fused operation, on any device.
  __device__ static void merge_row(float& M, float& L, float m, float l, float& a, float& b) {
    const float Mn = fmaxf(M, m);
    a = Mn == -INFINITY ? 0.0f : exp2f(M - Mn);
    b = Mn == -INFINITY ? 0.0f : exp2f(m - Mn);
    L = __fadd_rn(__fmul_rn(L, a), __fmul_rn(l, b));
    M = Mn;
  }
  __device__ static float merge_elem(float O, float o, float a, float b) {
    return __fadd_rn(__fmul_rn(O, a), __fmul_rn(o, b));
  }
};

template <int HDV>
struct SplitSum {
  float O[HDV / 8][4];
  float M[2] = {-INFINITY, -INFINITY}, L[2] = {0.0f, 0.0f};

  __device__ SplitSum() {
#pragma unroll
    for (int i = 0; i < HDV / 8; ++i) O[i][0] = O[i][1] = O[i][2] = O[i][3] = 0.0f;
  }

  // Takes w's split into the sums; w starts the next split afresh.
  template <int HD, bool Q_REGS>
  __device__ void take(WarpForward<HD, HDV, Q_REGS>& w) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float a, b;
      SplitMerge::merge_row(M[r], L[r], w.m[r], quad_sum(w.l[r]), a, b);
#pragma unroll
      for (int i = 0; i < HDV / 8; ++i) {
        O[i][2 * r] = SplitMerge::merge_elem(O[i][2 * r], w.o[i][2 * r], a, b);
        O[i][2 * r + 1] = SplitMerge::merge_elem(O[i][2 * r + 1], w.o[i][2 * r + 1], a, b);
        w.o[i][2 * r] = w.o[i][2 * r + 1] = 0.0f;
      }
      w.m[r] = -INFINITY;
      w.l[r] = 0.0f;
    }
  }

  __device__ void finish(bfloat* dst0, bfloat* dst1, int lane) const { write_rows<HDV>(O, L, dst0, dst1, lane); }
};

// Queues the copy of `rows` rows (D bf16 each, global row stride gstride) into ROWS shared rows of
// stride D + kPadH, zero-filling the rows past `rows`. NT: threads in the block.
template <int D, int ROWS, int NT>
__device__ inline void load_tile_async(bfloat* dst, const bfloat* src, int64_t gstride, int rows) {
  constexpr int kVec = D / 8;
  for (int i = threadIdx.x; i < ROWS * kVec; i += NT) {
    const int r = i / kVec, c = (i % kVec) * 8;
    const bool valid = r < rows;
    cp_async16(dst + r * (D + kPadH) + c, src + int64_t(valid ? r : 0) * gstride + c, valid);
  }
}

// One warp queues a chunk of 16 rows of D bf16 (paged-cache rows) into shared rows of stride D + kPadH:
// row r from src + the element offset lane r holds (row_off, passed by shuffle; lanes 16-31 hold
// copies), zero-filled and not read when r >= rows. Every lane calls.
template <int D>
__device__ inline void queue_rows16(bfloat* dst, const bfloat* src, int64_t row_off, int rows, int lane) {
  constexpr int NC = D / 8;
  static_assert((16 * NC) % 32 == 0, "the same trip count on every lane (the shuffle)");
#pragma unroll
  for (int i = lane; i < 16 * NC; i += 32) {
    const int r = i / NC, c = (i % NC) * 8;
    const int64_t off = __shfl_sync(0xffffffffu, row_off, r);
    cp_async16(dst + r * (D + kPadH) + c, src + (r < rows ? off + c : 0), r < rows);
  }
}

// The key/value double buffer of the query-tile kernels (forward and dQ), stage s at sK + s * KN *
// (HD + kPadH) and sV + s * KN * (HDV + kPadH): before tile j is read, tile j + 1 is queued into the
// other stage, then tile j is waited for and the block synchronizes. The first tile was queued
// (and committed) with the query tile.
template <int HD, int HDV, int KN, int NT>
__device__ inline void kv_tile_ready(bfloat* sK, bfloat* sV, const bfloat* kbase, const bfloat* vbase,
                                     int64_t kstride, int64_t vstride, int j, int n_kv, int L) {
  if (j + 1 < n_kv) {
    const int kt = (j + 1) * KN, rows = min(KN, L - kt), s = (j + 1) & 1;
    load_tile_async<HD, KN, NT>(sK + s * KN * (HD + kPadH), kbase + int64_t(kt) * kstride, kstride, rows);
    load_tile_async<HDV, KN, NT>(sV + s * KN * (HDV + kPadH), vbase + int64_t(kt) * vstride, vstride, rows);
    cp_async_commit();
    cp_async_wait<1>();
  } else {
    cp_async_wait<0>();
  }
  __syncthreads();
}

// Maps a block index to (sequence, tile within it); false for blocks past the last tile. tiles[b] is
// the number of tiles before sequence b, tiles[B] the total. The forward visits blocks last-first,
// so each sequence's late (most expensive, causal) query tiles start first; the backward's
// expensive key tiles are the early ones, visited first as they come.
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

// An upper bound on the tiles of all sequences: each adds at most one partial tile.
inline unsigned max_tiles(int64_t B, int64_t T) { return unsigned(T / kTile + B); }

// Raises a kernel's dynamic shared memory limit when it needs more than the default 48 KB.
template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024) CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

// ---- launchers (instantiated for R1_FLASH_HEAD_DIMS) ----

// out (T, NH, HDV), lse (T, NH); q (T, NH, HD), k (T, NKV, HD), v (T, NKV, HDV); tiles: the
// kTile-row tile offsets of cu. split: the batch-invariant forward's fixed key splits (SplitSum;
// only where exact_split_tiles > 0).
template <int HD, int HDV>
void launch_forward(bfloat* out, float* lse, const bfloat* q, const bfloat* k, const bfloat* v, const int32_t* cu,
                    const int32_t* tiles, int64_t B, int64_t T, int64_t NH, int64_t NKV, float scale, bool split);

// dk_part (T, NH, HD), dv_part (T, NH, HDV): this query head's share of dK and dV, written (not
// added) for every key row; D (T, NH) = rowsum(dO * O).
template <int HD, int HDV>
void launch_backward(float* dk_part, float* dv_part, const bfloat* dout, const bfloat* q, const bfloat* k,
                     const bfloat* v, const float* lse, const float* D, const int32_t* cu, const int32_t* tiles,
                     int64_t B, int64_t T, int64_t NH, int64_t NKV, float scale);

// dq (T, NH, HD) f32: dQ, written (not added) for every query row, the key tiles summed in order.
template <int HD, int HDV>
void launch_backward_dq(float* dq, const bfloat* dout, const bfloat* q, const bfloat* k, const bfloat* v,
                        const float* lse, const float* D, const int32_t* cu, const int32_t* tiles, int64_t B,
                        int64_t T, int64_t NH, int64_t NKV, float scale);

}  // namespace r1::cuda::flash

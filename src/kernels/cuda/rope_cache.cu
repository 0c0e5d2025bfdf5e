// Decoding's RoPE and KV-cache write in one launch: token t's queries and keys rotated in place
// (rope.cuh's math, so bitwise rope_forward's), its rotated keys and its values copied to its cache
// row (as kv_cache_write). Threads [0, T * (NH + NKV) * HD/2) take one (token, head, pair) each,
// rotate it and write a key pair to the row; the rest copy the values, V elements each.
// q, k and v may be the columns of one packed product (rows: their row strides); q_out, when not
// null, receives the rotated queries too, in (T, NH, HD) rows. With q_norm and k_norm (qk_norm: a
// per-head RMSNorm before RoPE), a second kernel: one warp per (token, head) normalizes the head as
// rmsnorm_forward does (lane l sums elements [V l, V l + V) in order, then warp_reduce: the same
// partition and order as its one-warp row when HD <= 32 V), rounds, then rotates its pairs.
#include <algorithm>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/rope.cuh"

namespace r1::cuda {

namespace {

template <int V, typename T>
__global__ void rope_kv_cache_write_kernel(T* q, T* k, const T* v, T* k_cache, T* v_cache, T* q_out, RopeRows rows,
                                           const int32_t* block_table, const int32_t* slots, const int32_t* pos,
                                           const float* inv_freq, int64_t T_, int64_t BS, int64_t MB, int64_t NH,
                                           int64_t NKV, int64_t HD, int64_t HDV) {
  // One thread per (token, head, pair): a decode step has few tokens, so the heads give the
  // parallelism (a thread per (token, pair) looping over the heads left most SMs idle).
  const int64_t half = HD / 2, per_token = (NH + NKV) * half, n_rot = T_ * per_token;
  const int64_t vrow = NKV * HDV, vp = vrow / V, n = n_rot + T_ * vp;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i < n_rot ? i / per_token : (i - n_rot) / vp, p = pos[t];
    const int64_t r = paged_row(block_table, slots[t], p, BS, MB);
    if (i < n_rot) {
      const int64_t hj = i - t * per_token, h = hj / half, j = hj - h * half;
      float cs, sn;
      rope_angle(int32_t(p), inv_freq[j], 1.0f, cs, sn);
      if (h < NH) {
        rope_rotate_heads<T>(q + t * rows.q + h * HD + j, q_out ? q_out + (t * NH + h) * HD + j : nullptr, 1, HD,
                             half, cs, sn);
      } else {
        const int64_t g = h - NH;
        rope_rotate_heads<T>(k + t * rows.k + g * HD + j, k_cache + (r * NKV + g) * HD + j, 1, HD, half, cs, sn);
      }
    } else {
      const int64_t e = (i - n_rot - t * vp) * V;
      float x[V];
      load_vec<V>(x, v + t * rows.v + e);
      store_vec<V>(v_cache + r * vrow + e, x);
    }
  }
}

template <int V, typename T>
__global__ void qk_norm_rope_cache_kernel(T* q, T* k, const T* v, T* k_cache, T* v_cache, T* q_out, RopeRows rows,
                                          const T* q_norm, const T* k_norm, float eps, const int32_t* block_table,
                                          const int32_t* slots, const int32_t* pos, const float* inv_freq, int64_t T_,
                                          int64_t BS, int64_t MB, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV) {
  extern __shared__ float normed[];  // HD per warp: the head's normalized values, rounded to T
  const int lane = int(threadIdx.x & 31), wib = int(threadIdx.x >> 5);
  float* head = normed + int64_t(wib) * HD;
  const int64_t heads = NH + NKV, tasks = T_ * heads, half = HD / 2;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t w = int64_t(blockIdx.x) * (blockDim.x >> 5) + wib; w < tasks; w += warps) {
    const int64_t t = w / heads, h = w % heads;
    const bool is_q = h < NH;
    T* x = is_q ? q + t * rows.q + h * HD : k + t * rows.k + (h - NH) * HD;
    const T* weight = is_q ? q_norm : k_norm;
    float ss = 0.0f;
    for (int64_t c = int64_t(lane) * V; c < HD; c += 32 * V) {
      float xv[V];
#pragma unroll
      for (int e = 0; e < V; ++e) xv[e] = to_f32(x[c + e]);
#pragma unroll
      for (int e = 0; e < V; ++e) ss += xv[e] * xv[e];
    }
    ss = warp_reduce(ss, SumOp{});
    const float r = 1.0f / sqrtf(ss / float(HD) + eps);
    for (int64_t c = int64_t(lane) * V; c < HD; c += 32 * V) {
#pragma unroll
      for (int e = 0; e < V; ++e) head[c + e] = to_f32(from_f32<T>(to_f32(x[c + e]) * r * to_f32(weight[c + e])));
    }
    __syncwarp();
    const int32_t p = pos[t];
    T* copy = is_q ? (q_out ? q_out + (t * NH + h) * HD : nullptr)
                   : k_cache + paged_row(block_table, slots[t], p, BS, MB) * NKV * HD + (h - NH) * HD;
    for (int64_t j = lane; j < half; j += 32) {
      float cs, sn;
      rope_angle(p, inv_freq[j], 1.0f, cs, sn);
      const float a0 = head[j], b0 = head[j + half];
      T a, b;  // rope_rotate_heads's roundings, on the normalized values
      rope_pair<T>(a0, b0, cs, sn, a, b);
      x[j] = a;
      x[j + half] = b;
      if (copy) {
        copy[j] = a;
        copy[j + half] = b;
      }
    }
    __syncwarp();
  }
  const int64_t vrow = NKV * HDV, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < T_ * vrow; i += stride) {
    const int64_t t = i / vrow, e = i - t * vrow;
    v_cache[paged_row(block_table, slots[t], pos[t], BS, MB) * vrow + e] = v[t * rows.v + e];
  }
}

template <typename T>
void rope_kv_cache_write_t(T* q, T* k, const T* v, T* k_cache, T* v_cache, T* q_out, RopeRows rows,
                           const T* q_norm, const T* k_norm, float eps, const int32_t* block_table,
                           const int32_t* slots, const int32_t* pos, const float* inv_freq, int64_t T_, int64_t BS,
                           int64_t MB, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV) {
  if (T_ == 0) return;
  constexpr int V = kVec<T>;
  cudaStream_t s = context().stream;
  if (q_norm) {
    constexpr int kWarps = 4;
    const int64_t tasks = T_ * (NH + NKV);
    const unsigned blocks = unsigned(std::min<int64_t>((tasks + kWarps - 1) / kWarps, 65535));
    const size_t smem = size_t(kWarps) * size_t(HD) * sizeof(float);
    if (HD % V == 0) {
      qk_norm_rope_cache_kernel<V><<<blocks, 32 * kWarps, smem, s>>>(q, k, v, k_cache, v_cache, q_out, rows, q_norm,
                                                                    k_norm, eps, block_table, slots, pos, inv_freq,
                                                                    T_, BS, MB, NH, NKV, HD, HDV);
    } else {
      qk_norm_rope_cache_kernel<1><<<blocks, 32 * kWarps, smem, s>>>(q, k, v, k_cache, v_cache, q_out, rows, q_norm,
                                                                    k_norm, eps, block_table, slots, pos, inv_freq,
                                                                    T_, BS, MB, NH, NKV, HD, HDV);
    }
    CUDA_CHECK_LAUNCH();
    return;
  }
  const int64_t rot = T_ * (NH + NKV) * (HD / 2), vrow = NKV * HDV;
  if (vrow % V == 0 && rows.v % V == 0 && aligned16(v) && aligned16(v_cache)) {
    rope_kv_cache_write_kernel<V><<<grid_for(rot + T_ * vrow / V), kThreads, 0, s>>>(
        q, k, v, k_cache, v_cache, q_out, rows, block_table, slots, pos, inv_freq, T_, BS, MB, NH, NKV, HD, HDV);
  } else {
    rope_kv_cache_write_kernel<1><<<grid_for(rot + T_ * vrow), kThreads, 0, s>>>(
        q, k, v, k_cache, v_cache, q_out, rows, block_table, slots, pos, inv_freq, T_, BS, MB, NH, NKV, HD, HDV);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void rope_kv_cache_write(float* q, float* k, const float* v, float* k_cache, float* v_cache, float* q_out,
                         RopeRows rows, const float* q_norm, const float* k_norm, float eps,
                         const int32_t* block_table, const int32_t* slots, const int32_t* pos, const float* inv_freq,
                         int64_t T, int64_t BS, int64_t MB, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV) {
  rope_kv_cache_write_t(q, k, v, k_cache, v_cache, q_out, rows, q_norm, k_norm, eps, block_table, slots, pos, inv_freq,
                        T, BS, MB, NH, NKV, HD, HDV);
}

void rope_kv_cache_write(bf16* q, bf16* k, const bf16* v, bf16* k_cache, bf16* v_cache, bf16* q_out, RopeRows rows,
                         const bf16* q_norm, const bf16* k_norm, float eps, const int32_t* block_table,
                         const int32_t* slots, const int32_t* pos, const float* inv_freq, int64_t T, int64_t BS,
                         int64_t MB, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV) {
  rope_kv_cache_write_t(dp(q), dp(k), dp(v), dp(k_cache), dp(v_cache), dp(q_out), rows, dp(q_norm), dp(k_norm), eps,
                        block_table, slots, pos, inv_freq, T, BS, MB, NH, NKV, HD, HDV);
}

}  // namespace r1::cuda

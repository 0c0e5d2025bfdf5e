// Decoding's RoPE and KV-cache write in one launch: token t's queries and keys rotated in place
// (rope.cuh's math, so bitwise rope_forward's), its rotated keys and its values copied to its cache
// row (as kv_cache_write). Threads [0, T * HD/2) take one (token, pair) each, rotate it in every
// query and key head and write the key pairs to the row; the rest copy the values, V elements each.
// q, k and v may be the columns of one packed product (rows: their row strides); q_out, when not
// null, receives the rotated queries too, in (T, NH, HD) rows.
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
  const int64_t half = HD / 2, n_rot = T_ * half, vrow = NKV * HDV, vp = vrow / V, n = n_rot + T_ * vp;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i < n_rot ? i / half : (i - n_rot) / vp, p = pos[t];
    const int64_t r = paged_row(block_table, slots[t], p, BS, MB);
    if (i < n_rot) {
      const int64_t j = i - t * half;
      float cs, sn;
      rope_angle(int32_t(p), inv_freq[j], 1.0f, cs, sn);
      rope_rotate_heads<T>(q + t * rows.q + j, q_out ? q_out + t * NH * HD + j : nullptr, NH, HD, half, cs, sn);
      rope_rotate_heads<T>(k + t * rows.k + j, k_cache + r * NKV * HD + j, NKV, HD, half, cs, sn);
    } else {
      const int64_t e = (i - n_rot - t * vp) * V;
      float x[V];
      load_vec<V>(x, v + t * rows.v + e);
      store_vec<V>(v_cache + r * vrow + e, x);
    }
  }
}

template <typename T>
void rope_kv_cache_write_t(T* q, T* k, const T* v, T* k_cache, T* v_cache, T* q_out, RopeRows rows,
                           const int32_t* block_table, const int32_t* slots, const int32_t* pos,
                           const float* inv_freq, int64_t T_, int64_t BS, int64_t MB, int64_t NH, int64_t NKV,
                           int64_t HD, int64_t HDV) {
  if (T_ == 0) return;
  constexpr int V = kVec<T>;
  cudaStream_t s = context().stream;
  const int64_t rot = T_ * (HD / 2), vrow = NKV * HDV;
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
                         RopeRows rows, const int32_t* block_table, const int32_t* slots, const int32_t* pos,
                         const float* inv_freq, int64_t T, int64_t BS, int64_t MB, int64_t NH, int64_t NKV,
                         int64_t HD, int64_t HDV) {
  rope_kv_cache_write_t(q, k, v, k_cache, v_cache, q_out, rows, block_table, slots, pos, inv_freq, T, BS, MB, NH, NKV,
                        HD, HDV);
}

void rope_kv_cache_write(bf16* q, bf16* k, const bf16* v, bf16* k_cache, bf16* v_cache, bf16* q_out, RopeRows rows,
                         const int32_t* block_table, const int32_t* slots, const int32_t* pos, const float* inv_freq,
                         int64_t T, int64_t BS, int64_t MB, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV) {
  rope_kv_cache_write_t(dp(q), dp(k), dp(v), dp(k_cache), dp(v_cache), dp(q_out), rows, block_table, slots, pos,
                        inv_freq, T, BS, MB, NH, NKV, HD, HDV);
}

}  // namespace r1::cuda

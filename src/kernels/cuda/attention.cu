// Attention, simple and memory-linear: the f32 training attention (q/k head dim HD, v head dim HDV,
// each up to kMaxHeadDim), and the KV cache write (the bf16 training attention is flash_attention.cu,
// the attention over the cache decode_attention.cu):
// - forward: one block per (query row, head); each warp walks a share of the keys with an
//   online softmax, lanes own head dims (d = lane + 32 i), and the warps merge their states at the end.
// - backward: D = rowsum(dout * out) first, then a dq pass (one block per (query row, head)) and a
//   dk/dv pass (one block per (key row, kv head)), each recomputing p = exp(s - lse). Every output
//   row belongs to one block: no atomics, deterministic.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kPer = int(kMaxHeadDim / 32);  // head dims per lane

// Index b of the sequence holding token t: the largest b < B with cu[b] <= t (skips empty ones).
__device__ inline int seq_of(const int32_t* cu, int64_t B, int64_t t) {
  int lo = 0, hi = int(B) - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (cu[mid] <= t) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// Rows of T, math in fp32.
template <typename T>
__device__ inline void load_row(float (&r)[kPer], const T* src, int HD) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int d = lane + 32 * i;
    r[i] = d < HD ? to_f32(src[d]) : 0.0f;
  }
}

template <typename T>
__device__ inline float warp_dot(const float (&r)[kPer], const T* src, int HD) {
  const int lane = threadIdx.x & 31;
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int d = lane + 32 * i;
    if (d < HD) s += r[i] * to_f32(src[d]);
  }
  return warp_reduce(s, SumOp{});
}

template <typename T>
__device__ inline void warp_axpy(float (&acc)[kPer], float a, const T* src, int HD) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int d = lane + 32 * i;
    if (d < HD) acc[i] += a * to_f32(src[d]);
  }
}

// Sums the warps' acc rows into shared memory; returns the block-wide sum for dim d via sum_row.
struct WarpRows {
  float v[kWarps][kMaxHeadDim];
};

__device__ inline void store_warp_row(WarpRows& sh, const float (&acc)[kPer], int HD) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int d = lane + 32 * i;
    if (d < HD) sh.v[warp][d] = acc[i];
  }
}

// One query row (HD) against n keys (HD) and values (HDV): key j at kbase + j * kstride, value j at
// vbase + j * vstride. Writes out (HDV) and, when lse is non-null, the log-sum-exp of the scaled
// scores. n >= 1.
template <typename T>
__device__ void attend_row(T* out, float* lse, const T* qr, const T* kbase, const T* vbase, int64_t kstride,
                           int64_t vstride, int64_t n, int HD, int HDV, float scale) {
  __shared__ WarpRows acc_sh;
  __shared__ float m_sh[kWarps], l_sh[kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float q[kPer], acc[kPer];
  load_row(q, qr, HD);
#pragma unroll
  for (int i = 0; i < kPer; ++i) acc[i] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = warp; j < n; j += kWarps) {
    const float s = scale * warp_dot(q, kbase + j * kstride, HD);
    const float mnew = fmaxf(m, s);
    const float corr = expf(m - mnew), p = expf(s - mnew);
    l = l * corr + p;
#pragma unroll
    for (int i = 0; i < kPer; ++i) acc[i] *= corr;
    warp_axpy(acc, p, vbase + j * vstride, HDV);
    m = mnew;
  }
  store_warp_row(acc_sh, acc, HDV);
  if (lane == 0) {
    m_sh[warp] = m;
    l_sh[warp] = l;
  }
  __syncthreads();
  float M = -INFINITY;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) M = fmaxf(M, m_sh[w]);
  float L = 0.0f, wscale[kWarps];
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    wscale[w] = l_sh[w] > 0.0f ? expf(m_sh[w] - M) : 0.0f;  // warps that saw no key add nothing
    L += l_sh[w] * wscale[w];
  }
  const float inv = 1.0f / L;
  for (int d = threadIdx.x; d < HDV; d += blockDim.x) {
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += acc_sh.v[w][d] * wscale[w];
    out[d] = from_f32<T>(o * inv);
  }
  if (lse && threadIdx.x == 0) *lse = M + logf(L);
}

__global__ void __launch_bounds__(kWarps * 32)
attention_forward_kernel(float* out, float* lse, const float* q, const float* k, const float* v,
                         const int32_t* cu, int64_t B, int64_t NH, int64_t NKV, int HD, int HDV, float scale) {
  const int64_t th = blockIdx.x, t = th / NH, h = th % NH, g = h / (NH / NKV);
  const int64_t s0 = cu[seq_of(cu, B, t)], kstride = NKV * HD, vstride = NKV * HDV;
  attend_row(out + th * HDV, lse + th, q + th * HD, k + s0 * kstride + g * HD, v + s0 * vstride + g * HDV, kstride,
             vstride, t - s0 + 1, HD, HDV, scale);
}

// D (rows) = rowsum(dout * out), one warp per (token, head) row of HD (the value head dim).
__global__ void attention_delta_kernel(float* D, const float* dout, const float* out, int64_t rows, int HD) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  float s = 0.0f;
  for (int d = lane; d < HD; d += 32) s += dout[row * HD + d] * out[row * HD + d];
  s = warp_reduce(s, SumOp{});
  if (lane == 0) D[row] = s;
}

// dq[i, h] += scale * sum_j ds_ij k_j over keys j <= i of i's sequence.
__global__ void __launch_bounds__(kWarps * 32)
attention_dq_kernel(float* dq, const float* dout, const float* q, const float* k, const float* v,
                    const float* lse, const float* D, const int32_t* cu, int64_t B, int64_t NH, int64_t NKV,
                    int HD, int HDV, float scale) {
  __shared__ WarpRows sh;
  const int warp = threadIdx.x >> 5;
  const int64_t th = blockIdx.x, i = th / NH, h = th % NH, g = h / (NH / NKV);
  const int64_t kstride = NKV * HD, vstride = NKV * HDV;
  const int64_t s0 = cu[seq_of(cu, B, i)];
  float qv[kPer], dov[kPer], acc[kPer];
  load_row(qv, q + th * HD, HD);
  load_row(dov, dout + th * HDV, HDV);
#pragma unroll
  for (int x = 0; x < kPer; ++x) acc[x] = 0.0f;
  const float li = lse[th], Di = D[th];
  for (int64_t j = s0 + warp; j <= i; j += kWarps) {
    const float* kj = k + j * kstride + g * HD;
    const float p = expf(scale * warp_dot(qv, kj, HD) - li);
    const float dp = warp_dot(dov, v + j * vstride + g * HDV, HDV);
    warp_axpy(acc, p * (dp - Di), kj, HD);
  }
  store_warp_row(sh, acc, HD);
  __syncthreads();
  for (int d = threadIdx.x; d < HD; d += blockDim.x) {
    float s = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) s += sh.v[w][d];
    dq[th * HD + d] += scale * s;
  }
}

// dk[j, g] += sum scale * ds_ij q_i, dv[j, g] += sum p_ij dout_i over the query heads h of kv head
// g and the queries i >= j of j's sequence.
__global__ void __launch_bounds__(kWarps * 32)
attention_dkdv_kernel(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                      const float* lse, const float* D, const int32_t* cu, int64_t B, int64_t NH, int64_t NKV,
                      int HD, int HDV, float scale) {
  __shared__ WarpRows sh_k, sh_v;
  const int warp = threadIdx.x >> 5;
  const int64_t jg = blockIdx.x, j = jg / NKV, g = jg % NKV, group = NH / NKV;
  const int64_t s1 = cu[seq_of(cu, B, j) + 1], n = s1 - j;
  float kv[kPer], vv[kPer], dk_acc[kPer], dv_acc[kPer];
  load_row(kv, k + jg * HD, HD);
  load_row(vv, v + jg * HDV, HDV);
#pragma unroll
  for (int x = 0; x < kPer; ++x) dk_acc[x] = dv_acc[x] = 0.0f;
  for (int64_t w = warp; w < group * n; w += kWarps) {
    const int64_t h = g * group + w / n, i = j + w % n, ih = i * NH + h;
    const float* qi = q + ih * HD;
    const float* doi = dout + ih * HDV;
    const float p = expf(scale * warp_dot(kv, qi, HD) - lse[ih]);
    const float dp = warp_dot(vv, doi, HDV);
    warp_axpy(dk_acc, scale * p * (dp - D[ih]), qi, HD);
    warp_axpy(dv_acc, p, doi, HDV);
  }
  store_warp_row(sh_k, dk_acc, HD);
  store_warp_row(sh_v, dv_acc, HDV);
  __syncthreads();
  for (int d = threadIdx.x; d < HD; d += blockDim.x) {
    float a = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) a += sh_k.v[w][d];
    dk[jg * HD + d] += a;
  }
  for (int d = threadIdx.x; d < HDV; d += blockDim.x) {
    float b = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) b += sh_v.v[w][d];
    dv[jg * HDV + d] += b;
  }
}

// V elements per thread (16-byte packs when the rows allow): a plain copy, exact in either dtype.
// Thread i copies elements [i * V, i * V + V) of the (T, krow + vrow) concatenation of k and v rows
// (a latent cache: vrow = 0, v and v_cache null, keys only).
template <int V, typename T>
__global__ void kv_cache_write_kernel(T* k_cache, T* v_cache, const T* k, const T* v,
                                      const int32_t* block_table, const int32_t* slots, const int32_t* pos,
                                      int64_t T_, int64_t BS, int64_t MB, int64_t krow, int64_t vrow) {
  const int64_t rp = (krow + vrow) / V, n = T_ * rp;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / rp, e = (i - t * rp) * V, j = pos[t];
    const int64_t r = paged_row(block_table, slots[t], j, BS, MB);
    float x[V];
    if (e < krow) {
      load_vec<V>(x, k + t * krow + e);
      store_vec<V>(k_cache + r * krow + e, x);
    } else {
      load_vec<V>(x, v + t * vrow + (e - krow));
      store_vec<V>(v_cache + r * vrow + (e - krow), x);
    }
  }
}

template <typename T>
void kv_cache_write_t(T* k_cache, T* v_cache, const T* k, const T* v, const int32_t* block_table,
                      const int32_t* slots, const int32_t* pos, int64_t T_, int64_t BS, int64_t MB,
                      int64_t NKV, int64_t HD, int64_t HDV) {
  const int64_t krow = NKV * HD, vrow = NKV * HDV;
  if (T_ * (krow + vrow) == 0) return;
  constexpr int V = kVec<T>;
  cudaStream_t s = context().stream;
  if (krow % V == 0 && vrow % V == 0 && aligned16(k_cache) && aligned16(v_cache) && aligned16(k) &&
      aligned16(v)) {
    kv_cache_write_kernel<V><<<grid_for(T_ * (krow + vrow) / V), kThreads, 0, s>>>(
        k_cache, v_cache, k, v, block_table, slots, pos, T_, BS, MB, krow, vrow);
  } else {
    kv_cache_write_kernel<1><<<grid_for(T_ * (krow + vrow)), kThreads, 0, s>>>(
        k_cache, v_cache, k, v, block_table, slots, pos, T_, BS, MB, krow, vrow);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* cu_seqlens, int64_t B, int64_t T, int64_t NH, int64_t NKV,
                       int64_t HD, int64_t HDV, float scale) {
  if (T == 0 || NH == 0) return;
  attention_forward_kernel<<<unsigned(T * NH), kWarps * 32, 0, context().stream>>>(out, lse, q, k, v, cu_seqlens,
                                                                                    B, NH, NKV, int(HD), int(HDV),
                                                                                    scale);
  CUDA_CHECK_LAUNCH();
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const int32_t* cu_seqlens,
                        int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV, float scale) {
  if (T == 0 || NH == 0) return;
  Context& ctx = context();
  auto* D = static_cast<float*>(ctx.scratch(size_t(T * NH) * sizeof(float)));
  constexpr int kRowsPerBlock = 8;
  attention_delta_kernel<<<unsigned((T * NH + kRowsPerBlock - 1) / kRowsPerBlock), kRowsPerBlock * 32, 0,
                           ctx.stream>>>(D, dout, out, T * NH, int(HDV));
  CUDA_CHECK_LAUNCH();
  attention_dq_kernel<<<unsigned(T * NH), kWarps * 32, 0, ctx.stream>>>(dq, dout, q, k, v, lse, D, cu_seqlens, B,
                                                                         NH, NKV, int(HD), int(HDV), scale);
  CUDA_CHECK_LAUNCH();
  attention_dkdv_kernel<<<unsigned(T * NKV), kWarps * 32, 0, ctx.stream>>>(dk, dv, dout, q, k, v, lse, D,
                                                                            cu_seqlens, B, NH, NKV, int(HD), int(HDV),
                                                                            scale);
  CUDA_CHECK_LAUNCH();
}

void kv_cache_write(float* k_cache, float* v_cache, const float* k, const float* v,
                    const int32_t* block_table, const int32_t* slots, const int32_t* pos, int64_t T,
                    int64_t BS, int64_t MB, int64_t NKV, int64_t HD, int64_t HDV) {
  kv_cache_write_t(k_cache, v_cache, k, v, block_table, slots, pos, T, BS, MB, NKV, HD, HDV);
}

void kv_cache_write(bf16* k_cache, bf16* v_cache, const bf16* k, const bf16* v, const int32_t* block_table,
                    const int32_t* slots, const int32_t* pos, int64_t T, int64_t BS, int64_t MB, int64_t NKV,
                    int64_t HD, int64_t HDV) {
  kv_cache_write_t(dp(k_cache), dp(v_cache), dp(k), dp(v), block_table, slots, pos, T, BS, MB, NKV, HD, HDV);
}

}  // namespace r1::cuda

// bf16 causal attention over packed variable-length sequences: the host entry points of the
// tensor-core kernels (flash_forward.cu, flash_backward.cu), the backward's D = rowsum(dO * O) and
// its final sums, and the declared fallback: head dims without a tensor-core instantiation
// (R1_FLASH_HEAD_DIMS) and unaligned views run the f32 kernels of attention.cu on widened copies.
// ops::supports reports which path a shape takes; the entry points return the one they took.
#include "kernels/cuda/flash_attention.cuh"
#include "kernels/invariance.h"

#include <initializer_list>

#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

using flash::bfloat;

const bfloat* nv(const bf16* p) { return reinterpret_cast<const bfloat*>(p); }
bfloat* nv(bf16* p) { return reinterpret_cast<bfloat*>(p); }

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

// D[t, h] = sum_d dout[t, h, d] * out[t, h, d] (fp32), one warp per row of HDV.
__global__ void attention_delta_kernel(float* D, const bfloat* dout, const bfloat* out, int64_t rows, int HDV) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  float s = 0.0f;
  for (int d = lane; d < HDV; d += 32)
    s += __bfloat162float(dout[row * HDV + d]) * __bfloat162float(out[row * HDV + d]);
  s = warp_reduce(s, SumOp{});
  if (lane == 0) D[row] = s;
}

// dk[t, g, d] += sum over the group's query heads of dk_part[t, h, d] (likewise dv over HDV);
// dq += dq_acc.
__global__ void attention_grad_finish_kernel(bfloat* dq, bfloat* dk, bfloat* dv, const float* dq_acc,
                                             const float* dk_part, const float* dv_part, int64_t T, int64_t NH,
                                             int64_t NKV, int64_t HD, int64_t HDV) {
  const int64_t n_q = T * NH * HD, n_k = T * NKV * HD, n_v = T * NKV * HDV, group = NH / NKV;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n_q + n_k + n_v;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (i < n_q) {
      dq[i] = __float2bfloat16(__bfloat162float(dq[i]) + dq_acc[i]);
      continue;
    }
    const bool is_k = i < n_q + n_k;
    const int64_t j = is_k ? i - n_q : i - n_q - n_k, W = is_k ? HD : HDV;
    const int64_t d = j % W, g = (j / W) % NKV, t = j / (W * NKV);
    const float* part = is_k ? dk_part : dv_part;
    float s = 0.0f;
    for (int64_t hh = 0; hh < group; ++hh) s += part[(t * NH + g * group + hh) * W + d];
    bfloat* dst = is_k ? dk : dv;
    dst[j] = __float2bfloat16(__bfloat162float(dst[j]) + s);
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

bool all_aligned(std::initializer_list<const void*> ptrs) {
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

}  // namespace

namespace {
bool g_exact_split = false;
}

void set_exact_attention_split(bool on) { g_exact_split = on; }

bool exact_attention_split(int64_t HD, int64_t HDV) {
  if (!g_exact_split || !ops::batch_invariant()) return false;
#define R1_CASE(D, DV) \
  if (HD == D && HDV == DV) return flash::exact_split_tiles<D, DV>() > 0;
  R1_FLASH_HEAD_DIMS(R1_CASE)
#undef R1_CASE
  return false;
}

bool flash_attention_native(int64_t HD, int64_t HDV) {
#define R1_CASE(D, DV) \
  if (HD == D && HDV == DV) return true;
  R1_FLASH_HEAD_DIMS(R1_CASE)
#undef R1_CASE
  return false;
}

bool attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                       const int32_t* cu_seqlens, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                       int64_t HDV, float scale) {
  const bool native = flash_attention_native(HD, HDV) && all_aligned({out, q, k, v});
  if (T == 0 || B == 0) return native;
  if (!native) {
    const int64_t n_q = T * NH * HD, n_o = T * NH * HDV, n_k = T * NKV * HD, n_v = T * NKV * HDV;
    float* s = fallback_buffer(size_t(n_q + n_o + n_k + n_v));
    float *q32 = s, *o32 = q32 + n_q, *k32 = o32 + n_o, *v32 = k32 + n_k;
    attention_forward(o32, lse, widened(q32, q, n_q), widened(k32, k, n_k), widened(v32, v, n_v), cu_seqlens, B, T,
                      NH, NKV, HD, HDV, scale);
    narrowed(out, o32, n_o, false);
    return false;
  }
  const int32_t* tiles = tile_offsets(context().scratch(tiles_bytes(B)), cu_seqlens, B, flash::kTile);
  const bool split = exact_attention_split(HD, HDV);
#define R1_CASE(D, DV)                                                                                       \
  if (HD == D && HDV == DV)                                                                                  \
    flash::launch_forward<D, DV>(nv(out), lse, nv(q), nv(k), nv(v), cu_seqlens, tiles, B, T, NH, NKV, scale, split);
  R1_FLASH_HEAD_DIMS(R1_CASE)
#undef R1_CASE
  return true;
}

bool attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k,
                        const bf16* v, const bf16* out, const float* lse, const int32_t* cu_seqlens, int64_t B,
                        int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV, float scale) {
  const bool native = flash_attention_native(HD, HDV) && all_aligned({dq, dk, dv, dout, q, k, v, out});
  if (T == 0 || B == 0) return native;
  const int64_t n_q = T * NH * HD, n_o = T * NH * HDV, n_k = T * NKV * HD, n_v = T * NKV * HDV;
  cudaStream_t stream = context().stream;
  if (!native) {
    float* s = fallback_buffer(size_t(2 * n_q + 2 * n_o + 2 * n_k + 2 * n_v));
    float *q32 = s, *dq32 = q32 + n_q, *o32 = dq32 + n_q, *do32 = o32 + n_o;
    float *k32 = do32 + n_o, *dk32 = k32 + n_k, *v32 = dk32 + n_k, *dv32 = v32 + n_v;
    CUDA_CHECK(cudaMemsetAsync(dq32, 0, size_t(n_q) * sizeof(float), stream));
    CUDA_CHECK(cudaMemsetAsync(dk32, 0, size_t(n_k) * sizeof(float), stream));
    CUDA_CHECK(cudaMemsetAsync(dv32, 0, size_t(n_v) * sizeof(float), stream));
    attention_backward(dq32, dk32, dv32, widened(do32, dout, n_o), widened(q32, q, n_q), widened(k32, k, n_k),
                       widened(v32, v, n_v), widened(o32, out, n_o), lse, cu_seqlens, B, T, NH, NKV, HD, HDV, scale);
    narrowed(dq, dq32, n_q, true);
    narrowed(dk, dk32, n_k, true);
    narrowed(dv, dv32, n_v, true);
    return false;
  }
  // Scratch: tile offsets | D (T, NH) | dq_acc, dk_part (T, NH, HD), dv_part (T, NH, HDV), fp32;
  // every section starts 256-byte aligned (the float2 stores need 8 bytes).
  const size_t tb = tiles_bytes(B), d_bytes = round256(size_t(T * NH) * sizeof(float));
  const size_t q_bytes = round256(size_t(n_q) * sizeof(float)), o_bytes = round256(size_t(n_o) * sizeof(float));
  unsigned char* s = static_cast<unsigned char*>(context().scratch(tb + d_bytes + 2 * q_bytes + o_bytes));
  const int32_t* tiles = tile_offsets(s, cu_seqlens, B, flash::kTile);
  float* D = reinterpret_cast<float*>(s + tb);
  float* dq_acc = reinterpret_cast<float*>(s + tb + d_bytes);
  float* dk_part = reinterpret_cast<float*>(s + tb + d_bytes + q_bytes);
  float* dv_part = reinterpret_cast<float*>(s + tb + d_bytes + 2 * q_bytes);
  // Every row of dq_acc, dk_part and dv_part is written (each query and key row of a sequence
  // belongs to one of its tiles), so nothing is zeroed; no atomics, so the same bits every run.
  const int64_t rows = T * NH;
  attention_delta_kernel<<<unsigned((rows + 7) / 8), 256, 0, stream>>>(D, nv(dout), nv(out), rows, int(HDV));
  CUDA_CHECK(cudaGetLastError());
#define R1_CASE(D_, DV)                                                                                          \
  if (HD == D_ && HDV == DV) {                                                                                   \
    flash::launch_backward<D_, DV>(dk_part, dv_part, nv(dout), nv(q), nv(k), nv(v), lse, D, cu_seqlens, tiles, B, \
                                   T, NH, NKV, scale);                                                            \
    flash::launch_backward_dq<D_, DV>(dq_acc, nv(dout), nv(q), nv(k), nv(v), lse, D, cu_seqlens, tiles, B, T, NH, \
                                      NKV, scale);                                                                \
  }
  R1_FLASH_HEAD_DIMS(R1_CASE)
#undef R1_CASE
  attention_grad_finish_kernel<<<grid_for(n_q + n_k + n_v), kThreads, 0, stream>>>(nv(dq), nv(dk), nv(dv), dq_acc,
                                                                                dk_part, dv_part, T, NH, NKV, HD, HDV);
  CUDA_CHECK(cudaGetLastError());
  return true;
}

}  // namespace r1::cuda

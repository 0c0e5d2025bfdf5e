// Elementwise ops (f32 and bf16, fp32 math, 16-byte packs when aligned), the double-precision sum of
// squares, and the deterministic column sums that dbias and rmsnorm's dweight share.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

template <typename T>
struct AddF {
  T* out;
  const T* a;
  const T* b;
  template <int V>
  __device__ void apply(int64_t i) const {
    float x[V], y[V];
    load_vec<V>(x, a + i);
    load_vec<V>(y, b + i);
#pragma unroll
    for (int k = 0; k < V; ++k) x[k] += y[k];
    store_vec<V>(out + i, x);  // out may alias a or b: each element is read before it is written
  }
};

template <typename T>
struct ScaleF {
  T* x;
  float s;
  template <int V>
  __device__ void apply(int64_t i) const {
    float v[V];
    load_vec<V>(v, x + i);
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] *= s;
    store_vec<V>(x + i, v);
  }
};

// dst = src rounded to dst's type (C).
template <typename C>
struct ConvertF {
  C* dst;
  const float* src;
  template <int V>
  __device__ void apply(int64_t i) const {
    float v[V];
    load_vec<V>(v, src + i);
    store_vec<V>(dst + i, v);
  }
};

// One partial per block, in double; the second pass adds the partials in a fixed order.
template <typename T>
__global__ void sum_squares_kernel(double* partial, const T* x, int64_t n) {
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double v = to_f32(x[i]);
    acc += v * v;
  }
  acc = block_reduce(acc, SumOp{}, 0.0);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(double* out, const double* partial, int n) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  acc = block_reduce(acc, SumOp{}, 0.0);
  if (threadIdx.x == 0) *out = acc;
}

constexpr int kColTile = 32, kRowLanes = 8;

// Block (32, 8): 32 columns, 8 row lanes over the rows of chunk blockIdx.y. partial (chunks, C).
template <typename T>
__global__ void column_partial_kernel(float* partial, const T* src, const T* mul, const float* scale, int64_t N,
                                      int64_t C, int64_t rows_per_chunk) {
  __shared__ float tile[kRowLanes][kColTile + 1];
  const int64_t c = blockIdx.x * int64_t(kColTile) + threadIdx.x;
  const int64_t r0 = blockIdx.y * rows_per_chunk;
  const int64_t r1 = min(N, r0 + rows_per_chunk);
  float acc = 0.0f;
  if (c < C) {
    for (int64_t n = r0 + threadIdx.y; n < r1; n += kRowLanes) {
      float v = to_f32(src[n * C + c]);
      if (mul) v *= to_f32(mul[n * C + c]);
      if (scale) v *= scale[n];
      acc += v;
    }
  }
  tile[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < kRowLanes; ++i) s += tile[i][threadIdx.x];
    partial[blockIdx.y * C + c] = s;
  }
}

__global__ void column_finish_kernel(float* dst, const float* partial, int64_t chunks, int64_t C) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int64_t r = 0; r < chunks; ++r) s += partial[r * C + c];
  dst[c] += s;
}

template <typename T>
void add_t(T* out, const T* a, const T* b, int64_t n) {
  launch_packed_map<T>(AddF<T>{out, a, b}, n, aligned16(out) && aligned16(a) && aligned16(b));
}

template <typename T>
void scale_t(T* x, float s, int64_t n) {
  launch_packed_map<T>(ScaleF<T>{x, s}, n, aligned16(x));
}

template <typename C>
void convert_t(C* dst, const float* src, int64_t n) {
  // Packs of 4 floats; the destination's pack is 4 elements too (8 bytes for bf16).
  const bool al = aligned16(src) && reinterpret_cast<uintptr_t>(dst) % (4 * sizeof(C)) == 0;
  launch_packed_map<float>(ConvertF<C>{dst, src}, n, al);
}

template <typename T>
double sum_squares_t(const T* x, int64_t n) {
  if (n == 0) return 0.0;
  Context& ctx = context();
  const unsigned blocks = grid_for(n);
  auto* partial = static_cast<double*>(ctx.scratch((blocks + 1) * sizeof(double)));
  sum_squares_kernel<<<blocks, kThreads, 0, ctx.stream>>>(partial, x, n);
  CUDA_CHECK_LAUNCH();
  sum_partials_kernel<<<1, 1024, 0, ctx.stream>>>(partial + blocks, partial, int(blocks));
  CUDA_CHECK_LAUNCH();
  double result = 0.0;
  CUDA_CHECK(cudaMemcpyAsync(&result, partial + blocks, sizeof(double), cudaMemcpyDeviceToHost, ctx.stream));
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  return result;
}

template <typename T>
void column_sum_t(float* dst, const T* src, const T* mul, const float* scale, int64_t N, int64_t C) {
  if (N == 0 || C == 0) return;
  Context& ctx = context();
  const int64_t col_tiles = (C + kColTile - 1) / kColTile;
  // Enough row chunks to give every SM a few blocks, each chunk at least 64 rows.
  const int64_t want = (int64_t(ctx.sm_count) * 4 + col_tiles - 1) / col_tiles;
  const int64_t chunks = std::max<int64_t>(1, std::min(want, (N + 63) / 64));
  const int64_t rows_per_chunk = (N + chunks - 1) / chunks;
  auto* partial = static_cast<float*>(ctx.scratch(size_t(chunks * C) * sizeof(float)));
  column_partial_kernel<<<dim3(unsigned(col_tiles), unsigned(chunks)), dim3(kColTile, kRowLanes), 0, ctx.stream>>>(
      partial, src, mul, scale, N, C, rows_per_chunk);
  CUDA_CHECK_LAUNCH();
  column_finish_kernel<<<unsigned((C + kThreads - 1) / kThreads), kThreads, 0, ctx.stream>>>(dst, partial, chunks, C);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void add(float* out, const float* a, const float* b, int64_t n) { add_t(out, a, b, n); }
void add(bf16* out, const bf16* a, const bf16* b, int64_t n) { add_t(dp(out), dp(a), dp(b), n); }
void add_inplace(float* dst, const float* src, int64_t n) { add_t(dst, dst, src, n); }
void add_inplace(bf16* dst, const bf16* src, int64_t n) { add_t(dp(dst), dp(dst), dp(src), n); }
void scale_inplace(float* x, float s, int64_t n) { scale_t(x, s, n); }
void scale_inplace(bf16* x, float s, int64_t n) { scale_t(dp(x), s, n); }

void zero(float* x, int64_t n) {
  if (n == 0) return;
  CUDA_CHECK(cudaMemsetAsync(x, 0, size_t(n) * sizeof(float), context().stream));
}

void zero(bf16* x, int64_t n) {
  if (n == 0) return;
  CUDA_CHECK(cudaMemsetAsync(x, 0, size_t(n) * sizeof(bf16), context().stream));
}

void convert(float* dst, const float* src, int64_t n) { convert_t(dst, src, n); }
void convert(bf16* dst, const float* src, int64_t n) { convert_t(dp(dst), src, n); }

double sum_squares(const float* x, int64_t n) { return sum_squares_t(x, n); }
double sum_squares(const bf16* x, int64_t n) { return sum_squares_t(dp(x), n); }

void column_sum_accumulate(float* dst, const float* src, const float* mul, const float* scale, int64_t N,
                           int64_t C) {
  column_sum_t(dst, src, mul, scale, N, C);
}

void column_sum_accumulate(float* dst, const bf16* src, const bf16* mul, const float* scale, int64_t N,
                           int64_t C) {
  column_sum_t(dp(dst), dp(src), dp(mul), scale, N, C);
}

}  // namespace r1::cuda

// Elementwise ops, the double-precision sum of squares, and the deterministic column sums that
// dbias and rmsnorm's dweight share.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = a[i] + b[i];
  }
}

__global__ void add_inplace_kernel(float* dst, const float* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    dst[i] += src[i];
  }
}

__global__ void scale_kernel(float* x, float s, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    x[i] *= s;
  }
}

// One partial per block, in double; the second pass adds the partials in a fixed order.
__global__ void sum_squares_kernel(double* partial, const float* x, int64_t n) {
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double v = x[i];
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
__global__ void column_partial_kernel(float* partial, const float* src, const float* mul, const float* scale,
                                      int64_t N, int64_t C, int64_t rows_per_chunk) {
  __shared__ float tile[kRowLanes][kColTile + 1];
  const int64_t c = blockIdx.x * int64_t(kColTile) + threadIdx.x;
  const int64_t r0 = blockIdx.y * rows_per_chunk;
  const int64_t r1 = min(N, r0 + rows_per_chunk);
  float acc = 0.0f;
  if (c < C) {
    for (int64_t n = r0 + threadIdx.y; n < r1; n += kRowLanes) {
      float v = src[n * C + c];
      if (mul) v *= mul[n * C + c];
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

}  // namespace

void add(float* out, const float* a, const float* b, int64_t n) {
  if (n == 0) return;
  add_kernel<<<grid_for(n), kThreads, 0, context().stream>>>(out, a, b, n);
  CUDA_CHECK_LAUNCH();
}

void add_inplace(float* dst, const float* src, int64_t n) {
  if (n == 0) return;
  add_inplace_kernel<<<grid_for(n), kThreads, 0, context().stream>>>(dst, src, n);
  CUDA_CHECK_LAUNCH();
}

void scale_inplace(float* x, float s, int64_t n) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n), kThreads, 0, context().stream>>>(x, s, n);
  CUDA_CHECK_LAUNCH();
}

void zero(float* x, int64_t n) {
  if (n == 0) return;
  CUDA_CHECK(cudaMemsetAsync(x, 0, size_t(n) * sizeof(float), context().stream));
}

double sum_squares(const float* x, int64_t n) {
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

void column_sum_accumulate(float* dst, const float* src, const float* mul, const float* scale, int64_t N,
                           int64_t C) {
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

}  // namespace r1::cuda

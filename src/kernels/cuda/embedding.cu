// Embedding lookup and its scatter-add backward (f32 or bf16 activations, f32 dtable), deterministic.
#include <cub/device/device_radix_sort.cuh>

#include <climits>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

// V elements per thread: 16-byte packs when rows are aligned (C a multiple of V, aligned bases).
template <int V, typename T>
__global__ void embedding_forward_kernel(T* out, const int32_t* ids, const T* table, int64_t T_, int64_t C) {
  const int64_t cp = C / V, n = T_ * cp;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / cp, c = (i - t * cp) * V;
    float r[V];
    load_vec<V>(r, table + int64_t(ids[t]) * C + c);
    store_vec<V>(out + t * C + c, r);
  }
}

// The backward without atomics: the tokens sorted by id (a stable radix sort, so each id's
// positions stay in ascending order), then the first token of each id's run adds the run's rows
// into its dtable row in position order. That is the CPU's order of additions (cpu::
// embedding_backward walks the tokens in order), so the result is the same bits on every run and,
// for f32 gradients, the CPU's bits.
template <int V, typename T>
__global__ void embedding_backward_kernel(float* dtable, const T* dout, const int32_t* sorted_ids,
                                          const int32_t* sorted_pos, int64_t T_, int64_t C) {
  const int64_t cp = C / V, n = T_ * cp;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / cp, c = (i - t * cp) * V;
    const int32_t id = sorted_ids[t];
    if (t > 0 && sorted_ids[t - 1] == id) continue;  // not the first of its run
    float* row = dtable + int64_t(id) * C + c;
    float acc[V];
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k] = row[k];
    for (int64_t u = t; u < T_ && sorted_ids[u] == id; ++u) {
      float g[V];
      load_vec<V>(g, dout + int64_t(sorted_pos[u]) * C + c);
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] += g[k];
    }
#pragma unroll
    for (int k = 0; k < V; ++k) row[k] = acc[k];
  }
}

__global__ void iota_kernel(int32_t* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = int32_t(i);
}

template <typename T>
bool rows_packable(int64_t C, const void* a, const void* b) {
  return C % kVec<T> == 0 && aligned16(a) && aligned16(b);
}

template <typename T>
void embedding_forward_t(T* out, const int32_t* ids, const T* table, int64_t T_, int64_t C) {
  if (T_ * C == 0) return;
  constexpr int V = kVec<T>;
  if (rows_packable<T>(C, out, table)) {
    embedding_forward_kernel<V><<<grid_for(T_ * C / V), kThreads, 0, context().stream>>>(out, ids, table, T_, C);
  } else {
    embedding_forward_kernel<1><<<grid_for(T_ * C), kThreads, 0, context().stream>>>(out, ids, table, T_, C);
  }
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void embedding_backward_t(float* dtable, const T* dout, const int32_t* ids, int64_t T_, int64_t C) {
  if (T_ * C == 0) return;
  if (T_ > INT_MAX) throw_error("embedding_backward: more than 2^31 tokens");
  const int n = int(T_);
  // Scratch: sorted ids, positions, sorted positions, then the sort's temporary storage.
  size_t temp = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp, ids, static_cast<int32_t*>(nullptr),
                                             static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), n,
                                             0, 32, context().stream));
  const size_t lane = (size_t(n) * sizeof(int32_t) + 255) / 256 * 256;
  char* base = static_cast<char*>(context().scratch(3 * lane + temp));
  int32_t* sorted_ids = reinterpret_cast<int32_t*>(base);
  int32_t* pos = reinterpret_cast<int32_t*>(base + lane);
  int32_t* sorted_pos = reinterpret_cast<int32_t*>(base + 2 * lane);
  iota_kernel<<<grid_for(T_), kThreads, 0, context().stream>>>(pos, T_);
  CUDA_CHECK_LAUNCH();
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(base + 3 * lane, temp, ids, sorted_ids, pos, sorted_pos, n, 0, 32,
                                             context().stream));
  constexpr int V = kVec<T>;
  if (C % V == 0 && aligned16(dout)) {
    embedding_backward_kernel<V><<<grid_for(T_ * C / V), kThreads, 0, context().stream>>>(dtable, dout, sorted_ids,
                                                                                         sorted_pos, T_, C);
  } else {
    embedding_backward_kernel<1><<<grid_for(T_ * C), kThreads, 0, context().stream>>>(dtable, dout, sorted_ids,
                                                                                     sorted_pos, T_, C);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T, int64_t C) {
  embedding_forward_t(out, ids, table, T, C);
}
void embedding_forward(bf16* out, const int32_t* ids, const bf16* table, int64_t T, int64_t C) {
  embedding_forward_t(dp(out), ids, dp(table), T, C);
}
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t T, int64_t C) {
  embedding_backward_t(dtable, dout, ids, T, C);
}
void embedding_backward(float* dtable, const bf16* dout, const int32_t* ids, int64_t T, int64_t C) {
  embedding_backward_t(dtable, dp(dout), ids, T, C);
}

}  // namespace r1::cuda

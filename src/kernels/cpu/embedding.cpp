#include <algorithm>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"

namespace r1::cpu {

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T, int64_t C) {
#pragma omp parallel for schedule(static) if (T * C >= kParallelMin)
  for (int64_t t = 0; t < T; ++t) {
    std::memcpy(out + t * C, table + int64_t(ids[t]) * C, size_t(C) * sizeof(float));
  }
}

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t T, int64_t C) {
  // Several tokens may share an id, so parallelize over column blocks: each thread owns its columns
  // of every row and walks the tokens in order (race-free and deterministic).
  constexpr int64_t kBlock = 256;
  const int64_t nblocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (T * C >= kParallelMin)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t c0 = blk * kBlock, c1 = std::min(C, c0 + kBlock);
    for (int64_t t = 0; t < T; ++t) {
      float* dst = dtable + int64_t(ids[t]) * C;
      const float* src = dout + t * C;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

}  // namespace r1::cpu

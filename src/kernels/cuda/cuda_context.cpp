#include "kernels/cuda/cuda_context.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/error.h"

namespace r1::cuda {

void throw_cublas_error(cublasStatus_t st, const char* expr, const char* file, int line) {
  fail("{}:{}: cuBLAS error {} ({}) in {}", file, line, cublasLtGetStatusName(st), cublasLtGetStatusString(st),
       expr);
}

void* Context::scratch(size_t bytes) {
  if (bytes > scratch_bytes_) {
    if (scratch_) CUDA_CHECK(cudaFree(scratch_));  // cudaFree waits for the work still using it
    scratch_ = nullptr;
    const size_t grown = std::max(bytes, scratch_bytes_ * 2);
    CUDA_CHECK(cudaMalloc(&scratch_, grown));
    scratch_bytes_ = grown;
  }
  return scratch_;
}

Context& context() {
  static Context* ctx = [] {
    auto* c = new Context();
    c->stream = stream();  // selects the device; fails with the reason when none is usable
    c->sm_count = sm_count();
    CUBLAS_CHECK(cublasLtCreate(&c->lt));
    c->workspace_bytes = size_t(32) << 20;  // cuBLASLt's recommendation for Hopper
    CUDA_CHECK(cudaMalloc(&c->workspace, c->workspace_bytes));
    return c;
  }();
  return *ctx;
}

}  // namespace r1::cuda

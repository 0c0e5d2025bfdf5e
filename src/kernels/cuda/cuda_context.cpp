#include "kernels/cuda/cuda_context.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>

#include "base/error.h"
#include "tensor/device_memory.h"

namespace r1::cuda {

void throw_cublas_error(cublasStatus_t st, const char* expr, const char* file, int line) {
  fail("{}:{}: cuBLAS error {} ({}) in {}", file, line, cublasLtGetStatusName(st), cublasLtGetStatusString(st),
       expr);
}

// Through devmem, so the scratch counts in memory_use(CUDA) (tensor/device_memory.h).
void* Context::scratch(size_t bytes) {
  if (bytes > scratch_bytes_) {
    const size_t grown = std::max(bytes, scratch_bytes_ * 2);
    release_scratch();
    scratch_ = devmem::alloc(Device::CUDA, grown);
    scratch_bytes_ = grown;
  }
  return scratch_;
}

void Context::release_scratch() {
  devmem::release(Device::CUDA, scratch_, scratch_bytes_);  // cudaFree waits for the work still using it
  scratch_ = nullptr;
  scratch_bytes_ = 0;
}

namespace {
std::atomic<Context*> g_context{nullptr};
}  // namespace

Context* context_if_created() { return g_context.load(); }

Context& context() {
  static Context* ctx = [] {
    auto* c = new Context();
    c->stream = stream();  // selects the device; fails with the reason when none is usable
    c->sm_count = sm_count();
    CUBLAS_CHECK(cublasLtCreate(&c->lt));
    c->workspace_bytes = size_t(32) << 20;  // cuBLASLt's recommendation for Hopper
    CUDA_CHECK(cudaMalloc(&c->workspace, c->workspace_bytes));
    g_context = c;
    return c;
  }();
  return *ctx;
}

}  // namespace r1::cuda

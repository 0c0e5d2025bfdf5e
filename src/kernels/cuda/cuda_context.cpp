#include "kernels/cuda/cuda_context.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>

#include "base/error.h"
#include "kernels/cuda/cuda_ops.h"
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

namespace {
int g_dependent_launch = -1;  // set_dependent_launch; -1: the default
}  // namespace

bool dependent_launch_default() { return context().cc_major >= 9; }
void set_dependent_launch(bool on) { g_dependent_launch = on ? 1 : 0; }
bool dependent_launch() {
  return context().cc_major >= 9 && (g_dependent_launch < 0 ? dependent_launch_default() : g_dependent_launch == 1);
}

Context& context() {
  static Context* ctx = [] {
    auto* c = new Context();
    c->stream = stream();  // selects the device; fails with the reason when none is usable
    c->sm_count = sm_count();
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&c->cc_major, cudaDevAttrComputeCapabilityMajor, dev));
    CUBLAS_CHECK(cublasLtCreate(&c->lt));
    c->workspace_bytes = size_t(32) << 20;  // cuBLASLt's recommendation for Hopper
    CUDA_CHECK(cudaMalloc(&c->workspace, c->workspace_bytes));
    CUDA_CHECK(cudaMalloc(&c->counters, Context::kCounters * sizeof(unsigned)));
    CUDA_CHECK(cudaMemset(c->counters, 0, Context::kCounters * sizeof(unsigned)));
    g_context = c;
    return c;
  }();
  return *ctx;
}

}  // namespace r1::cuda

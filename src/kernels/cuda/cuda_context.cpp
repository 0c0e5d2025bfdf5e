#include "kernels/cuda/cuda_context.h"

#include <fmt/format.h>

#include <algorithm>
#include <string>

#include "base/error.h"
#include "kernels/cuda/cuda_device.h"

namespace r1::cuda {

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so the caller may recover
  fail("{}:{}: CUDA error {} ({}) in {}", file, line, cudaGetErrorName(err), cudaGetErrorString(err), expr);
}

void throw_cublas_error(cublasStatus_t st, const char* expr, const char* file, int line) {
  fail("{}:{}: cuBLAS error {} ({}) in {}", file, line, cublasLtGetStatusName(st), cublasLtGetStatusString(st),
       expr);
}

void throw_error(const char* message) { throw Error(message); }

namespace {

struct Probe {
  bool ok = false;
  std::string description;
};

const Probe& probe() {
  static const Probe p = [] {
    Probe r;
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear the sticky error so later calls start clean
      r.description = fmt::format("no CUDA device ({})", cudaGetErrorString(err));
      return r;
    }
    if (n < 1) {
      r.description = "no CUDA device (0 devices)";
      return r;
    }
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
      cudaGetLastError();
      r.description = "no CUDA device (cudaGetDeviceProperties failed)";
      return r;
    }
    r.ok = true;
    r.description = fmt::format("{} (sm_{}{}, {} SMs, {} GiB)", prop.name, prop.major, prop.minor,
                                prop.multiProcessorCount, prop.totalGlobalMem >> 30);
    return r;
  }();
  return p;
}

}  // namespace

bool cuda_available() { return probe().ok; }
const char* cuda_device_description() { return probe().description.c_str(); }

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
    if (!cuda_available()) fail("CUDA backend: {}", cuda_device_description());
    auto* c = new Context();
    CUDA_CHECK(cudaSetDevice(0));
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, dev));
    // A blocking stream: it stays ordered with the legacy default stream, so plain cudaMemcpy by
    // callers can never race the ops.
    CUDA_CHECK(cudaStreamCreate(&c->stream));
    CUBLAS_CHECK(cublasLtCreate(&c->lt));
    c->workspace_bytes = size_t(32) << 20;  // cuBLASLt's recommendation for Hopper
    CUDA_CHECK(cudaMalloc(&c->workspace, c->workspace_bytes));
    return c;
  }();
  return *ctx;
}

void synchronize() { CUDA_CHECK(cudaStreamSynchronize(context().stream)); }

}  // namespace r1::cuda

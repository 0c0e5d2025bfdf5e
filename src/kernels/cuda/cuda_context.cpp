#include "kernels/cuda/cuda_context.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
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

// The ordinal select_device() asked for, and the device the probe chose from it (-1: not probed).
std::atomic<int> g_ordinal{0};
std::atomic<int> g_probed_device{-1};

struct Probe {
  int device = 0;  // the ordinal in use: selected mod visible devices
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
    r.device = g_ordinal.load() % n;
    g_probed_device = r.device;
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, r.device) != cudaSuccess) {
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

void select_device(int ordinal) {
  if (ordinal < 0) fail("CUDA backend: device ordinal {} is negative", ordinal);
  // Once the probe has chosen (the context is made on its choice), only the same device may follow.
  const int chosen = g_probed_device.load();
  if (chosen >= 0) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1 || ordinal % n != chosen)
      fail("CUDA backend: select_device({}) after device {} was already chosen", ordinal, chosen);
  }
  g_ordinal = ordinal;
}

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
    const int dev = probe().device;
    CUDA_CHECK(cudaSetDevice(dev));
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

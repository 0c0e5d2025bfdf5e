// The CUDA runtime behind device/cuda_device.h and device/cuda_stream.h (builds with CUDA only).
#include <fmt/format.h>

#include <atomic>
#include <string>

#include "base/error.h"
#include "device/cuda_check.h"
#include "device/cuda_device.h"
#include "device/cuda_stream.h"

namespace r1::cuda {

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so the caller may recover
  fail("{}:{}: CUDA error {} ({}) in {}", file, line, cudaGetErrorName(err), cudaGetErrorString(err), expr);
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

struct Runtime {
  cudaStream_t stream = nullptr;
  int sm_count = 0;
};

// Created on first use, never destroyed: tearing CUDA state down after the runtime has unloaded at
// exit fails, and the process owns the device anyway.
const Runtime& runtime() {
  static const Runtime* rt = [] {
    if (!cuda_available()) fail("CUDA backend: {}", cuda_device_description());
    auto* r = new Runtime();
    const int dev = probe().device;
    CUDA_CHECK(cudaSetDevice(dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&r->sm_count, cudaDevAttrMultiProcessorCount, dev));
    CUDA_CHECK(cudaStreamCreate(&r->stream));
    return r;
  }();
  return *rt;
}

}  // namespace

void select_device(int ordinal) {
  if (ordinal < 0) fail("CUDA backend: device ordinal {} is negative", ordinal);
  // Once the probe has chosen (the stream is made on its choice), only the same device may follow.
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

cudaStream_t stream() { return runtime().stream; }
int device_ordinal() { return (runtime(), probe().device); }
int sm_count() { return runtime().sm_count; }

void synchronize() { CUDA_CHECK(cudaStreamSynchronize(stream())); }

MemoryInfo memory_info() {
  runtime();
  MemoryInfo m;
  CUDA_CHECK(cudaMemGetInfo(&m.free, &m.total));
  return m;
}

}  // namespace r1::cuda

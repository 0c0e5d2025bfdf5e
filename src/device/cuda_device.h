#pragma once
// The accelerator runtime every layer above may use, in plain C++ (no CUDA headers): whether a
// CUDA device can be used, which one this process uses, and waiting for its work. The kernels
// (kernels/cuda) and the NCCL communicator queue their work on this layer's one compute stream
// (device/cuda_stream.h). Builds without CUDA answer "not available" and fail any real request.
#include <cstddef>

namespace r1::cuda {

// True only if the runtime finds a driver and at least one device. Never throws or aborts: on a
// machine without a driver (CI) it returns false. The answer is computed once.
bool cuda_available();

// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79 GiB)" or a reason it is unavailable.
const char* cuda_device_description();

// Which GPU this process uses: device (ordinal mod the number of visible devices). Only stores the
// ordinal (CUDA is not touched, so a CPU-only job never initialises it); call it before the first
// use of the device. dist::init passes the local rank, giving each rank its own GPU. Fails when
// another device was already chosen (by an earlier probe or use).
void select_device(int ordinal);

// Waits for all work queued on the compute stream; surfaces asynchronous kernel errors.
void synchronize();

// Free and total memory of this process's device, in bytes (cudaMemGetInfo).
struct MemoryInfo {
  size_t free = 0, total = 0;
};
MemoryInfo memory_info();

}  // namespace r1::cuda

#pragma once
// Error checking for CUDA runtime calls: every call goes through CUDA_CHECK, which throws r1::Error
// naming the call site and the runtime's error string (a failure in a long training run must say
// where, not just abort). The throwing functions live in a .cpp, so .cu files need not parse fmt.
// A CUDA header: for the device layer, the kernels and the NCCL communicator only.
#include <cuda_runtime.h>

namespace r1::cuda {
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
// Throws r1::Error with `message` (for checks inside .cu files).
[[noreturn]] void throw_error(const char* message);
}  // namespace r1::cuda

#define CUDA_CHECK(call)                                                                     \
  do {                                                                                       \
    const cudaError_t r1_err_ = (call);                                                      \
    if (r1_err_ != cudaSuccess) ::r1::cuda::throw_cuda_error(r1_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: launch-configuration errors surface here, at the launch site.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

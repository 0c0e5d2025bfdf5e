#pragma once
// Error checking for the CUDA backend: every runtime and cuBLASLt call goes through CUDA_CHECK /
// CUBLAS_CHECK, which throw r1::Error naming the call site and the library's error string (a
// failure in a long training run must say where, not just abort). The throwing functions live in a
// .cpp, so .cu files need not parse fmt.
#include <cublasLt.h>
#include <cuda_runtime.h>

namespace r1::cuda {
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t st, const char* expr, const char* file, int line);
// Throws r1::Error with `message` (for checks inside .cu files).
[[noreturn]] void throw_error(const char* message);
}  // namespace r1::cuda

#define CUDA_CHECK(call)                                                                     \
  do {                                                                                       \
    const cudaError_t r1_err_ = (call);                                                      \
    if (r1_err_ != cudaSuccess) ::r1::cuda::throw_cuda_error(r1_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define CUBLAS_CHECK(call)                                                                        \
  do {                                                                                            \
    const cublasStatus_t r1_st_ = (call);                                                         \
    if (r1_st_ != CUBLAS_STATUS_SUCCESS) ::r1::cuda::throw_cublas_error(r1_st_, #call, __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: launch-configuration errors surface here, at the launch site.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

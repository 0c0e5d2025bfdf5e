#pragma once
// CUBLAS_CHECK: every cuBLASLt call throws r1::Error naming the call site and cuBLAS's status.
#include <cublasLt.h>

#include "device/cuda_check.h"

namespace r1::cuda {
[[noreturn]] void throw_cublas_error(cublasStatus_t st, const char* expr, const char* file, int line);
}  // namespace r1::cuda

#define CUBLAS_CHECK(call)                                                                        \
  do {                                                                                            \
    const cublasStatus_t r1_st_ = (call);                                                         \
    if (r1_st_ != CUBLAS_STATUS_SUCCESS) ::r1::cuda::throw_cublas_error(r1_st_, #call, __FILE__, __LINE__); \
  } while (0)

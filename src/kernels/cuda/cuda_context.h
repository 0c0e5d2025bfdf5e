#pragma once
// The kernels' process-wide state: the compute stream (device/cuda_stream.h), one cuBLASLt handle
// with its workspace, and a grow-only scratch area for ops that need temporaries (logits chunks,
// partial sums). Ops are ordered on the stream, so each op may use the whole scratch area.
#include <cstddef>

#include "device/cuda_device.h"
#include "device/cuda_stream.h"
#include "kernels/cuda/cublas_check.h"

namespace r1::cuda {

struct Context {
  cudaStream_t stream = nullptr;  // device/cuda_stream.h's stream()
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  int sm_count = 0;

  // At least `bytes` of device scratch, valid until the next call (growing it synchronizes).
  void* scratch(size_t bytes);
  // Frees the scratch (it grows back on the next call); waits for the work still using it.
  void release_scratch();
  size_t scratch_bytes() const { return scratch_bytes_; }

 private:
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
};

// Created on first use (throws r1::Error when no device is usable). Never destroyed: tearing down
// cuBLASLt after the CUDA runtime has unloaded at exit fails, and the process owns the device anyway.
Context& context();
// The context when it has been created, else null (asking creates nothing).
Context* context_if_created();

}  // namespace r1::cuda

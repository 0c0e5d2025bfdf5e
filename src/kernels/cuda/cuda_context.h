#pragma once
// The backend's process-wide state: one stream every op runs on, one cuBLASLt handle with its
// workspace, and a grow-only scratch area for ops that need temporaries (logits chunks, partial
// sums). Ops are ordered on the stream, so each op may use the whole scratch area.
#include <cstddef>

#include "kernels/cuda/cuda_check.h"

namespace r1::cuda {

struct Context {
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  int sm_count = 0;

  // At least `bytes` of device scratch, valid until the next call (growing it synchronizes).
  void* scratch(size_t bytes);

 private:
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
};

// Which GPU this process uses: device (ordinal mod the number of visible devices). Only stores the
// ordinal (CUDA is not touched, so a CPU-only job never initialises it); call it before the first
// context() or cuda_available(). dist::init passes the local rank, giving each rank its own GPU.
// Fails when another device was already chosen (by an earlier probe or context).
void select_device(int ordinal);

// Created on first use (throws r1::Error when no device is usable). Never destroyed: tearing down
// cuBLASLt after the CUDA runtime has unloaded at exit fails, and the process owns the device anyway.
Context& context();

// Waits for all work queued on the backend's stream; surfaces asynchronous kernel errors.
void synchronize();

}  // namespace r1::cuda

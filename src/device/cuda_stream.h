#pragma once
// The process's compute stream and device facts, for code that queues CUDA work itself (the
// kernels, device memory copies, graphs, NCCL). A CUDA header.
#include <cuda_runtime.h>

namespace r1::cuda {

// The one stream every op, copy and collective-ordering event uses. Created (with the device
// selected by select_device) on first use; throws r1::Error naming the reason when no device is
// usable. A blocking stream: it stays ordered with the legacy default stream, so plain cudaMemcpy
// by callers can never race the ops.
cudaStream_t stream();
// The device ordinal in use and its number of SMs (after the first stream()).
int device_ordinal();
int sm_count();

}  // namespace r1::cuda

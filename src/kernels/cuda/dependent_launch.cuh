#pragma once
// Programmatic dependent launch (Hopper and later): a kernel launched with launch_dependent() may
// be scheduled while the stream's previous kernel is still running, so its launch and block
// dispatch overlap that kernel's tail instead of following its completion. A decode step of a
// small model is hundreds of kernels of a few microseconds each, where that latency is a large
// share of each kernel.
//
// The contract, for every kernel launched this way: its first statement is dependent_entry(),
// executed by every thread, before any global memory access and before any early return. That
// waits until the previous kernel in the stream has completed and its writes are visible
// (griddepcontrol.wait: a no-op when the kernel was launched without the attribute). Kernels that
// keep the contract may follow one another in any order: each one's completion implies its
// predecessor's, so every earlier kernel's writes are visible too. Then it lets the next
// dependent kernel's blocks be scheduled (griddepcontrol.launch_dependents), which wait in their
// own dependent_entry().
//
// Off (cuda_ops.h's set_dependent_launch, default on from compute capability 9.0) or before
// Hopper, launch_dependent() is an ordinary launch.
#include <cuda_runtime.h>

#include <utility>

#include "kernels/cuda/cublas_check.h"
#include "kernels/cuda/cuda_context.h"

namespace r1::cuda {

__device__ __forceinline__ void dependent_entry() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, context().stream>>>(args...), with the programmatic-serialization
// attribute when dependent_launch() is on. The kernel must keep the contract above.
template <typename... Params, typename... Args>
void launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = context().stream;
  cfg.attrs = attr;
  cfg.numAttrs = dependent_launch() ? 1 : 0;
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace r1::cuda

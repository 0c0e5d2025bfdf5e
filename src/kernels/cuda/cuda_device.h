#pragma once
// Whether a CUDA device can be used at all. Plain C++ (no CUDA headers), so tests and the CLI can
// ask before touching the backend.
namespace r1::cuda {

// True only if the runtime finds a driver and at least one device. Never throws or aborts: on a
// machine without a driver (CI) it returns false. The answer is computed once.
bool cuda_available();

// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79 GiB)" or a reason it is unavailable.
const char* cuda_device_description();

}  // namespace r1::cuda

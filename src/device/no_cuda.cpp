// device/cuda_device.h in a build without the CUDA backend: no device is ever available, and
// anything that needs one fails with the reason.
#include "base/error.h"
#include "device/cuda_device.h"
#include "device/reserved_memory.h"

namespace r1::cuda {

namespace {
constexpr const char* kNoBackend = "this build has no CUDA backend (nvcc was not found when it was configured)";
}

bool cuda_available() { return false; }
const char* cuda_device_description() { return kNoBackend; }
// Launchers give every rank an ordinal; with no GPU there is nothing to select.
void select_device(int ordinal) {
  if (ordinal < 0) fail("CUDA backend: device ordinal {} is negative", ordinal);
}
void synchronize() { fail("CUDA backend: {}", kNoBackend); }
MemoryInfo memory_info() { fail("CUDA backend: {}", kNoBackend); }

ReservedMemory::ReservedMemory(size_t) { fail("CUDA backend: {}", kNoBackend); }
ReservedMemory::~ReservedMemory() = default;
void ReservedMemory::release() {}
void ReservedMemory::acquire() { fail("CUDA backend: {}", kNoBackend); }

}  // namespace r1::cuda

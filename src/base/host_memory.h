#pragma once
// The process's host memory as the kernel counts it (Linux /proc/self/status).
#include <cstdint>

namespace r1 {

// Peak resident set size of this process so far (VmHWM), in bytes; 0 where it cannot be read.
int64_t peak_resident_bytes();

}  // namespace r1

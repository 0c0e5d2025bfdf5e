#include "base/host_memory.h"

#include <cstdio>
#include <cstring>

namespace r1 {

int64_t peak_resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  long long kib = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "VmHWM:", 6) == 0 && std::sscanf(line + 6, "%lld", &kib) == 1) break;
  std::fclose(f);
  return int64_t(kib) * 1024;
}

}  // namespace r1

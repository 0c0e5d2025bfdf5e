#pragma once
// Per-op GPU time: when enabled, every CUDA dispatch in kernels/ops.cpp is bracketed by a pair of
// CUDA events on the backend's stream, keyed by op name and compute dtype ("linear_forward bf16").
// Disabled (the default) it costs one bool check per op. Plain C++ header (no CUDA types).
#include <cstdint>
#include <string>
#include <vector>

namespace r1::cuda {

struct ProfileRow {
  std::string name;  // "op dtype"
  int64_t calls = 0;
  double total_ms = 0.0;
};

void profiler_enable(bool on);
bool profiler_enabled();
// Waits for the stream, then returns the totals since the last reset, largest total_ms first.
std::vector<ProfileRow> profiler_report();
// Forgets all totals (waits for the stream, so no op in flight is counted later).
void profiler_reset();

namespace detail {
extern bool g_profiling;
int64_t profile_begin(const char* op, const char* dtype);
void profile_end(int64_t id);
}  // namespace detail

// Times one op while the profiler is on (op and dtype: string literals, kept by pointer).
class ProfileScope {
 public:
  ProfileScope(const char* op, const char* dtype) {
    if (detail::g_profiling) id_ = detail::profile_begin(op, dtype);
  }
  ~ProfileScope() {
    if (id_ >= 0) detail::profile_end(id_);
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  int64_t id_ = -1;
};

}  // namespace r1::cuda

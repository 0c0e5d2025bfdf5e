#include "kernels/cuda/profiler.h"

#include <algorithm>
#include <deque>
#include <map>

#include "kernels/cuda/cublas_check.h"
#include "kernels/cuda/cuda_context.h"

namespace r1::cuda {

namespace detail {
bool g_profiling = false;
}

namespace {

struct Pending {
  const char* op;
  const char* dtype;
  cudaEvent_t start, end;
  bool ended;
  bool recorded;  // both events recorded (a failed end record loses only this sample)
};

struct Totals {
  int64_t calls = 0;
  double ms = 0.0;
};

// Not thread-safe, like the backend it times.
struct State {
  std::deque<Pending> pending;  // pending[i] has id first_id + i
  int64_t first_id = 0;
  std::vector<cudaEvent_t> free_events;
  std::map<std::string, Totals> totals;
};

State& state() {
  static auto* s = new State();  // never destroyed: events must not outlive the runtime at exit
  return *s;
}

cudaEvent_t take_event(State& s) {
  if (!s.free_events.empty()) {
    cudaEvent_t e = s.free_events.back();
    s.free_events.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

// Folds finished entries at the front into the totals; `wait` blocks on each instead of skipping.
void harvest(State& s, bool wait) {
  while (!s.pending.empty() && s.pending.front().ended) {
    Pending& p = s.pending.front();
    if (wait) {
      CUDA_CHECK(cudaEventSynchronize(p.end));
    } else if (cudaEventQuery(p.end) != cudaSuccess) {
      cudaGetLastError();  // cudaErrorNotReady is not an error here
      break;
    }
    if (p.recorded) {
      float ms = 0.0f;
      CUDA_CHECK(cudaEventElapsedTime(&ms, p.start, p.end));
      Totals& t = s.totals[std::string(p.op) + " " + p.dtype];
      t.calls += 1;
      t.ms += ms;
    }
    s.free_events.push_back(p.start);
    s.free_events.push_back(p.end);
    s.pending.pop_front();
    ++s.first_id;
  }
}

}  // namespace

void profiler_enable(bool on) { detail::g_profiling = on; }
bool profiler_enabled() { return detail::g_profiling; }

std::vector<ProfileRow> profiler_report() {
  State& s = state();
  if (!s.pending.empty()) {
    synchronize();
    harvest(s, true);
  }
  std::vector<ProfileRow> rows;
  for (const auto& [name, t] : s.totals) rows.push_back({name, t.calls, t.ms});
  std::stable_sort(rows.begin(), rows.end(),
                   [](const ProfileRow& a, const ProfileRow& b) { return a.total_ms > b.total_ms; });
  return rows;
}

void profiler_reset() {
  State& s = state();
  if (!s.pending.empty()) {
    synchronize();
    harvest(s, true);
  }
  s.totals.clear();
}

namespace detail {

int64_t profile_begin(const char* op, const char* dtype) {
  State& s = state();
  // Keep the queue short in long runs: fold what has finished (blocking only when far behind).
  if (s.pending.size() >= 1024) harvest(s, s.pending.size() >= 65536);
  Pending p{op, dtype, take_event(s), take_event(s), false, false};
  CUDA_CHECK(cudaEventRecord(p.start, context().stream));
  s.pending.push_back(p);
  return s.first_id + int64_t(s.pending.size()) - 1;
}

void profile_end(int64_t id) {
  State& s = state();
  const int64_t i = id - s.first_id;
  if (i < 0 || i >= int64_t(s.pending.size())) return;
  Pending& p = s.pending[size_t(i)];
  // A destructor calls this: never throw.
  p.recorded = cudaEventRecord(p.end, context().stream) == cudaSuccess;
  if (!p.recorded) cudaGetLastError();
  p.ended = true;
}

}  // namespace detail

}  // namespace r1::cuda

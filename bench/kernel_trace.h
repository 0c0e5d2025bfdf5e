#pragma once
// Every kernel a stretch of GPU work ran, timed by the GPU (CUPTI's activity records), so a decode
// step replayed from a CUDA graph can be broken down kernel by kernel: what an nsys summary gives,
// inside the benchmark (the GPU machine has no nsys). A benchmark starts a KernelTrace before the
// work and calls summary() after it; kernels launched from graphs (graph_id != 0) are kept apart
// from eager ones (a rollout's prefills).
//
// The gaps: a decode step's kernels run one after another on one stream, so the time between one
// kernel's end and the next one's start inside a graph replay is the price of launching it (what
// fusing kernels, or overlapping launches, would win back).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cxxabi.h>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#ifdef R1_HAVE_CUPTI
#include <cupti.h>
#endif

namespace r1::bench {

struct KernelRecord {
  std::string name;
  uint64_t start = 0, end = 0;  // ns, GPU clock
  uint32_t graph_id = 0;
};

// "void r1::cuda::(anonymous namespace)::rmsnorm_forward_kernel<8, true, __nv_bfloat16>(...)" ->
// "rmsnorm_forward_kernel<8, true, __nv_bfloat16>": the function and its template arguments.
inline std::string short_kernel_name(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> d(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  std::string s = status == 0 && d ? d.get() : mangled;
  for (size_t at; (at = s.find("(anonymous namespace)")) != std::string::npos;) s.replace(at, 21, "anon");
  const size_t paren = s.find('(');  // drop the parameter list
  if (paren != std::string::npos) s.resize(paren);
  int depth = 0;  // the last "::" outside template brackets starts the name
  size_t from = 0;
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    if (s[i] == '<') ++depth;
    if (s[i] == '>') --depth;
    if (depth == 0 && s[i] == ':' && s[i + 1] == ':') from = i + 2;
  }
  s = s.substr(from);
  if (s.rfind("void ", 0) == 0) s = s.substr(5);
  return s.size() > 120 ? s.substr(0, 117) + "..." : s;
}

#ifdef R1_HAVE_CUPTI

class KernelTrace {
 public:
  // One trace at a time; a program may run several in turn (the buffer callbacks are registered
  // once per process).
  KernelTrace() {
    records().clear();
    static const bool registered = [] {
      check(cuptiActivityRegisterCallbacks(&requested, &completed), "cuptiActivityRegisterCallbacks");
      return true;
    }();
    (void)registered;
    check(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "cuptiActivityEnable");
  }
  ~KernelTrace() { stop(); }
  // Ends the trace (the device must be idle: call after synchronizing) and returns every kernel.
  std::vector<KernelRecord> stop() {
    if (!stopped_) {
      cuptiActivityFlushAll(1);
      cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
      stopped_ = true;
    }
    std::lock_guard<std::mutex> lock(mutex());
    std::vector<KernelRecord> r = records();
    std::sort(r.begin(), r.end(), [](const KernelRecord& a, const KernelRecord& b) { return a.start < b.start; });
    return r;
  }

 private:
  bool stopped_ = false;
  static std::vector<KernelRecord>& records() {
    static std::vector<KernelRecord> r;
    return r;
  }
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static void check(CUptiResult r, const char* what) {
    if (r == CUPTI_SUCCESS) return;
    const char* s = nullptr;
    cuptiGetResultString(r, &s);
    std::fprintf(stderr, "kernel trace: %s failed: %s\n", what, s ? s : "?");
    std::exit(1);
  }
  static void CUPTIAPI requested(uint8_t** buffer, size_t* size, size_t* max_records) {
    *size = size_t(16) << 20;
    *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, *size));
    *max_records = 0;
  }
  static void CUPTIAPI completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
    CUpti_Activity* rec = nullptr;
    std::lock_guard<std::mutex> lock(mutex());
    while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
      if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
      records().push_back({short_kernel_name(k->name), k->start, k->end, k->graphId});
    }
    std::free(buffer);
  }
};

#endif  // R1_HAVE_CUPTI

// The graph-launched kernels of a trace, per step (`steps` replays): per kernel name its launches,
// µs and share of the kernel time; the kernel time, the in-graph gaps (a gap over `max_gap_us`
// is a pause between replays, not a launch) and the kernels per step. Names sorted by time.
inline nlohmann::json graph_kernel_summary(const std::vector<KernelRecord>& all, double steps,
                                           double max_gap_us = 200.0) {
  std::map<std::string, std::pair<int64_t, double>> per;  // name -> launches, µs
  double busy_us = 0, gap_us = 0, launches = 0;
  const KernelRecord* prev = nullptr;
  for (const KernelRecord& k : all) {
    if (k.graph_id == 0) continue;
    const double us = double(k.end - k.start) * 1e-3;
    auto& e = per[k.name];
    e.first += 1;
    e.second += us;
    busy_us += us;
    launches += 1;
    if (prev && prev->graph_id == k.graph_id && k.start > prev->end) {
      const double g = double(k.start - prev->end) * 1e-3;
      if (g < max_gap_us) gap_us += g;
    }
    prev = &k;
  }
  std::vector<std::pair<std::string, std::pair<int64_t, double>>> rows(per.begin(), per.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.second > b.second.second; });
  nlohmann::json kernels = nlohmann::json::array();
  for (const auto& [name, v] : rows)
    kernels.push_back({{"kernel", name},
                       {"launches_per_step", double(v.first) / steps},
                       {"us_per_step", v.second / steps},
                       {"share", v.second / std::max(busy_us, 1e-9)}});
  return {{"steps", steps},
          {"kernels_per_step", launches / steps},
          {"kernel_us_per_step", busy_us / steps},
          {"gap_us_per_step", gap_us / steps},
          {"kernels", kernels}};
}

}  // namespace r1::bench

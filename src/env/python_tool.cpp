#include "env/python_tool.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "reward/sandbox.h"

namespace r1::env {

namespace {

constexpr const char* kTruncated = "\n...[output truncated]";

// The last `n` bytes of s (a traceback's end says what went wrong).
std::string tail(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(s.size() - n); }

}  // namespace

void check_python_tool(const PythonToolOptions& o) {
  R1_CHECK(o.timeout_seconds > 0 && o.memory_bytes > 0 && o.output_bytes > 0,
           "python tool: timeout, memory and output limits must be positive");
  if (o.allow_unsandboxed) return;
  const reward::SandboxSupport s = reward::sandbox_support();
  R1_CHECK(s.complete(),
           "python tool: refusing to run model-written code: the sandbox is missing {}. Run where every "
           "protection works, or accept the risk with env.allow_unsandboxed: true",
           fmt::join(s.missing, "; "));
}

ToolRun run_python_tool(const std::string& code, const PythonToolOptions& o) {
  reward::SandboxOptions so;
  so.allow_unsandboxed = o.allow_unsandboxed;
  reward::SandboxLimits lim;
  lim.wall_seconds = o.timeout_seconds;
  lim.cpu_seconds = std::max(1, int(std::ceil(o.timeout_seconds)));
  lim.memory_bytes = o.memory_bytes;
  // A flood is killed early; the cap below cuts what is shown. The sandbox keeps only the start of
  // stderr up to the same size, and a traceback's end (the exception) must survive it.
  lim.output_bytes = std::max<size_t>(2 * o.output_bytes, size_t(64) << 10);
  lim.processes = 8;
  reward::Sandbox box(so);
  box.write_file("main.py", code);
  const reward::SandboxResult r = box.run({o.python, "-I", "-S", "main.py"}, "", lim);
  ToolRun t;
  t.timed_out = r.timed_out;
  t.error = !r.ok();
  // stdout cut at the cap, then what went wrong (a traceback's end says what; also capped).
  std::string shown = r.out;
  if (shown.size() > o.output_bytes) {
    shown = shown.substr(0, o.output_bytes) + kTruncated;
    t.truncated = true;
  }
  std::string why;
  if (r.setup_failed)
    why = "sandbox error: " + fmt::format("{}", fmt::join(r.missing, "; "));
  else if (r.timed_out)
    why = fmt::format("TimeoutError: the call ran past {} s and was stopped", o.timeout_seconds);
  else if (r.output_exceeded)
    why = "OutputError: the call printed too much and was stopped";
  else if (!r.ok())
    why = r.err.size() > o.output_bytes ? "..." + tail(r.err, o.output_bytes) : r.err;
  if (r.output_exceeded) t.truncated = true;
  if (!why.empty()) shown += (shown.empty() || shown.back() == '\n' ? "" : "\n") + why;
  while (!shown.empty() && shown.back() == '\n') shown.pop_back();
  t.output = std::move(shown);
  return t;
}

}  // namespace r1::env

#pragma once
// The Python tool: model-written code run in the sandbox (reward/sandbox.h) with limits per call:
// wall-clock and CPU time, address space, and an output cap (the program is killed past twice the
// cap; what it printed is cut at the cap and marked). stderr's tail is shown when the program fails,
// as an interpreter would show a traceback.
#include <cstddef>
#include <string>

namespace r1::env {

struct PythonToolOptions {
  std::string python = "/usr/bin/python3";
  double timeout_seconds = 2.0;                // wall clock per call
  size_t memory_bytes = size_t(256) << 20;     // RLIMIT_AS per call
  size_t output_bytes = 1024;                  // observation cap
  bool allow_unsandboxed = false;              // run even where a sandbox protection is missing
};

struct ToolRun {
  std::string output;       // what the model sees (stdout, or the error), at most output_bytes + a marker
  bool error = false;       // it failed: exception, non-zero exit, timeout, memory, output flood
  bool timed_out = false;
  bool truncated = false;   // output cut at output_bytes
};

// Throws naming each missing protection unless the sandbox is complete here or allow_unsandboxed.
void check_python_tool(const PythonToolOptions& o);

ToolRun run_python_tool(const std::string& code, const PythonToolOptions& o);

}  // namespace r1::env

#pragma once
// Python unit tests ("assert f(2) == 4", any statements) that a solution cannot short-circuit.
// Two sandboxes run side by side, joined by two pipes:
//  - the runner (code_harness_runner.cpp) loads the solution as a module and answers requests
//    ("call f with these arguments") with plain data: ints, floats, strings, lists, dicts, ...;
//  - the evaluator (code_harness_evaluator.cpp) runs each test, fetching the solution's names from the
//    runner as they are used (its own builtins always), rebuilds every answer from JSON as genuine
//    Python values, and writes one verdict per test on its stdout, which only this process reads.
// The solution never sees the tests or their expected values (another sandbox), and nothing it can
// do to its own process (exit codes, os._exit, atexit, patched builtins, printed "PASS" lines,
// objects whose __eq__ always says yes) reaches a verdict: it can only give wrong values.
// A test that times out or ends the runner stops the pair; a fresh pair runs the tests after it.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "reward/sandbox.h"

namespace r1::reward {

extern const char* const kHarnessRunnerPy;
extern const char* const kHarnessEvaluatorPy;

struct HarnessOptions {
  std::string python = "/usr/bin/python3";
  SandboxLimits limits;  // per test: wall_seconds and cpu_seconds; the rest for each process
  SandboxOptions sandbox;
};

struct TestVerdict {
  bool passed = false;
  std::string reason;  // why not (empty when passed)
};

// One verdict per test, in order. `sandbox` (optional) receives the protections in force and those
// missing, as the code reward reports them.
std::vector<TestVerdict> run_python_tests(const std::string& solution, const std::vector<std::string>& tests,
                                          const HarnessOptions& o, nlohmann::json* sandbox = nullptr);

}  // namespace r1::reward

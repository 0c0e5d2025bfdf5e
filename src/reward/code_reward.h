#pragma once
// Code correctness: the last fenced code block, run in the sandbox against unit tests; the reward is
// the fraction of tests passed. Tests (Sample::tests):
//   {"language": "python" | "cpp",                         (optional: else the fence's tag, else python)
//    "cases":   [{"input": "...", "output": "..."}, ...],  stdin → expected stdout (trailing spaces ignored)
//    "asserts": ["assert f(2) == 4", ...]}                 Python statements, each one test
// A case runs the program on its stdin; only the stdout this process captured is compared. Asserts
// run in the two-sandbox harness (code_harness.h): the solution is loaded as a module and only values
// leave it, so exit codes, os._exit, atexit, patched builtins or printed results decide nothing.
// The sandbox fails closed: a CodeReward is not built where a protection is missing, unless
// CodeOptions::allow_unsandboxed says the caller accepts the risk.
#include <optional>
#include <string>

#include "reward/reward.h"
#include "reward/sandbox.h"

namespace r1::reward {

struct CodeBlock {
  std::string language;  // the fence's tag, lower-case ("" when none)
  std::string code;
};

std::optional<CodeBlock> last_code_block(const std::string& completion);

struct CodeOptions {
  std::string python = "/usr/bin/python3";
  std::string gxx = "/usr/bin/g++";
  SandboxLimits run;  // per case, and per assert
  SandboxLimits compile = {20, 40.0, size_t(2) << 30, 64, size_t(256) << 20, 256, size_t(1) << 20};
  bool allow_unsandboxed = false;  // run model code even where the sandbox lacks a protection
};

class CodeReward : public Reward {
 public:
  // Throws, naming each missing protection, when the sandbox is incomplete here and
  // allow_unsandboxed is off.
  explicit CodeReward(CodeOptions o = {});
  std::string name() const override { return "code"; }
  Result score(const Sample& s) const override;

 private:
  CodeOptions o_;
};

}  // namespace r1::reward

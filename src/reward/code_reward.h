#pragma once
// Code correctness: the last fenced code block, run in the sandbox against unit tests; the reward is
// the fraction of tests passed. Tests (Sample::tests):
//   {"language": "python" | "cpp",                         (optional: else the fence's tag, else python)
//    "cases":   [{"input": "...", "output": "..."}, ...],  stdin → expected stdout (trailing spaces ignored)
//    "asserts": ["assert f(2) == 4", ...]}                 each appended to the program, passes on exit 0
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
  SandboxLimits run;
  SandboxLimits compile = {20, 40.0, size_t(2) << 30, 64, size_t(256) << 20, 256, size_t(1) << 20};
};

class CodeReward : public Reward {
 public:
  explicit CodeReward(CodeOptions o = {}) : o_(std::move(o)) {}
  std::string name() const override { return "code"; }
  Result score(const Sample& s) const override;

 private:
  CodeOptions o_;
};

}  // namespace r1::reward

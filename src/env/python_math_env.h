#pragma once
// The Python-tool environment for math (ToRL / ReTool style): the model reasons, writes code in a
// tool call, reads its output and goes on; the answer is scored by the run's reward (math) on the
// model's own text, so the environment itself gives no reward, only the tool. Every call runs in
// the sandbox under PythonToolOptions' limits; calls past max_calls are refused with an error
// observation (the rollout engine stops asking after max_turns anyway).
#include "env/environment.h"
#include "env/python_tool.h"
#include "env/tool_call.h"

namespace r1::env {

struct PythonMathOptions {
  ToolFormat format = ToolFormat::Markdown;
  PythonToolOptions tool;
  int max_calls = 4;
};

class PythonMathEnv final : public Environment {
 public:
  // Checks the limits and that the sandbox is complete (or allow_unsandboxed) before any episode.
  explicit PythonMathEnv(PythonMathOptions o);
  std::string name() const override { return "python"; }
  bool ends_turn(const std::string& turn_text) const override { return ends_tool_call(o_.format, turn_text); }
  std::unique_ptr<Episode> reset(const data::Problem& problem) const override;

 private:
  PythonMathOptions o_;
};

}  // namespace r1::env

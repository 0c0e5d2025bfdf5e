#pragma once
// Tool-integrated reasoning at demo scale, on the CPU: a task a tiny byte-level model cannot do
// reliably in its head (multiplying a 3-digit by a 2-digit number), learned with a Python tool.
// 1. base ability: next-token training on generated solutions, half of them calling the tool
//    (```python\nprint(A*B)\n``` then its output, then <answer>P</answer>), half the bare answer;
// 2. two GRPO runs from that same model, with the math reward: one where the tool runs (the
//    Python environment: calls in the sandbox, output appended as masked observation tokens), one
//    without it (a code block gets no answer, the model must produce the product itself);
// 3. held-out pass@1 of each, in its own setting, before and after RL.
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace r1::pipeline {

struct ToolDemoOptions {
  int digits_a = 3, digits_b = 2;  // operands
  int sft_steps = 500, grpo_steps = 20, eval_problems = 100;
  double lr = 1e-4;
  float tool_share = 0.5f;  // base-training solutions that call the tool
  int tool_threads = 4;
  bool allow_unsandboxed = false;
  uint64_t seed = 1;
  std::string out = "runs/tool_demo";
  bool progress = true;
};

struct ToolDemoArm {
  double pass_before = 0, pass_after = 0;
  double tool_calls_after = 0;  // per held-out episode (with the tool)
  std::vector<double> accuracy;  // per GRPO step
};

struct ToolDemoResult {
  ToolDemoArm with_tool, without_tool;
  std::vector<std::string> examples;  // trajectories of a few held-out problems, with the tool
  double seconds = 0;
};

ToolDemoResult run_tool_demo(const ToolDemoOptions& o);

}  // namespace r1::pipeline

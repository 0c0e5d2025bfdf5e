#pragma once
// The built-in R1-Zero run at demo scale, on the CPU (or a GPU) with no downloads:
// 1. base ability: a small byte-level model is trained on generated column-addition solutions,
//    half of them worked step by step in <think>, half given as the bare answer;
// 2. held-out pass@1 (k samples at temperature 0.6, top-p 0.95);
// 3. GRPO with accuracy + format rewards on the model's own samples;
// 4. held-out pass@1 again. RL should find that reasoning pays: accuracy and length both rise.
#include <cstdint>
#include <string>
#include <vector>

#include "data/problem.h"
#include "tensor/tensor.h"

namespace r1::pipeline {

struct DemoOptions {
  int digits = 3, sft_steps = 1200, grpo_steps = 120, eval_problems = 200;
  double lr = 1e-4;            // GRPO
  float temperature = 1.0f;    // GRPO sampling
  double format_weight = 0.2;  // reward = accuracy + format_weight * format
  float direct_share = 0.5f;   // base-training answers without reasoning
  uint64_t seed = 1;
  std::string out = "runs/demo";
  Device device = Device::CPU;  // where the model trains and generates
  bool progress = true;
};

struct DemoResult {
  double pass_before = 0, pass_after = 0, length_before = 0, length_after = 0, seconds = 0;
  std::vector<double> reward, accuracy, length;  // per GRPO step
  std::vector<std::string> examples;           // greedy completions of a few held-out problems
  std::string report;                           // path of report.html
};

// The demo's problems: the held-out set pass@1 is measured on, and the training set (base
// training and GRPO both draw from it) without any problem adding the same two numbers.
struct DemoProblems {
  std::vector<data::Problem> train, held_out;
};
DemoProblems demo_problems(const DemoOptions& o);

DemoResult run_r1zero_demo(const DemoOptions& o);

}  // namespace r1::pipeline

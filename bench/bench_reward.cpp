// Reward throughput: math completions verified per second (the trainer scores G completions per prompt
// every step), and code sandbox runs per second.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "reward/code_reward.h"
#include "reward/composite.h"
#include "reward/math_reward.h"
#include "reward/sandbox.h"

using namespace r1::reward;

namespace {

// MATH-500 gold answers inside R1-style completions: half correct, half a near-miss (+1).
std::vector<Sample> math_samples() {
  std::filesystem::path data = std::filesystem::path(__FILE__).parent_path().parent_path() / "data/math500.jsonl";
  std::ifstream in(data);
  std::vector<Sample> out;
  bool right = true;
  for (std::string line; std::getline(in, line); right = !right) {
    std::string gold = nlohmann::json::parse(line)["answer"];
    std::string said = right ? gold : "(" + gold + ")+1";
    out.push_back({"<think>Let me think about this carefully. First, ... so we get it.</think>\n"
                   "<answer>The final answer is $\\boxed{" + said + "}$.</answer>",
                   gold, {}});
  }
  return out;
}

void BM_MathVerify(benchmark::State& state) {
  static const std::vector<Sample> samples = math_samples();
  MathReward reward;
  for (auto _ : state) benchmark::DoNotOptimize(score_batch(reward, samples, int(state.range(0))));
  state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(samples.size()));
}
BENCHMARK(BM_MathVerify)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same through the guard training uses (make_reward): scored in a forked worker with a deadline.
void BM_MathVerifyGuarded(benchmark::State& state) {
  static const std::vector<Sample> samples = math_samples();
  auto reward = make_reward("math");
  for (auto _ : state) benchmark::DoNotOptimize(score_batch(*reward, samples, int(state.range(0))));
  state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(samples.size()));
}
BENCHMARK(BM_MathVerifyGuarded)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

// Answers with free symbols take the GiNaC path: one forked child per check.
void BM_MathVerifySymbolic(benchmark::State& state) {
  std::vector<Sample> samples;
  for (int i = 0; i < 64; ++i)
    samples.push_back({"\\boxed{x^2 + " + std::to_string(2 * i) + "x + " + std::to_string(i * i) + "}",
                       "(x+" + std::to_string(i) + ")^2", {}});
  MathReward reward;
  for (auto _ : state) benchmark::DoNotOptimize(score_batch(reward, samples, int(state.range(0))));
  state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(samples.size()));
}
BENCHMARK(BM_MathVerifySymbolic)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SandboxPythonRun(benchmark::State& state) {
  Sandbox box;
  box.write_file("p.py", "print(sum(map(int, input().split())))\n");
  for (auto _ : state) {
    SandboxResult r = box.run({"/usr/bin/python3", "-I", "-S", "p.py"}, "1 2 3\n", {});
    if (!r.ok()) state.SkipWithError("sandbox run failed");
  }
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_SandboxPythonRun)->Unit(benchmark::kMillisecond)->UseRealTime();

// Whole code reward on 2 cores: 8 completions × 4 stdin cases each.
void BM_CodeRewardPython(benchmark::State& state) {
  nlohmann::json tests = {{"cases", nlohmann::json::array()}};
  for (int i = 0; i < 4; ++i) tests["cases"].push_back({{"input", std::to_string(i) + "\n"}, {"output", std::to_string(2 * i)}});
  std::vector<Sample> samples(8, Sample{"```python\nprint(2 * int(input()))\n```", "", tests});
  CodeReward reward;
  for (auto _ : state) benchmark::DoNotOptimize(score_batch(reward, samples, 2));
  state.SetItemsProcessed(int64_t(state.iterations()) * 8 * 4);
}
BENCHMARK(BM_CodeRewardPython)->Unit(benchmark::kMillisecond)->UseRealTime();

// Function tests through the two-sandbox harness: 8 completions × 4 asserts on 2 threads.
void BM_CodeRewardPythonAsserts(benchmark::State& state) {
  nlohmann::json tests = {{"asserts", nlohmann::json::array()}};
  for (int i = 0; i < 4; ++i) tests["asserts"].push_back(fmt::format("assert double({}) == {}", i, 2 * i));
  std::vector<Sample> samples(8, Sample{"```python\ndef double(x):\n    return 2 * x\n```", "", tests});
  CodeReward reward;
  for (auto _ : state) benchmark::DoNotOptimize(score_batch(reward, samples, 2));
  state.SetItemsProcessed(int64_t(state.iterations()) * 8 * 4);
}
BENCHMARK(BM_CodeRewardPythonAsserts)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_CodeRewardCpp(benchmark::State& state) {
  nlohmann::json tests = {{"cases", {{{"input", "3\n"}, {"output", "9"}}}}};
  Sample s{"```cpp\n#include <cstdio>\nint main(){int x; std::scanf(\"%d\", &x); std::printf(\"%d\\n\", x*x);}\n```",
           "", tests};
  CodeReward reward;
  for (auto _ : state) benchmark::DoNotOptimize(reward.score(s));
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_CodeRewardCpp)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);

}  // namespace

BENCHMARK_MAIN();

// Tokenizer throughput: encode MB/s on the MATH-500 problems with the real Qwen3 / Llama 3 /
// DeepSeek-V3 vocabularies (scripts/fetch_test_data.sh fetches them), cold and warm word cache.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "text/tokenizer.h"

namespace {

// The source tree, found from this file's path (CMake compiles it by absolute path).
std::string source(const std::string& rel) {
  return std::filesystem::path(__FILE__).parent_path().parent_path().string() + "/" + rel;
}

const std::vector<std::string>& problems() {
  static std::vector<std::string> p = [] {
    std::vector<std::string> out;
    std::ifstream in(source("data/math500.jsonl"));
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) out.push_back(nlohmann::json::parse(line)["problem"].get<std::string>());
    return out;
  }();
  return p;
}

void BM_Encode(benchmark::State& state, const std::string& name, bool fresh_cache) {
  std::string dir = source("tests/data/tokenizers/" + name);
  if (!std::filesystem::exists(dir + "/tokenizer.json")) {
    state.SkipWithError(("missing " + dir + ": run scripts/fetch_test_data.sh").c_str());
    return;
  }
  auto tok = r1::text::Tokenizer::load(dir);
  size_t bytes = 0, tokens = 0;
  for (auto _ : state) {
    if (fresh_cache) {
      state.PauseTiming();
      tok = r1::text::Tokenizer::load(dir);
      state.ResumeTiming();
    }
    for (const std::string& p : problems()) {
      auto ids = tok->encode(p);
      bytes += p.size();
      tokens += ids.size();
      benchmark::DoNotOptimize(ids.data());
    }
  }
  state.SetBytesProcessed(int64_t(bytes));
  state.counters["tokens/s"] = benchmark::Counter(double(tokens), benchmark::Counter::kIsRate);
}

void BM_Load(benchmark::State& state, const std::string& name) {
  std::string dir = source("tests/data/tokenizers/" + name);
  if (!std::filesystem::exists(dir + "/tokenizer.json")) {
    state.SkipWithError("missing tokenizer: run scripts/fetch_test_data.sh");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(r1::text::Tokenizer::load(dir));
}

}  // namespace

BENCHMARK_CAPTURE(BM_Encode, qwen3_warm, std::string("qwen3"), false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, qwen3_cold, std::string("qwen3"), true)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK_CAPTURE(BM_Encode, llama3_warm, std::string("llama3"), false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, deepseek_v3_warm, std::string("deepseek_v3"), false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Load, qwen3, std::string("qwen3"))->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK_MAIN();

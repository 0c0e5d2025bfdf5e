// Rollout throughput on the CPU: decode tokens/s of the engine (prefill, sampling and stop checks
// included) for a ~10M-parameter model at batch 1, 16 and 64. Run: build/bench/bench_rollout
#include <benchmark/benchmark.h>

#include "base/rng.h"
#include "model/transformer.h"
#include "rollout/engine.h"

using namespace r1;

static void BM_Generate(benchmark::State& st) {
  model::ModelConfig c = model::preset_config("10m", "qwen2");
  model::Transformer m(c);
  m.init_random(1);
  const int B = int(st.range(0)), prompt = 32, new_tokens = 64;
  Rng rng(3);
  std::vector<rollout::Request> reqs;
  for (int b = 0; b < B; ++b) {
    rollout::Request r;
    for (int t = 0; t < prompt; ++t) r.prompt.push_back(int32_t(rng.next_u32() % uint32_t(c.vocab_size)));
    reqs.push_back(r);
  }
  rollout::GenerateParams gp;
  gp.sampling.temperature = 1.0f;
  gp.max_new_tokens = new_tokens;  // no stop ids: every sequence runs to the limit
  rollout::Engine engine(m, {B, prompt + new_tokens, 8192});
  int64_t tokens = 0;
  for (auto _ : st) {
    auto out = engine.generate(reqs, gp);
    for (const auto& o : out) tokens += int64_t(o.tokens.size());
  }
  st.SetItemsProcessed(tokens);
  st.counters["batch"] = B;
}
BENCHMARK(BM_Generate)->Arg(1)->Arg(16)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();

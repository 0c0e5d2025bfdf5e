// CPU training throughput: forward + backward tokens/s of a ~10M-parameter model (the "10m"
// preset), packed batches of several sequences, and decode steps; each with the batch-invariant
// forward off (last argument 0) and on (1: rollout.exact_logprobs, kernels/invariance.h; the decode
// step then forms the trainer's tempered logits). Run: build/bench/bench_train_cpu
#include <benchmark/benchmark.h>

#include "base/rng.h"
#include "kernels/invariance.h"
#include "model/transformer.h"
#include "model/kv_cache.h"
#include "model/train_state.h"

using namespace r1;

static void BM_TrainStep(benchmark::State& st) {
  model::ModelConfig c = model::preset_config("10m", "qwen2");
  model::Transformer m(c);
  m.init_random(1);
  const int seqs = int(st.range(0)), len = int(st.range(1));
  Rng rng(2);
  std::vector<std::vector<int32_t>> data(size_t(seqs), std::vector<int32_t>(size_t(len), 0));
  for (auto& s : data)
    for (auto& x : s) x = int32_t(rng.next_u32() % uint32_t(c.vocab_size));
  model::Batch batch = model::pack_sequences(data);
  std::vector<float> dlogp(size_t(batch.tokens()), -1.0f / float(batch.tokens()));
  model::TrainState state;
  ops::BatchInvariantScope exact(st.range(2) != 0);
  for (auto _ : st) {
    state.forward(m, batch);
    m.zero_grads();
    state.backward(m, dlogp);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * batch.tokens());
  st.counters["params_M"] = double(c.num_parameters()) / 1e6;
  // 6 N flops per token for the matmuls, plus attention (12 L T C per token on average, causal).
  st.counters["GFLOP/s"] = benchmark::Counter(
      double(st.iterations() * batch.tokens()) * (6.0 * double(c.num_parameters()) +
                                                  6.0 * c.num_hidden_layers * len * c.q_dim()) / 1e9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_TrainStep)
    ->Args({4, 256, 0})
    ->Args({4, 256, 1})
    ->Args({8, 512, 0})
    ->Args({8, 512, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

static void BM_DecodeStep(benchmark::State& st) {
  model::ModelConfig c = model::preset_config("10m", "qwen2");
  model::Transformer m(c);
  m.init_random(1);
  const int B = int(st.range(0)), ctx = 128;
  model::KVCache cache(m, B, ctx + 1);
  Arena arena;
  std::vector<int32_t> ids(size_t(B), 1), slots(size_t(B), 0), pos(size_t(B), ctx), rows(size_t(B), 0);
  for (int b = 0; b < B; ++b) slots[size_t(b)] = rows[size_t(b)] = b;
  const bool exact = st.range(1) != 0;
  ops::BatchInvariantScope mode(exact);
  for (auto _ : st) {
    arena.reset();
    benchmark::DoNotOptimize(
        model::forward_cached(m, cache, ids, slots, pos, rows, arena, DType::F32, nullptr, exact ? 1.0f : 0.0f));
  }
  st.SetItemsProcessed(st.iterations() * B);
}
BENCHMARK(BM_DecodeStep)
    ->ArgsProduct({{1, 16, 64}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();

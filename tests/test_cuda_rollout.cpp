// The rollout engine on the GPU (rollout/gpu_engine.h): the decode loop on the device (CUDA graphs,
// GPU sampling, stop handling) against the CPU engine, and the rollout log-probs against the
// trainer's. A CUDA model computing in f32 must reproduce the CPU engine token for token (same
// draws: the same Philox numbers and the same sampling law); a bf16 one is compared with the
// trainer's bf16 log-probs on the same completions. Skips without a usable GPU.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

#include "require_gpu.h"
#include "base/bf16.h"
#include "base/rng.h"
#include "device/cuda_device.h"
#include "model/kv_cache.h"
#include "model/transformer.h"
#include "model/train_state.h"
#include "rollout/engine.h"
#include "tensor/device_memory.h"

using namespace r1;

namespace {

std::vector<rollout::Request> random_requests(int prompts, int n, int vocab, uint64_t seed, int min_len = 3) {
  Rng rng(seed);
  std::vector<rollout::Request> reqs;
  for (int i = 0; i < prompts; ++i) {
    rollout::Request r;
    const int len = min_len + int(rng.next_u32() % 13);
    for (int t = 0; t < len; ++t) r.prompt.push_back(int32_t(rng.next_u32() % uint32_t(vocab)));
    r.n = n;
    r.id = 100 + i;
    reqs.push_back(r);
  }
  return reqs;
}

// A CPU model and a CUDA model (compute dtype `dt`) with the same weights (bf16-representable when
// dt is bf16, so both start from the same numbers).
struct Twins {
  model::Transformer cpu, gpu;
};
Twins twins(const model::ModelConfig& c, DType dt, uint64_t seed, float std) {
  model::Transformer tmp(c);
  tmp.init_random(seed, std);
  std::vector<float> w = tmp.weights_host();
  if (dt == DType::BF16)
    for (float& x : w) x = bf16_to_f32(f32_to_bf16(x));
  Twins t{model::Transformer(c, Device::CPU), model::Transformer(c, Device::CUDA, false, dt)};
  t.cpu.set_weights(w.data());
  t.gpu.set_weights(w.data());
  return t;
}

void expect_same(const std::vector<rollout::Completion>& want, const std::vector<rollout::Completion>& got,
                 double logprob_tol) {
  ASSERT_EQ(want.size(), got.size());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(want[i].prompt_index, got[i].prompt_index);
    EXPECT_EQ(want[i].sample_index, got[i].sample_index);
    EXPECT_EQ(want[i].tokens, got[i].tokens) << "completion " << i;
    EXPECT_EQ(want[i].finish, got[i].finish) << "completion " << i;
    if (want[i].tokens != got[i].tokens) continue;
    for (size_t t = 0; t < want[i].logprobs.size(); ++t)
      worst = std::max(worst, std::abs(double(want[i].logprobs[t]) - got[i].logprobs[t]));
  }
  fmt::print("[ ROLLOUT ] cpu vs gpu-f32 max |logprob diff| {:.2e}\n", worst);
  EXPECT_LT(worst, logprob_tol);
}

// Greedy decoding for 300 tokens with continuous batching (6 sequences through 4 slots): the f32
// GPU engine picks the CPU engine's tokens, every one.
TEST(CudaRollout, GreedyEqualsCpuGreedy) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  Twins m = twins(c, DType::F32, 7, 0.2f);
  const auto reqs = random_requests(3, 2, c.vocab_size, 1);
  rollout::GenerateParams gp;
  gp.sampling.temperature = 0;
  gp.max_new_tokens = 300;
  rollout::Engine ec(m.cpu, {4, 320, 64}), eg(m.gpu, {4, 320, 64});
  const auto want = ec.generate(reqs, gp);
  const auto got = eg.generate(reqs, gp);
  expect_same(want, got, 1e-3);
  EXPECT_GT(eg.stats().graph_captures, 0);
  EXPECT_EQ(eg.stats().generated_tokens, 6 * 300);
}

// Sampling with temperature, top-k and top-p, stop ids and stop strings, more samples than slots:
// the same completions as the CPU engine.
TEST(CudaRollout, SamplingAndStopsEqualCpu) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("tiny", "llama");
  Twins m = twins(c, DType::F32, 9, 0.15f);
  const auto reqs = random_requests(5, 3, c.vocab_size, 2);
  for (auto [temperature, top_k, top_p] : {std::tuple{1.0f, 0, 1.0f}, {0.8f, 40, 0.9f}, {1.2f, 0, 0.7f}}) {
    rollout::GenerateParams gp;
    gp.sampling = {temperature, top_p, top_k, 1234};
    gp.max_new_tokens = 60;
    gp.stop_ids = {7, 11};
    // Tokens as letters; "qq" (two token 16s in a row) ends a sequence.
    gp.token_text = [](int32_t id) { return std::string(1, char('a' + id % 26)); };
    gp.stop_strings = {"qq"};
    rollout::Engine ec(m.cpu, {4, 96, 64}), eg(m.gpu, {4, 96, 64, 5});
    expect_same(ec.generate(reqs, gp), eg.generate(reqs, gp), 1e-3);
  }
}

// The engine reads the model's weights in place: after they change, the next rollout (same engine,
// captured graphs and all) follows the new weights, as a fresh engine does.
TEST(CudaRollout, UsesUpdatedWeightsWithoutCopy) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("tiny", "qwen3");
  model::Transformer m(c, Device::CUDA);
  m.init_random(3, 0.2f);
  const auto reqs = random_requests(4, 2, c.vocab_size, 3);
  rollout::GenerateParams gp;
  gp.sampling = {1.0f, 1.0f, 0, 5};
  gp.max_new_tokens = 40;
  rollout::Engine e(m, {8, 64, 64});
  const auto before = e.generate(reqs, gp);
  m.init_random(4, 0.2f);
  const auto after = e.generate(reqs, gp);
  rollout::Engine fresh(m, {8, 64, 64});
  const auto want = fresh.generate(reqs, gp);
  int changed = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].tokens, want[i].tokens);
    changed += after[i].tokens != before[i].tokens;
  }
  EXPECT_GT(changed, 0);
}

// A KV pool of one sequence on the GPU (blocks of 8 rows): sequences preempt each other between
// bursts of captured decode steps and are recomputed; the f32 GPU engine still gives the CPU
// engine's completions, the CPU engine's pool holding them all. Then the same for multi-turn
// rollouts, whose observations go into a pool that is full.
TEST(CudaRollout, PreemptionEqualsCpu) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  Twins m = twins(c, DType::F32, 6, 0.15f);
  const auto reqs = random_requests(5, 3, c.vocab_size, 6);
  rollout::EngineConfig roomy{4, 96, 64, 5};
  rollout::EngineConfig tight = roomy;
  tight.kv_block_size = 8;
  tight.kv_cache_tokens = 96;
  for (bool turns : {false, true}) {
    rollout::GenerateParams gp;
    gp.sampling = {1.0f, 1.0f, 0, 31};
    gp.max_new_tokens = 70;
    gp.stop_ids = {7};
    gp.token_text = [](int32_t id) { return std::string(1, char('a' + id % 26)); };
    if (turns) {
      gp.turns.max_turns = 2;
      gp.turns.threads = 2;
      gp.turns.ends_turn = [](int64_t, int64_t, const std::string& text) { return text.size() >= 11; };
      gp.turns.respond = [](const rollout::Turn& t) {
        return rollout::Observation{{int32_t(200 + t.sample), 201, 202}, false};
      };
    }
    rollout::Engine ec(m.cpu, roomy), eg(m.gpu, tight);
    EXPECT_EQ(eg.stats().kv_blocks, 12);
    const auto want = ec.generate(reqs, gp);
    const auto got = eg.generate(reqs, gp);
    expect_same(want, got, 1e-3);
    for (size_t i = 0; i < want.size() && i < got.size(); ++i)
      EXPECT_EQ(want[i].from_model, got[i].from_model) << "completion " << i;
    EXPECT_GT(eg.stats().preemptions, 0) << (turns ? "multi-turn" : "single-turn");
    EXPECT_LE(eg.stats().kv_blocks_peak, 12);
    EXPECT_EQ(ec.stats().preemptions, 0);
  }
}

// The KV cache pool's memory goes back to the device between generate calls (the training step's,
// in GRPO) and comes back at the same address: the captured decode steps replay as they were and
// the completions are the same.
TEST(CudaRollout, KvPoolGivenBackBetweenCallsKeepsTheGraphs) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("10m", "qwen2");
  model::Transformer m(c, Device::CUDA);
  m.init_random(12, 0.05f);
  const auto reqs = random_requests(8, 4, c.vocab_size, 9);
  rollout::GenerateParams gp;
  gp.sampling = {1.0f, 1.0f, 0, 3};
  gp.max_new_tokens = 64;
  rollout::Engine e(m, {32, 128, 4096});
  const auto first = e.generate(reqs, gp);
  const int64_t captures = e.stats().graph_captures;
  const size_t free_before = cuda::memory_info().free;
  e.release_kv_memory();
  const size_t pool = size_t(e.stats().kv_blocks * e.stats().kv_block_size) *
                      size_t(model::kv_bytes_per_token(c, DType::BF16));
  EXPECT_GE(cuda::memory_info().free, free_before + pool * 9 / 10) << "pool " << pool << " bytes";
  const auto again = e.generate(reqs, gp);
  EXPECT_EQ(e.stats().graph_captures, captures);  // the same graphs, replayed over the same addresses
  ASSERT_EQ(first.size(), again.size());
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(first[i].tokens, again[i].tokens) << "completion " << i;
}

// The prefill scratch goes back with the pool: it grows to a call's longest forward (a preempted
// sequence's recompute prefills its whole prefix at once), and a training step must not find it
// still held. After a call with 1,500-token prompts and one with 8-token prompts (the same number
// of samples), the device holds the same bytes once the memory is given back.
TEST(CudaRollout, PrefillScratchGivenBackWithThePool) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("10m", "qwen2");
  model::Transformer m(c, Device::CUDA);
  m.init_random(12, 0.05f);
  rollout::GenerateParams gp;
  gp.sampling = {1.0f, 1.0f, 0, 3};
  gp.max_new_tokens = 16;
  rollout::EngineConfig ec;
  ec.max_batch = 8;
  ec.max_seq_len = 1600;
  ec.prefill_tokens = 4096;
  rollout::Engine e(m, ec);
  auto held_after = [&](int prompt_len) {
    std::vector<rollout::Request> reqs = random_requests(4, 2, c.vocab_size, 5);
    for (rollout::Request& r : reqs) r.prompt.resize(size_t(prompt_len), 3);
    e.generate(reqs, gp);
    e.release_kv_memory();
    return memory_use(Device::CUDA).now;
  };
  const size_t short_first = held_after(8), after_long = held_after(1500), short_again = held_after(8);
  fmt::print("[ ROLLOUT ] held after giving the memory back: {} bytes (8-token prompts), {} (1,500), {} (8)\n",
             short_first, after_long, short_again);
  EXPECT_EQ(after_long, short_first);
  EXPECT_EQ(short_again, short_first);
}

// Rollout log-probs against the trainer's log-probs of the same completions, both bf16 on the GPU
// (the importance ratio old/new of GRPO's first update is exactly 1 only if these agree).
TEST(CudaRollout, SampledLogprobsMatchTraining) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("10m", "qwen2");
  model::Transformer m(c, Device::CUDA);
  m.init_random(11, 0.05f);
  const auto reqs = random_requests(16, 4, c.vocab_size, 4, 20);
  rollout::GenerateParams gp;
  gp.sampling = {1.0f, 1.0f, 0, 77};
  gp.max_new_tokens = 200;
  rollout::Engine e(m, {32, 256, 4096});
  const auto outs = e.generate(reqs, gp);
  std::vector<std::vector<int32_t>> seqs;
  for (const auto& o : outs) {
    seqs.push_back(reqs[size_t(o.prompt_index)].prompt);
    seqs.back().insert(seqs.back().end(), o.tokens.begin(), o.tokens.end());
  }
  const model::Batch b = model::pack_sequences(seqs);
  model::TrainState st;
  st.forward(m, b, 1.0f);
  const std::vector<float> lp = st.logp_host();
  double sum = 0, worst = 0;
  int64_t n = 0;
  for (size_t i = 0; i < outs.size(); ++i) {
    const int64_t plen = int64_t(reqs[size_t(outs[i].prompt_index)].prompt.size());
    for (size_t t = 0; t < outs[i].tokens.size(); ++t) {
      // logp of token t of the completion sits at the row of the token before it.
      const double d = std::abs(double(outs[i].logprobs[t]) - lp[size_t(b.cu_seqlens[i] + plen - 1 + int64_t(t))]);
      sum += d;
      worst = std::max(worst, d);
      ++n;
    }
  }
  fmt::print("[ ROLLOUT ] bf16 rollout vs training logprob |diff| over {} tokens: mean {:.2e} max {:.2e}\n", n,
             sum / double(n), worst);
  // The trainer against itself with the sequences packed in the opposite order (measured: exactly
  // 0, so the difference above is all the decode kernels' rounding).
  std::vector<std::vector<int32_t>> reversed(seqs.rbegin(), seqs.rend());
  const model::Batch br = model::pack_sequences(reversed);
  model::TrainState st2;
  st2.forward(m, br, 1.0f);
  const std::vector<float> lp2 = st2.logp_host();
  double floor_sum = 0, floor_max = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const size_t j = seqs.size() - 1 - i;  // sequence i sits at position j of the reversed batch
    const int64_t plen = int64_t(reqs[size_t(outs[i].prompt_index)].prompt.size());
    for (size_t t = 0; t < outs[i].tokens.size(); ++t) {
      const double d = std::abs(double(lp[size_t(b.cu_seqlens[i] + plen - 1 + int64_t(t))]) -
                                lp2[size_t(br.cu_seqlens[j] + plen - 1 + int64_t(t))]);
      floor_sum += d;
      floor_max = std::max(floor_max, d);
    }
  }
  fmt::print("[ ROLLOUT ] bf16 training vs training (other packing) logprob |diff|: mean {:.2e} max {:.2e}\n",
             floor_sum / double(n), floor_max);
  // Measured on the H100: mean 1.0e-2, max 7.4e-2.
  EXPECT_LT(sum / double(n), 2e-2);
  EXPECT_LT(worst, 0.25);
}

}  // namespace

// Multi-turn rollouts (rollout/turns.h): a turn ends after 5 model tokens, an observation of 3
// tokens comes back from a worker, and the sequence resumes on its cache. The f32 GPU engine gives
// the CPU engine's trajectories: the same tokens, masks, turns and log-probs, sampled or greedy,
// with more sequences than slots and decode steps run past the turn's end before the host looks.
TEST(CudaRollout, MultiTurnEqualsCpu) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  Twins m = twins(c, DType::F32, 5, 0.15f);
  const auto reqs = random_requests(4, 3, c.vocab_size, 3);
  for (float temperature : {0.0f, 1.0f}) {
    rollout::GenerateParams gp;
    gp.sampling = {temperature, 1.0f, 0, 77};
    gp.max_new_tokens = 48;
    gp.stop_ids = {7};
    gp.token_text = [](int32_t id) { return std::string(1, char('a' + id % 26)); };
    gp.turns.max_turns = 3;
    gp.turns.threads = 3;
    gp.turns.ends_turn = [](int64_t, int64_t, const std::string& text) { return text.size() >= 5; };
    gp.turns.respond = [](const rollout::Turn& t) {
      return rollout::Observation{{int32_t(200 + t.sample), 201, 202}, false};
    };
    rollout::Engine ec(m.cpu, {5, 80, 64}), eg(m.gpu, {5, 80, 64, 4});
    const auto want = ec.generate(reqs, gp);
    const auto got = eg.generate(reqs, gp);
    expect_same(want, got, 1e-3);
    int turns = 0;
    for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
      EXPECT_EQ(want[i].from_model, got[i].from_model) << "completion " << i;
      EXPECT_EQ(want[i].turns, got[i].turns) << "completion " << i;
      turns += got[i].turns;
    }
    EXPECT_GT(turns, 12);
    EXPECT_EQ(eg.stats().turns, ec.stats().turns);
  }
}

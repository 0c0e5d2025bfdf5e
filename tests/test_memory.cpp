// Memory: the memory model (model/memory_model.h) against what the code allocates, the start-up
// check (run/memory_preflight.h) with an injected figure of free memory, and the phases of a GRPO
// step each starting from the persistent state (the allocator's own count, tensor/device_memory.h).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "base/error.h"
#include "base/fs.h"
#include "grpo_test_util.h"
#include "model/kv_cache.h"
#include "model/memory_model.h"
#include "model/train_state.h"
#include "run/memory_preflight.h"
#include "tensor/device_memory.h"
#include "test_util.h"

using namespace r1;
using model::ActivationMode;

namespace {

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no r1::Error thrown>";
}

constexpr int64_t GiB = int64_t(1) << 30;

// A full-parameter GRPO run of Qwen2.5-7B on one GPU: 512-token prompts, 8k-token completions, 16
// rollout slots, micro-batches of one sequence.
model::MemorySettings grpo_7b() {
  model::MemorySettings s;
  s.device = Device::CUDA;
  s.reference = true;
  s.sequence_tokens = 512 + 8192;
  s.train_tokens = s.sequence_tokens;
  s.kv_tokens = 16 * s.sequence_tokens;
  s.prefill_tokens = 8192;
  return s;
}

}  // namespace

// The training forward's arena holds exactly what the model says is saved (the CPU keeps every
// activation), to alignment; the KV cache is exactly kv_bytes_per_token a row.
TEST(MemoryModel, PredictsTheTrainingArenaAndTheKvCache) {
  model::Transformer m = test::byte_model(1, "64", "160", "3");
  const model::ModelConfig& c = m.config();
  const int64_t T = 300;
  std::vector<int32_t> ids(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) ids[size_t(i)] = int32_t(i * 7 % 250);
  model::TrainState st;
  st.forward(m, model::pack_sequences({ids}));
  st.backward(m, std::vector<float>(size_t(T), -1.0f / T));
  model::MemorySettings s;
  s.device = Device::CPU;
  s.activations = ActivationMode::SaveAll;
  s.train_tokens = T;
  const model::MemoryEstimate e = model::estimate_memory(c, s);
  const int64_t saved = e.update - T * model::backward_bytes_per_token(c, DType::F32, ActivationMode::SaveAll);
  const double measured = double(st.activation_bytes());
  EXPECT_NEAR(double(saved), measured, 0.03 * measured) << "predicted " << saved << ", the arena peaked at " << measured;
  model::KVCache cache(c, 3, 50);
  size_t bytes = 0;
  for (size_t l = 0; l < cache.k.size(); ++l) bytes += cache.k[l].size() + cache.v[l].size();
  EXPECT_EQ(int64_t(bytes), 3 * 50 * model::kv_bytes_per_token(c, DType::F32));
  // Persistent state of a trainable CPU model: f32 weights (the master copy), gradients, moments.
  EXPECT_EQ(e.weights, 4 * c.num_parameters());
  EXPECT_EQ(e.grads, 4 * c.num_parameters());
  EXPECT_EQ(e.moments, 8 * c.num_parameters());
  EXPECT_EQ(e.master, 0);
}

// The figures: one 8.7k-token Qwen2.5-7B sequence keeps ~26 GiB of activations with only the
// norms and SwiGLU recomputed; checkpointing layers keeps each layer's input only. On the GPU the
// persistent state is 18 B/param plus 2 for the reference, and 6 + 2 with the optimizer offloaded.
TEST(MemoryModel, Qwen7bFigures) {
  const model::ModelConfig c = model::preset_config("qwen2.5-7b");
  const int64_t N = c.num_parameters(), T = 8704;
  const double saved = double(c.num_hidden_layers * T *
                              model::saved_bytes_per_token_layer(c, DType::BF16, ActivationMode::RecomputeCheap));
  EXPECT_NEAR(saved / double(GiB), 26.0, 2.0);
  EXPECT_EQ(model::saved_bytes_per_token_layer(c, DType::BF16, ActivationMode::CheckpointLayers), 2 * 3584);
  model::MemorySettings s = grpo_7b();
  const model::MemoryEstimate on = model::estimate_memory(c, s);
  EXPECT_EQ(on.persistent(), 20 * N);
  s.offload = true;
  const model::MemoryEstimate off = model::estimate_memory(c, s);
  EXPECT_EQ(off.persistent(), 8 * N);
  EXPECT_EQ(off.host_state, 12 * N);
  // ZeRO-1 over 4 ranks splits the moments.
  s.offload = false;
  s.world = 4;
  s.zero1 = true;
  EXPECT_EQ(model::estimate_memory(c, s).moments, 2 * N);
}

// auto: the optimizer goes to the CPU when the run would not fit with it on the device.
TEST(MemoryPreflight, AutoOffloadsWhenTheStateDoesNotFit) {
  const model::ModelConfig c = model::preset_config("qwen2.5-7b");
  const model::MemorySettings s = grpo_7b();
  EXPECT_TRUE(run::plan_memory(c, s, run::Offload::Auto, 139 * GiB, "").offload);
  EXPECT_FALSE(run::plan_memory(c, s, run::Offload::Auto, 1024 * GiB, "").offload);
  EXPECT_TRUE(run::plan_memory(c, s, run::Offload::On, 1024 * GiB, "").offload);
  // off is honoured (a warning says it may not fit, and what would).
  EXPECT_FALSE(run::plan_memory(c, s, run::Offload::Off, 139 * GiB, "").offload);
  // Small models stay on the device; the CPU is not checked.
  const model::ModelConfig small = model::preset_config("qwen2.5-0.5b");
  EXPECT_FALSE(run::plan_memory(small, s, run::Offload::Auto, 139 * GiB, "").offload);
  EXPECT_FALSE(run::plan_memory(c, s, run::Offload::Auto, -1, "").offload);
  // LoRA keeps its small state on the device.
  model::MemorySettings lora = s;
  lora.lora_params = 160'000'000;
  EXPECT_FALSE(run::plan_memory(c, lora, run::Offload::Auto, 60 * GiB, "").offload);
  EXPECT_NE(error_of([&] { run::plan_memory(c, lora, run::Offload::On, 60 * GiB, ""); })
                .find("recipe key 'train.optimizer_offload' is on, but the run trains LoRA adapters"),
            std::string::npos);
}

// A model that cannot fit even with every switch on fails before any compute, with both figures.
TEST(MemoryPreflight, FailsNamingNeededAndAvailableBytes) {
  const model::ModelConfig c = model::preset_config("qwen2.5-32b");
  const std::string e = error_of([&] { run::plan_memory(c, grpo_7b(), run::Offload::Auto, 80 * GiB, ""); });
  std::printf("[ MEMORY ] %s\n", e.c_str());
  EXPECT_NE(e.find("out of device memory before starting: this model needs at least "), std::string::npos) << e;
  EXPECT_NE(e.find("and the device has 80.00 GiB free"), std::string::npos) << e;
  // The figure is the estimate with the optimizer offloaded and one sequence at a time: 32B's bf16
  // weights, gradients and reference alone are 10 bytes a parameter.
  model::MemorySettings least = grpo_7b();
  least.offload = true;
  least.kv_tokens = least.sequence_tokens;
  least.prefill_tokens = 8192;
  EXPECT_NE(e.find(model::gib(model::estimate_memory(c, least).peak())), std::string::npos) << e;
  EXPECT_GT(model::estimate_memory(c, least).peak(), 10 * c.num_parameters());
}

// Each phase of a GRPO step starts from the persistent state: the previous phase's arenas (the
// training activations before the rollouts, the reference pass's before the update) and the
// rollout's KV cache are freed, so the bytes held at every phase start are those held once the
// trainer was built, step after step.
TEST(PhaseMemory, GrpoPhasesStartFromThePersistentState) {
  text::ByteCodec codec;
  model::Transformer m = test::byte_model(3);
  train::GrpoConfig gc = test::small_grpo(4, 4, 10);
  gc.loss.kl_coef = 0.1;  // a reference model and its pass
  test::EvenByteReward reward;
  train::GrpoTrainer trainer(m, codec, reward, test::letter_problems(16), test::question, gc, 3);
  const double persistent = double(memory_use(Device::CPU).now);
  for (int step = 0; step < 3; ++step) {
    const train::StepStats s = trainer.step(step);
    EXPECT_EQ(s.memory_held, persistent) << "step " << step;
    EXPECT_GT(s.memory_rollout, persistent);  // the KV cache
    EXPECT_GT(s.memory_reference, persistent);
    EXPECT_GT(s.memory_update, s.memory_reference);  // saved activations and gradients of activations
    EXPECT_GT(s.memory_host, 0.0);
  }
  EXPECT_GT(double(memory_use(Device::CPU).now), persistent);  // the update's arenas, until the next step
}

// A TrainState's release() gives its arenas back to the allocator.
TEST(PhaseMemory, TrainStateReleaseFreesItsArenas) {
  model::Transformer m = test::byte_model(2);
  const size_t before = memory_use(Device::CPU).now;
  model::TrainState st;
  st.forward(m, model::pack_sequences({{1, 2, 3, 4, 5, 6, 7, 8}}));
  st.backward(m, std::vector<float>(8, 0.1f));
  EXPECT_GT(memory_use(Device::CPU).now, before + st.activation_bytes() / 2);
  st.release();
  EXPECT_EQ(memory_use(Device::CPU).now, before);
}

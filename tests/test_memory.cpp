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
#include "model/params.h"
#include "model/weight_units.h"
#include "model/train_state.h"
#include "run/memory_preflight.h"
#include "tensor/device_memory.h"
#include "test_util.h"

using namespace r1;

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

// A full-parameter GRPO run of Qwen2.5-7B on one GPU: 512-token prompts, 8k-token completions,
// micro-batches of one sequence, at least one sequence in the paged KV pool.
model::MemorySettings grpo_7b() {
  model::MemorySettings s;
  s.device = Device::CUDA;
  s.reference = true;
  s.sequence_tokens = 512 + 8192;
  s.train_tokens = s.sequence_tokens;
  s.kv_tokens = s.sequence_tokens;
  s.prefill_tokens = 8192;
  return s;
}


// The arenas' peak of one saving (not checkpointed) forward and backward of `ids` on the CPU.
double saving_step_peak(model::Transformer& m, const std::vector<int32_t>& ids) {
  const int64_t T = int64_t(ids.size());
  model::TrainState st;
  st.checkpointing = model::Checkpointing::Off;
  st.forward(m, model::pack_sequences({ids}));
  st.backward(m, std::vector<float>(size_t(T), -1.0f / T));
  return double(st.peak_bytes());
}

// What the memory model is told about that step.
model::MemorySettings cpu_update_settings(int64_t T) {
  model::MemorySettings s;
  s.device = Device::CPU;
  s.recompute = false;
  s.train_tokens = T;
  return s;
}

}  // namespace

// The update phase on the CPU: the training arenas (activation_memory.h's count) and one layer's
// backward temporaries, against what a forward and backward held at their peak; the persistent
// state of a trainable CPU model (its f32 weights are the master copy).
TEST(MemoryModel, PredictsTheUpdatePhaseOnTheCpu) {
  model::Transformer m = test::byte_model(1, "64", "160", "3");
  const model::ModelConfig& c = m.config();
  const int64_t T = 300;
  std::vector<int32_t> ids(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) ids[size_t(i)] = int32_t(i * 7 % 250);
  const double measured = saving_step_peak(m, ids);
  model::MemorySettings s = cpu_update_settings(T);
  const model::MemoryEstimate e = model::estimate_memory(c, s);
  std::printf("[ MEMORY ] update phase: predicted %lld bytes, the arenas peaked at %.0f\n",
              static_cast<long long>(e.update), measured);
  EXPECT_GE(double(e.update), measured);
  EXPECT_LE(double(e.update), 1.15 * measured);
  EXPECT_EQ(e.weights, 4 * c.num_parameters());
  EXPECT_EQ(e.grads, 4 * c.num_parameters());
  EXPECT_EQ(e.moments, 8 * c.num_parameters());
  EXPECT_EQ(e.master, 0);
}

// On the GPU the persistent state is 18 B/param plus 2 for the reference, and 6 + 2 with the
// optimizer offloaded (12 B/param of host memory); ZeRO-1 splits the moments.
TEST(MemoryModel, PersistentBytesPerParameter) {
  const model::ModelConfig c = model::preset_config("qwen2.5-7b");
  const int64_t N = c.num_parameters();
  model::MemorySettings s = grpo_7b();
  EXPECT_EQ(model::estimate_memory(c, s).persistent(), 20 * N);
  s.offload = true;
  const model::MemoryEstimate off = model::estimate_memory(c, s);
  EXPECT_EQ(off.persistent(), 8 * N);
  EXPECT_EQ(off.host_state, 12 * N);
  s.offload = false;
  s.world = 4;
  s.shard = 1;
  EXPECT_EQ(model::estimate_memory(c, s).moments, 2 * N);
  // One 8,704-token sequence saves ~24 GiB with the norms and SwiGLU recomputed, ~4 GiB checkpointed.
  model::MemorySettings one = grpo_7b();
  const double saving = double(model::estimate_memory(c, one).update) / double(GiB);
  one.checkpoint = true;
  const double ckpt = double(model::estimate_memory(c, one).update) / double(GiB);
  EXPECT_GT(saving, 24.0);
  EXPECT_LT(ckpt, 6.0);
}

// Sharding levels per rank (parallel.shard; the CPU terms are checked against measured runs in
// DistShard.*): Qwen2.5-32B, GRPO at 512 + 16,384 tokens on 8 ranks, checkpointed, no KL reference
// (DAPO's recipe), a KV pool of 8 full-length sequences. none holds 18 B/param (576 GiB),
// optimizer and gradients still keep the whole bf16 weights and fp32 master (and gradients keeps the
// whole fp32 gradients while the backwards run), full 18/8 B/param and one gather buffer, but
// gathers the whole bf16 weights for the rollouts: on a 141 GB H200 only full with the optimizer
// offloaded to host memory (its master and moments, 12/8 B/param) fits. (full runs on CPU ranks
// today; these are the design's GPU figures.)
TEST(MemoryModel, ShardingLevelsPerRankAt32B) {
  const model::ModelConfig c = model::preset_config("qwen2.5-32b");
  const int64_t N = c.num_parameters();
  model::MemorySettings s;
  s.device = Device::CUDA;
  s.world = 8;
  s.checkpoint = true;
  s.sequence_tokens = 512 + 16384;
  s.train_tokens = s.sequence_tokens;
  s.kv_tokens = 8 * s.sequence_tokens;
  s.prefill_tokens = 8192;
  const char* names[] = {"none", "optimizer", "gradients", "full"};
  std::vector<model::MemoryEstimate> e;
  for (int level = 0; level <= 3; ++level) {
    s.shard = level;
    e.push_back(model::estimate_memory(c, s));
    std::printf("[ MEMORY ] qwen2.5-32b, 8 ranks, %s: %s\n", names[level], model::describe(e.back()).c_str());
  }
  // The largest unit (the gather buffer) is the embedding or the head: 2.4% of Qwen2.5-32B's
  // weights, 7.2% of Qwen2.5-7B's (docs/DISTRIBUTED.md).
  EXPECT_NEAR(double(model::largest_unit(model::make_plan(c), c)) / double(model::make_plan(c).total), 0.024, 0.001);
  const model::ModelConfig c7 = model::preset_config("qwen2.5-7b");
  EXPECT_NEAR(double(model::largest_unit(model::make_plan(c7), c7)) / double(model::make_plan(c7).total), 0.072, 0.001);
  s.offload = true;
  const model::MemoryEstimate off = model::estimate_memory(c, s);
  std::printf("[ MEMORY ] qwen2.5-32b, 8 ranks, full, optimizer offloaded: %s\n", model::describe(off).c_str());
  EXPECT_EQ(e[0].persistent(), 18 * N);
  // full: 18/8 B/param and two of the largest unit's bf16 gather buffers (the current unit's and the
  // prefetched next one's: the embedding, 4% of the shard).
  EXPECT_NEAR(double(e[3].persistent()), 18.0 * double(N) / 8, 0.06 * 18.0 * double(N) / 8);
  // Exactly: the largest rank's bf16 shard and two unit buffers on a GPU; one (f32) on the CPU, which
  // does not prefetch.
  const int64_t Nw = model::shard_counts(N, 8).back(), U = model::largest_unit(model::make_plan(c), c);
  EXPECT_EQ(e[3].weights, (Nw + 2 * U) * 2);
  model::MemorySettings cpu = s;
  cpu.device = Device::CPU;
  cpu.shard = 3;
  EXPECT_EQ(model::estimate_memory(c, cpu).weights, (Nw + U) * 4);
  for (int level = 1; level <= 3; ++level) EXPECT_LT(e[size_t(level)].persistent(), e[size_t(level) - 1].persistent());
  const int64_t h200 = int64_t(139) * GiB;
  EXPECT_GT(e[2].peak(), h200);
  EXPECT_GT(e[3].peak(), h200);
  EXPECT_LT(off.peak(), h200);
  EXPECT_NEAR(double(off.host_state), 12.0 * double(N) / 8, 0.001 * double(N));
}

// Mixture-of-experts and latent-attention layers: the update phase bounds what a forward and
// backward held (the experts' rows follow the routing), and the rollout phase's pool is the KV
// cache's own bytes per token (MLA caches its compressed latent: kv_cache.h).
class MemoryModelMoe : public ::testing::TestWithParam<std::string> {};

TEST_P(MemoryModelMoe, PredictsTheUpdatePhaseAndThePoolOnTheCpu) {
  model::Transformer m(model::preset_config(GetParam()));
  m.init_random(5, 0.2f);
  const model::ModelConfig& c = m.config();
  const int64_t T = 200;
  std::vector<int32_t> ids(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) ids[size_t(i)] = int32_t(i * 13 % c.vocab_size);
  const double measured = saving_step_peak(m, ids);
  model::MemorySettings s = cpu_update_settings(T);
  s.kv_tokens = 64;
  const model::MemoryEstimate e = model::estimate_memory(c, s);
  std::printf("[ MEMORY ] %s update phase: predicted %lld bytes, the arenas peaked at %.0f\n", GetParam().c_str(),
              static_cast<long long>(e.update), measured);
  EXPECT_GE(double(e.update), measured);
  EXPECT_LE(double(e.update), 1.15 * measured);
  // The pool: 4 blocks of 16 tokens; the block table (2 rows of 4 blocks, i32) beside it.
  const size_t before = memory_use(Device::CPU).now;
  const model::KVCache cache(c, model::KVLayout{4, 16, 2, 4}, Device::CPU, DType::F32);
  const int64_t pool = int64_t(memory_use(Device::CPU).now - before) - 2 * 4 * 4;
  EXPECT_NEAR(double(pool), double(e.rollout), 256.0);
  if (c.is_mla()) {
    // The latent cache: the normed latent and the rope key, one row per token and layer.
    EXPECT_EQ(model::kv_bytes_per_token(c, DType::F32),
              int64_t(c.num_hidden_layers) * (c.mla.kv_lora_rank + c.mla.qk_rope_head_dim) * 4);
  }
}

INSTANTIATE_TEST_SUITE_P(Model, MemoryModelMoe, ::testing::Values("tiny-qwen3-moe", "tiny-deepseek-v3"));

// The KV bytes per token docs/MEMORY.md quotes for the real shapes (bf16): Moonlight-16B-A3B's
// latent cache is 27 layers x (512 + 64) x 2 B, a ninth of the 16 heads x (192 + 128) full keys and
// values it would cache without it, and a third of Qwen3-30B-A3B's GQA cache (48 layers x 4 kv heads
// x 2 x 128).
TEST(MemoryModel, LatentCacheBytesPerTokenOfTheRealShapes) {
  const model::ModelConfig moon = model::preset_config("moonlight-16b-a3b");
  EXPECT_EQ(model::kv_bytes_per_token(moon, DType::BF16), 31104);
  EXPECT_EQ(int64_t(moon.num_hidden_layers) * moon.num_attention_heads *
                (moon.mla.qk_head_dim() + moon.mla.v_head_dim) * 2,
            276480);
  EXPECT_EQ(model::kv_bytes_per_token(model::preset_config("qwen3-30b-a3b"), DType::BF16), 98304);
}

// The rollouts' paged pool as a share of free memory: the preflight sizes it as the engine will,
// kv_memory_fraction of what the persistent state leaves free (more with the optimizer
// offloaded), capped at what rollout_batch sequences can use.
TEST(MemoryPreflight, KvPoolIsTheShareOfWhatTheStateLeavesFree) {
  const model::ModelConfig c = model::preset_config("qwen2.5-7b");
  model::MemorySettings s = grpo_7b();
  s.kv_tokens = 0;
  s.kv_memory_fraction = 0.5;
  s.kv_tokens_max = 1024 * s.sequence_tokens;
  const int64_t per_token = model::kv_bytes_per_token(c, DType::BF16), available = 400 * GiB;
  for (run::Offload mode : {run::Offload::Off, run::Offload::On}) {
    const run::MemoryPlan p = run::plan_memory(c, s, mode, available, "");
    const int64_t free = available - p.estimate.persistent() - p.estimate.overhead;
    // The rollout's largest forward beside the pool: a recompute of a whole sequence (8,704 tokens),
    // longer than a prefill's 8,192.
    const int64_t pool = (p.estimate.rollout - s.sequence_tokens * model::inference_bytes_per_token(c, DType::BF16)) / per_token;
    EXPECT_EQ(pool % 16, 0);
    EXPECT_LE(pool * per_token, free / 2);
    EXPECT_GT((pool + 16) * per_token, free / 2);
    EXPECT_GE(pool, s.sequence_tokens);
  }
  EXPECT_GT(run::plan_memory(c, s, run::Offload::On, available, "").estimate.rollout,
            run::plan_memory(c, s, run::Offload::Off, available, "").estimate.rollout);
  // The cap: a small model's pool stops at rollout_batch sequences.
  s.kv_tokens_max = 4 * s.sequence_tokens;
  const model::ModelConfig small = model::preset_config("qwen2.5-0.5b");
  const run::MemoryPlan p = run::plan_memory(small, s, run::Offload::Off, available, "");
  EXPECT_EQ(p.estimate.rollout, s.kv_tokens_max * model::kv_bytes_per_token(small, DType::BF16) +
                                    s.sequence_tokens * model::inference_bytes_per_token(small, DType::BF16));
  // With sequences shorter than a prefill forward, the prefill is the largest.
  model::MemorySettings short_seqs = s;
  short_seqs.sequence_tokens = 1024;
  short_seqs.kv_tokens_max = 4 * short_seqs.sequence_tokens;
  EXPECT_EQ(run::plan_memory(small, short_seqs, run::Offload::Off, available, "").estimate.rollout,
            short_seqs.kv_tokens_max * model::kv_bytes_per_token(small, DType::BF16) +
                short_seqs.prefill_tokens * model::inference_bytes_per_token(small, DType::BF16));
}

// A pool with no room for one sequence fails before any compute, naming the key and the bytes a
// sequence needs and the device has; auto offload first tries to make room for it.
TEST(MemoryPreflight, KvPoolWithNoRoomForOneSequenceFails) {
  const model::ModelConfig c = model::preset_config("qwen2.5-7b");
  model::MemorySettings s = grpo_7b();
  s.kv_tokens = 0;
  s.kv_memory_fraction = 0.001;
  const std::string e = error_of([&] { run::plan_memory(c, s, run::Offload::Auto, 139 * GiB, ""); });
  std::printf("[ MEMORY ] %s\n", e.c_str());
  EXPECT_NE(e.find("recipe key 'rollout.kv_memory_fraction' = 0.001"), std::string::npos) << e;
  const int64_t one = s.sequence_tokens * model::kv_bytes_per_token(c, DType::BF16);
  EXPECT_NE(e.find("which needs " + model::gib(one)), std::string::npos) << e;
  EXPECT_NE(e.find("139.00 GiB free"), std::string::npos) << e;
  // 1%: with the optimizer state on the device (20 B/param) nothing is left for the pool; auto
  // offloads it, and 1% of the room is then enough for one 8.7k-token sequence.
  s.kv_memory_fraction = 0.01;
  EXPECT_NE(error_of([&] { run::plan_memory(c, s, run::Offload::Off, 139 * GiB, ""); }).find("kv_memory_fraction"),
            std::string::npos);
  EXPECT_TRUE(run::plan_memory(c, s, run::Offload::Auto, 139 * GiB, "").offload);
  // A fixed pool smaller than one sequence names its key.
  s.kv_memory_fraction = 0;
  s.kv_tokens = 4096;
  const std::string fixed = error_of([&] { run::plan_memory(c, s, run::Offload::Auto, 139 * GiB, ""); });
  EXPECT_NE(fixed.find("recipe key 'rollout.kv_cache_tokens' gives the rollouts 4096 tokens"), std::string::npos)
      << fixed;
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

// auto keeps the optimizer on the device while the run fits; when that leaves the rollouts' pool
// under what the batch can use, the plan says how large offloading would make it (the 2026-12-04
// device run: the Qwen2.5-7B body with a byte vocabulary, 6.53 B parameters, 128 x 8.7k at
// kv_memory_fraction 0.7 had a pool of 231k tokens, 197 preemptions in each step's rollout).
TEST(MemoryPreflight, AutoSaysHowLargeOffloadingWouldMakeASmallPool) {
  model::ModelConfig c = model::preset_config("qwen2.5-7b");
  model::override_config(c, "vocab_size", "257");
  model::MemorySettings s = grpo_7b();
  s.kv_tokens = 0;
  s.kv_memory_fraction = 0.7;
  s.kv_tokens_max = 128 * s.sequence_tokens;
  s.checkpoint_auto = true;
  const run::MemoryPlan p = run::plan_memory(c, s, run::Offload::Auto, 139 * GiB, "");
  EXPECT_FALSE(p.offload);
  const int64_t per_token = model::kv_bytes_per_token(c, DType::BF16);
  const int64_t pool = (p.estimate.rollout - s.sequence_tokens * model::inference_bytes_per_token(c, DType::BF16)) / per_token;
  EXPECT_LT(pool, 32 * s.sequence_tokens);
  EXPECT_GE(p.offload_pool_tokens, 2 * pool);
  EXPECT_GT(p.offload_pool_tokens, 100 * s.sequence_tokens);  // about 5x: most of the batch in flight
  // No hint when the choice is the user's, or when the pool already holds the batch.
  EXPECT_EQ(run::plan_memory(c, s, run::Offload::Off, 139 * GiB, "").offload_pool_tokens, 0);
  s.kv_tokens_max = 8 * s.sequence_tokens;
  EXPECT_EQ(run::plan_memory(c, s, run::Offload::Auto, 139 * GiB, "").offload_pool_tokens, 0);
}

// The offloaded optimizer's pinned host state is checked too: Qwen2.5-14B at 512 + 4096 tokens fits
// the H200 only offloaded, and then needs 12 B/param of host memory (165 GiB), more than the one-GPU
// machine's 125 GiB: an error before any compute naming both, not a failed pinned allocation later.
// 7B (85 GiB) fits there; 14B fits a host with 256 GiB.
TEST(MemoryPreflight, OffloadedStateMustFitTheHost) {
  const model::ModelConfig c14 = model::preset_config("qwen2.5-14b");
  model::MemorySettings s = grpo_7b();
  s.sequence_tokens = s.train_tokens = s.kv_tokens = 512 + 4096;
  const int64_t want = 12 * model::total_params(model::param_specs(c14));
  const std::string e = error_of([&] { run::plan_memory(c14, s, run::Offload::Auto, 139 * GiB, "", 125 * GiB); });
  std::printf("[ MEMORY ] %s\n", e.c_str());
  EXPECT_NE(e.find("out of host memory before starting"), std::string::npos) << e;
  EXPECT_NE(e.find("keeps " + model::gib(want)), std::string::npos) << e;
  EXPECT_NE(e.find("has 125.00 GiB available"), std::string::npos) << e;
  EXPECT_TRUE(run::plan_memory(c14, s, run::Offload::Auto, 139 * GiB, "", 256 * GiB).offload);
  EXPECT_TRUE(run::plan_memory(c14, s, run::Offload::Auto, 139 * GiB, "").offload);  // host not checked
  const model::ModelConfig c7 = model::preset_config("qwen2.5-7b");
  EXPECT_TRUE(run::plan_memory(c7, grpo_7b(), run::Offload::Auto, 139 * GiB, "", 125 * GiB).offload);
  // On the device, nothing is asked of the host.
  EXPECT_FALSE(run::plan_memory(c7, grpo_7b(), run::Offload::Off, 1024 * GiB, "", 1 * GiB).offload);
}

// A model that cannot fit even with every switch on fails before any compute, with both figures.
TEST(MemoryPreflight, FailsNamingNeededAndAvailableBytes) {
  const model::ModelConfig c = model::preset_config("qwen2.5-32b");
  const std::string e = error_of([&] { run::plan_memory(c, grpo_7b(), run::Offload::Auto, 80 * GiB, ""); });
  std::printf("[ MEMORY ] %s\n", e.c_str());
  EXPECT_NE(e.find("out of device memory before starting: this model needs at least "), std::string::npos) << e;
  EXPECT_NE(e.find("and the device has 80.00 GiB free"), std::string::npos) << e;
  // The figure is the estimate with the optimizer offloaded and one sequence at a time: 32B's bf16
  // weights, gradients and reference alone are 8 bytes a parameter (2 + 4 + 2).
  model::MemorySettings least = grpo_7b();
  least.offload = true;
  least.checkpoint = true;
  least.kv_tokens = least.sequence_tokens;
  least.prefill_tokens = 8192;
  EXPECT_NE(e.find(model::gib(model::estimate_memory(c, least).peak())), std::string::npos) << e;
  EXPECT_EQ(model::estimate_memory(c, least).persistent(), 8 * c.num_parameters());
  EXPECT_GT(model::estimate_memory(c, least).peak(), 8 * c.num_parameters());
}

// Each phase of a GRPO step starts from the persistent state: the previous phase's arenas (the
// training activations before the rollouts, the reference pass's before the update) and the
// rollout's forward scratch are freed (the CPU's KV pool stays, built with the trainer), so the bytes held at every phase start are those held once the
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

// Memory held outside the allocator (the KV pool's pages on CUDA) counts in memory_use while set,
// follows a move, and is given back when its holder goes.
TEST(PhaseMemory, CountedBytesCountWhileHeld) {
  const size_t before = memory_use(Device::CPU).now;
  reset_memory_peak(Device::CPU);
  {
    CountedBytes held(Device::CPU);
    held.set(1000);
    EXPECT_EQ(memory_use(Device::CPU).now, before + 1000);
    CountedBytes moved = std::move(held);
    held.set(0);  // the moved-from holder gives nothing back
    EXPECT_EQ(memory_use(Device::CPU).now, before + 1000);
    moved.set(400);
    EXPECT_EQ(memory_use(Device::CPU).now, before + 400);
    EXPECT_EQ(memory_use(Device::CPU).peak, before + 1000);
  }
  EXPECT_EQ(memory_use(Device::CPU).now, before);
}

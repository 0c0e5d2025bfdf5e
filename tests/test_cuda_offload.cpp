// The offloaded optimizer and the phases' memory on the GPU (skipped without one). The optimizer:
// gradients on the device travel to the host in chunks on copy streams, the CPU updates the fp32 master weights and moments there, and the
// bf16 compute weights come back. Compared with the CUDA AdamW, which runs the same fp32 update
// formula on the device (the two differ only in the device's fused multiply-adds); each comparison
// prints a "[ CUDAERR ]" line.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#include "base/bf16.h"
#include "base/rng.h"
#include "compare_util.h"
#include "grpo_test_util.h"
#include "kernels/ops.h"
#include "model/kv_cache.h"
#include "model/train_state.h"
#include "model/transformer.h"
#include "optim/data_parallel.h"
#include "optim/offload.h"
#include "optim/optimizer.h"
#include "require_gpu.h"
#include "tensor/device_memory.h"
#include "text/codec.h"
#include "train/grpo_config.h"

using namespace r1;
using optim::AdamW;
using optim::AdamWConfig;
using optim::OffloadConfig;

namespace {

std::vector<float> randn(int64_t n, uint64_t seed, float scale) {
  Rng rng(seed, 0);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = scale * rng.normal();
  return v;
}

// ||a - b|| / ||b - start||: how far the two runs ended apart, relative to how far they moved.
double relative_to_update(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& start) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += (double(b[i]) - start[i]) * (double(b[i]) - start[i]);
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace

// 5 steps over 5M + 37 parameters in chunks of 1M (6 chunks, the last short), the same gradients on
// the device for both: the master weights end within 1e-5 of the update's size of the CUDA AdamW's
// (measured: FMA rounding only), and the bf16 weights agree except where that rounding crosses a
// bf16 boundary.
TEST(CudaOffload, AdamWMatchesCudaAdamW) {
  REQUIRE_GPU();
  const int64_t n = 5 * (int64_t(1) << 20) + 37;
  const std::vector<optim::ParamSlice> slices = {{"w", 0, n - 101, true}, {"b", n - 101, 101, false}};
  const AdamWConfig cfg{0.9f, 0.95f, 1e-8f, 0.1f};
  AdamW dev(slices, cfg, Device::CUDA), off(slices, cfg, Device::CUDA, OffloadConfig{true, int64_t(1) << 20});
  const std::vector<float> start = randn(n, 1, 0.02f);
  Buffer pd(size_t(n) * 4, Device::CUDA), cd(size_t(n) * 2, Device::CUDA), co(size_t(n) * 2, Device::CUDA),
      g(size_t(n) * 4, Device::CUDA);
  Buffer ph = Buffer::pinned(size_t(n) * 4);
  const Tensor p_dev(pd.data(), DType::F32, {n}, Device::CUDA), p_off(ph.data(), DType::F32, {n});
  const Tensor c_dev(cd.data(), DType::BF16, {n}, Device::CUDA), c_off(co.data(), DType::BF16, {n}, Device::CUDA);
  const Tensor grads(g.data(), DType::F32, {n}, Device::CUDA);
  copy_from_host(p_dev, start.data());
  std::memcpy(ph.data(), start.data(), size_t(n) * 4);
  for (int step = 0; step < 5; ++step) {
    const std::vector<float> gh = randn(n, 10 + uint64_t(step), 1.0f);
    copy_from_host(grads, gh.data());
    dev.step(p_dev, grads, 1e-3f, step % 2 ? 0.5f : 1.0f, c_dev);
    off.step(p_off, grads, 1e-3f, step % 2 ? 0.5f : 1.0f, c_off);
  }
  EXPECT_EQ(off.offload_stream()->chunks_run(), 6);
  const std::vector<float> wd = to_host_f32(p_dev), wo(static_cast<float*>(ph.data()), static_cast<float*>(ph.data()) + n);
  const double err = relative_to_update(wo, wd, start);
  fmt::print("[ CUDAERR ] offloaded AdamW master vs CUDA AdamW, relative to the update: {:.3e}\n", err);
  EXPECT_LT(err, 1e-5);
  const std::vector<float> bd = to_host_f32(c_dev), bo = to_host_f32(c_off);
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i) differ += bd[size_t(i)] != bo[size_t(i)];
  fmt::print("[ CUDAERR ] bf16 weights that differ: {} of {}\n", differ, n);
  EXPECT_LT(double(differ), 1e-3 * double(n));
  // And each bf16 weight is the master weight rounded, as the CUDA AdamW writes it.
  for (int64_t i = 0; i < n; i += 4099) ASSERT_EQ(bo[size_t(i)], bf16_to_f32(f32_to_bf16(wo[size_t(i)]))) << i;
}

// A small model trained on the GPU for 3 steps (clipping on, weight decay on) through DataParallel
// with the optimizer offloaded ends within 1e-3 of the update's size of the on-device run (the
// GPU's backward is not bitwise repeatable: its embedding gradient adds with atomics), and the GPU
// holds neither the fp32 master copy nor the moments.
TEST(CudaOffload, ModelTrainingMatchesOnDevice) {
  REQUIRE_GPU();
  model::ModelConfig cfg = model::preset_config("tiny");
  cfg.vocab_size = 128;
  model::Transformer ref(cfg, Device::CPU);
  ref.init_random(5, 0.05f);
  const std::vector<float> start = ref.weights_host();
  const size_t before = memory_use(Device::CUDA).now;
  model::Transformer a(cfg, Device::CUDA), b(cfg, Device::CUDA, true, std::nullopt, model::MasterPlace::Host);
  a.set_weights(start.data());
  b.set_weights(start.data());
  const AdamWConfig adamw{0.9f, 0.95f, 1e-8f, 0.1f};
  optim::DataParallelConfig off_cfg;
  off_cfg.offload = {true, 4096};
  optim::DataParallel plain(a, adamw), off(b, adamw, off_cfg);
  const int64_t N = a.params().flat.numel();
  const size_t held_a = memory_use(Device::CUDA).now - before;  // both models and the CUDA moments
  EXPECT_EQ(b.master().flat.device, Device::CPU);
  // The device holds a's bf16 weights, fp32 master, gradients and moments (2 + 4 + 4 + 8 bytes a
  // parameter) and b's bf16 weights and gradients (2 + 4): 24 bytes a parameter, plus small buffers.
  EXPECT_LT(held_a, size_t(N) * 25);
  model::TrainState sa, sb;
  const model::Batch batch = model::pack_sequences({{1, 5, 9, 12, 3, 7, 7, 2, 99, 3}, {4, 4, 8, 1, 60, 127}});
  for (int step = 0; step < 3; ++step) {
    for (auto [m, s] : {std::pair{&a, &sa}, std::pair{&b, &sb}}) {
      s->forward(*m, batch);
      std::vector<float> dlogp(size_t(batch.tokens()), -1.0f / float(batch.tokens()));
      s->backward(*m, dlogp);
    }
    const optim::UpdateResult ra = plain.step(1e-2, 0.05), rb = off.step(1e-2, 0.05);
    EXPECT_NEAR(rb.grad_norm, ra.grad_norm, 1e-2 * ra.grad_norm);
  }
  const double err = relative_to_update(b.weights_host(), a.weights_host(), start);
  fmt::print("[ CUDAERR ] offloaded vs on-device training, 3 steps, relative to the update: {:.3e}\n", err);
  EXPECT_LT(err, 1e-3);
  // The bf16 compute weights are the master weights rounded (uploaded by the offloaded step).
  const std::vector<float> master = b.weights_host(), compute = to_host_f32(b.params().flat);
  for (size_t i = 0; i < master.size(); i += 97) ASSERT_EQ(compute[i], bf16_to_f32(f32_to_bf16(master[i]))) << i;
}

// On the GPU too, each phase of a GRPO step starts from the persistent state (weights, gradients,
// reference; master and moments unless offloaded): the rollout's KV pool pages, the training
// arenas and the kernels' scratch (attention backward, log-prob tiles) are given back between
// phases. What the rollout engine keeps from its first rollout on (its captured decode steps'
// buffers; measured on the H200: 2.1 MB for this tiny model) stays the same step after step. Offloading moves exactly the fp32 master copy and the
// moments (12 bytes a parameter) off the device.
TEST(CudaPhaseMemory, GrpoPhasesStartFromThePersistentState) {
  REQUIRE_GPU();
  double persistent_by_mode[2] = {0, 0}, kept_by_mode[2] = {0, 0};
  int64_t N = 0;
  for (bool offload : {false, true}) {
    ops::release_workspace();  // what earlier tests left in the kernels' scratch
    const double before = double(memory_use(Device::CUDA).now);
    model::ModelConfig c = model::preset_config("tiny", "qwen2");
    model::override_config(c, "vocab_size", "257");
    model::Transformer cpu(c);
    cpu.init_random(3, 0.02f);
    const std::vector<float> w = cpu.weights_host();
    model::Transformer m(c, Device::CUDA, true, std::nullopt,
                         offload ? model::MasterPlace::Host : model::MasterPlace::Device);
    m.set_weights(w.data());
    text::ByteCodec codec;
    train::GrpoConfig gc = test::small_grpo(4, 4, 10);
    gc.loss.kl_coef = 0.1;
    gc.parallel.offload.enabled = offload;
    test::EvenByteReward reward;
    train::GrpoTrainer trainer(m, codec, reward, test::letter_problems(16), test::question, gc, 3);
    ops::release_workspace();
    const double persistent = double(memory_use(Device::CUDA).now) - before;
    persistent_by_mode[offload ? 1 : 0] = persistent;
    N = m.params().flat.numel();
    // At least bf16 weights + fp32 gradients + bf16 reference, and master + moments on the device.
    EXPECT_GE(persistent, double(N) * (offload ? 8.0 : 20.0)) << "offload " << offload;
    const double one_sequence =
        double(model::kv_bytes_per_token(c, DType::BF16)) * double(train::engine_config(gc).max_seq_len);
    double held_first = -1;
    for (int step = 0; step < 3; ++step) {
      const train::StepStats s = trainer.step(step);
      const double held = s.memory_held - before, rollout = s.memory_rollout - before;
      const double update = s.memory_update - before;
      // The rollout holds at least one sequence's KV blocks (the pool's pages, mapped only then).
      EXPECT_GE(rollout, held + one_sequence) << "offload " << offload << ", step " << step;
      EXPECT_GT(update, held) << "offload " << offload << ", step " << step;
      // Between phases: the persistent state and what the engine keeps for its captured steps
      // (from the first rollout on), the same every step.
      if (step == 0) held_first = held;
      EXPECT_EQ(held, held_first) << "offload " << offload << ", step " << step;
    }
    kept_by_mode[offload ? 1 : 0] = held_first - persistent;
  }
  // The engine keeps the same buffers whether or not the optimizer is offloaded.
  EXPECT_EQ(kept_by_mode[0], kept_by_mode[1]);
  EXPECT_NEAR(persistent_by_mode[0] - persistent_by_mode[1], 12.0 * double(N), 0.01 * double(N));
}

// The model and the trainers on the GPU (bf16 compute weights, fp32 master weights, gradients and
// AdamW moments) against the CPU fp32 reference on the same weights. The CPU model gets the bf16-
// rounded weights, so the comparisons measure bf16 compute only. Each comparison prints a
// "[ CUDAERR ]" line. Without a usable GPU the Cuda* tests skip; the TrainDevice tests run the
// same trainer checks on the CPU.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "compare_util.h"
#include "grpo_test_util.h"
#include "greedy_twins.h"
#include "twin_models.h"
#include "require_gpu.h"
#include "base/bf16.h"
#include "base/rng.h"
#include "model/checkpoint.h"
#include "rollout/engine.h"
#include "tensor/device_memory.h"
#include "test_util.h"
#include "text/codec.h"
#include "train/grpo.h"
#include "optim/optimizer.h"
#include "train/sft.h"
#include "model/train_state.h"
#include "model/kv_cache.h"

using namespace r1;

namespace {

using test::rel_l2;

using test::max_abs;

void report(const std::string& what, double err) { fmt::print("[ CUDAERR ] {} {:.3e}\n", what, err); }

using test::bf16_weights;
using test::mean_loss_dlogp;
using test::Pair;
using test::random_batch;
using test::twin_models;

class CudaModelArch : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaModelArch, LogprobsAndGradientsMatchCpu) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("tiny", GetParam());
  Pair p = twin_models(c, 21);
  EXPECT_EQ(p.gpu.compute_dtype(), DType::BF16);
  EXPECT_EQ(p.gpu.master().flat.dtype, DType::F32);
  EXPECT_EQ(p.gpu.grads().flat.device, Device::CUDA);
  model::Batch batch = random_batch(3, c.vocab_size, {40, 7, 64, 1});
  model::TrainState sc, sg;
  sc.forward(p.cpu, batch);
  sg.forward(p.gpu, batch);
  EXPECT_EQ(sg.logp().device, Device::CUDA);
  const std::vector<float> lc = sc.logp_host(), lg = sg.logp_host();
  report(GetParam() + " logp rel L2", rel_l2(lg, lc));
  report(GetParam() + " logp max abs", max_abs(lg, lc));
  EXPECT_LT(rel_l2(lg, lc), 1e-2);
  EXPECT_LT(max_abs(lg, lc), 0.15);
  EXPECT_LT(rel_l2(sg.entropy_host(), sc.entropy_host()), 1e-2);

  const std::vector<float> d = mean_loss_dlogp(batch);
  sc.backward(p.cpu, d);
  sg.backward(p.gpu, d);
  // bf16 rounding through a few layers puts each parameter's gradient a few percent off the f32
  // one (transformers' own bf16 gradients are up to 2.6e-2 off fp64 on the tools/parity models);
  // a real bug (index, sign, missing term) is off by order 1. Measured on the H100: worst single
  // parameter 5.2e-2 (qwen2), all parameters together 3.0e-2.
  const test::GradErrors e = test::grad_errors(p);
  for (const auto& [name, err] : e.per_param) EXPECT_LT(err, 8e-2) << name;
  report(GetParam() + " all-parameter gradient rel L2", e.all);
  EXPECT_LT(e.all, 5e-2);
  report(GetParam() + " worst per-parameter gradient rel L2", e.worst);
}

// The recomputing backward (CUDA's default) agrees with the saving one. Not bitwise: GEMM plans
// depend on pointer alignment and some backward kernels accumulate with atomics, so the two paths
// differ by bf16 rounding noise.
TEST_P(CudaModelArch, RecomputeMatchesSaving) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("tiny", GetParam());
  Pair p = twin_models(c, 8);
  model::Transformer other(c, Device::CUDA);
  model::copy_weights(other, p.gpu);
  model::Batch batch = random_batch(5, c.vocab_size, {33, 12});
  model::TrainState a, b;
  a.recompute = model::Recompute::Off;
  b.recompute = model::Recompute::On;
  a.forward(p.gpu, batch);
  b.forward(other, batch);
  EXPECT_LT(rel_l2(b.logp_host(), a.logp_host()), 2e-3);
  a.backward(p.gpu, mean_loss_dlogp(batch));
  b.backward(other, mean_loss_dlogp(batch));
  const double e = rel_l2(to_host_f32(other.grads().flat), to_host_f32(p.gpu.grads().flat));
  report(GetParam() + " recompute vs saving gradient rel L2", e);
  EXPECT_LT(e, 1e-2);
  EXPECT_LT(b.activation_bytes(), a.activation_bytes());
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaModelArch, ::testing::Values("qwen2", "llama", "qwen3"));

// A frozen (non-trainable) CUDA model has bf16 weights only and the same forward.
TEST(CudaModel, FrozenReferenceModel) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  Pair p = twin_models(c, 4);
  model::Transformer ref(c, Device::CUDA, /*trainable=*/false);
  EXPECT_TRUE(ref.master().flat.empty());
  EXPECT_TRUE(ref.grads().flat.empty());
  model::copy_weights(ref, p.gpu);
  model::Batch batch = random_batch(6, c.vocab_size, {20, 9});
  model::TrainState a, b;
  a.forward(p.gpu, batch);
  b.forward(ref, batch);
  EXPECT_LT(rel_l2(b.logp_host(), a.logp_host()), 2e-3);  // same weights; buffers (so GEMM plans) differ
}

// AdamW on the device: the fp32 master follows the CPU update, the bf16 weights are its rounding,
// and saved moments resume bit-exactly.
TEST(CudaOptimizer, UpdateMatchesCpuAndResumes) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("tiny", "llama");
  Pair p = twin_models(c, 12, 0.02f);
  model::Batch batch = random_batch(2, c.vocab_size, {30});
  for (model::Transformer* m : {&p.cpu, &p.gpu}) {
    model::TrainState st;
    st.forward(*m, batch);
    st.backward(*m, mean_loss_dlogp(batch));
  }
  // The same gradients on both sides, so only the update is compared.
  copy_from_host(p.gpu.grads().flat, to_host_f32(p.cpu.grads().flat).data());
  optim::AdamWConfig cfg;
  cfg.weight_decay = 0.1f;
  optim::AdamW oc = optim::make_adamw(p.cpu, cfg), og = optim::make_adamw(p.gpu, cfg);
  EXPECT_EQ(og.device(), Device::CUDA);
  const optim::ClipResult cc = optim::clip_grad_norm(p.cpu.grads().flat, 0.5);
  const optim::ClipResult cg = optim::clip_grad_norm(p.gpu.grads().flat, 0.5);
  EXPECT_NEAR(cg.norm, cc.norm, 1e-4 * cc.norm);
  optim::optimizer_step(oc, p.cpu, 1e-3f, cc.scale);
  optim::optimizer_step(og, p.gpu, 1e-3f, cg.scale);
  const std::vector<float> wc = p.cpu.weights_host(), wg = p.gpu.weights_host();
  report("adamw master vs cpu rel L2", rel_l2(wg, wc));
  EXPECT_LT(rel_l2(wg, wc), 1e-6);
  const std::vector<float> compute = to_host_f32(p.gpu.params().flat);
  for (size_t i = 0; i < wg.size(); ++i) ASSERT_EQ(compute[i], bf16_to_f32(f32_to_bf16(wg[i]))) << i;

  test::TempDir dir;
  og.save(dir.file("opt.safetensors"));
  model::save_model(p.gpu, dir.file("model"));
  optim::AdamW resumed = optim::make_adamw(p.gpu, cfg);
  resumed.load(dir.file("opt.safetensors"));
  model::Transformer back = model::load_model(dir.file("model"), Device::CUDA);
  EXPECT_EQ(back.weights_host(), wg);
  copy_tensor(back.grads().flat, p.gpu.grads().flat);
  optim::optimizer_step(og, p.gpu, 1e-3f, 1.0f);
  optim::optimizer_step(resumed, back, 1e-3f, 1.0f);
  EXPECT_EQ(back.weights_host(), p.gpu.weights_host());
  EXPECT_EQ(to_host_f32(back.params().flat), to_host_f32(p.gpu.params().flat));
}

// A few SFT steps fit a small batch (on CPU too, as the reference for the CUDA run).
void sft_reduces_loss(Device device) {
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  model::Transformer m(c, device);
  m.init_random(3);
  Rng rng(9);
  std::vector<train::SftExample> batch;
  for (int i = 0; i < 8; ++i) {
    train::SftExample e;
    for (int t = 0; t < 6; ++t) e.prompt.push_back(int32_t(rng.next_u32() % 256));
    for (int t = 0; t < 12; ++t) e.completion.push_back(int32_t(rng.next_u32() % 256));
    batch.push_back(e);
  }
  optim::DataParallel opt(m, {});
  model::TrainState st;
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    train::SftStepResult r = train::sft_step(m, st, opt, batch, 1e-2, 1.0, 64);  // several micro-batches
    ASSERT_FALSE(r.skipped) << "step " << step;
    if (step == 0) first = r.loss;
    last = r.loss;
  }
  fmt::print("[ CUDAERR ] {} sft loss {:.3f} -> {:.3f}\n", device_name(device), first, last);
  EXPECT_LT(last, 0.5 * first);
}

TEST(CudaTrain, SftStepsReduceTheLoss) {
  REQUIRE_GPU();
  sft_reduces_loss(Device::CUDA);
}

TEST(TrainDevice, SftStepsReduceTheLossOnCpu) { sft_reduces_loss(Device::CPU); }

// GRPO steps of a tiny qwen2 (the byte codec's 264 ids) on either device.
void grpo_steps_run(Device device) {
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  model::override_config(c, "vocab_size", "264");
  test::grpo_steps_run(c, device);
}

TEST(CudaTrain, GrpoStepRuns) {
  REQUIRE_GPU();
  grpo_steps_run(Device::CUDA);
}

TEST(TrainDevice, GrpoStepRunsOnCpu) { grpo_steps_run(Device::CPU); }

// Greedy decoding through forward_cached on the GPU follows the CPU's greedy tokens: every token the
// GPU picks is the CPU's argmax or within a near-tie of it (bf16 may flip a near-tie, after which
// the sequences part), and many tokens match exactly.
TEST(CudaGenerate, GreedyMatchesCpu) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  Pair p = twin_models(c, 17);
  const test::GreedyTwins g = test::greedy_twins(p);
  const auto& reqs = g.requests;
  const auto& og = g.gpu;
  ASSERT_EQ(g.cpu.size(), og.size());
  double worst_gap = 0;
  for (size_t i = 0; i < og.size(); ++i) {
    ASSERT_EQ(og[i].tokens.size(), 8u);
    // The CPU model's logits along the GPU's sequence.
    std::vector<int32_t> ids = reqs[i / 2].prompt;
    const int32_t plen = int32_t(ids.size());
    ids.insert(ids.end(), og[i].tokens.begin(), og[i].tokens.end() - 1);
    std::vector<int32_t> slots(ids.size(), 0), pos, rows;
    for (size_t t = 0; t < ids.size(); ++t) pos.push_back(int32_t(t));
    for (int32_t t = plen - 1; t < int32_t(ids.size()); ++t) rows.push_back(t);
    model::KVCache kv(p.cpu, 1, 32);
    Arena a;
    const Tensor z = model::forward_cached(p.cpu, kv, ids, slots, pos, rows, a);
    for (size_t r = 0; r < rows.size(); ++r) {
      const float* zr = z.f32() + int64_t(r) * c.vocab_size;
      const double gap = *std::max_element(zr, zr + c.vocab_size) - zr[og[i].tokens[r]];
      worst_gap = std::max(worst_gap, gap);
      EXPECT_LT(gap, 0.25) << "completion " << i << " token " << r << " is not the CPU's greedy choice";
    }
  }
  fmt::print("[ CUDAERR ] greedy tokens equal to the CPU's before the first difference: {}/{}; worst logit gap "
             "to the CPU argmax {:.3f}\n",
             g.matched, g.total, worst_gap);
  EXPECT_GE(g.matched * 4, g.total);

  // The logits themselves, for one prefill.
  model::KVCache kc(p.cpu, 1, 32), kg(p.gpu, 1, 32);
  EXPECT_EQ(kg.dtype, DType::BF16);
  Arena ac, ag(0, Device::CUDA);
  const std::vector<int32_t>& ids = reqs[3].prompt;
  std::vector<int32_t> slots(ids.size(), 0), pos, rows;
  for (size_t t = 0; t < ids.size(); ++t) pos.push_back(int32_t(t)), rows.push_back(int32_t(t));
  const std::vector<float> zc = to_host_f32(model::forward_cached(p.cpu, kc, ids, slots, pos, rows, ac));
  const std::vector<float> zg = to_host_f32(model::forward_cached(p.gpu, kg, ids, slots, pos, rows, ag));
  report("forward_cached logits rel L2", rel_l2(zg, zc));
  EXPECT_LT(rel_l2(zg, zc), 2e-2);
}

}  // namespace

// LoRA on the GPU (bf16 frozen base, adapters with an fp32 master copy) against the CPU fp32
// reference on the same bf16-rounded weights: log-probs, adapter gradients, greedy decoding with the
// adapters applied (via GRPO rollouts), and GRPO steps that move only the adapters with the base as KL reference.
// Without a usable GPU these skip; tests/test_lora.cpp and test_grpo_lora.cpp cover the CPU.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "base/bf16.h"
#include "base/rng.h"
#include "model/train_state.h"
#include "compare_util.h"
#include "require_gpu.h"
#include "tensor/device_memory.h"
#include "test_util.h"
#include "text/codec.h"
#include "grpo_test_util.h"

using namespace r1;

namespace {

using test::rel_l2;

std::vector<float> rounded(std::vector<float> w) {
  for (float& x : w) x = bf16_to_f32(f32_to_bf16(x));
  return w;
}

model::LoraConfig lora_cfg() {
  model::LoraConfig l;
  l.rank = 8;
  l.alpha = 16;
  l.targets = {"all-linear"};
  return l;
}

// The same frozen base and the same nonzero adapters on `device`.
model::Transformer adapted(const model::ModelConfig& c, Device device) {
  model::Transformer tmp(c);
  tmp.init_random(21, 0.2f);
  const std::vector<float> w = rounded(tmp.weights_host());
  model::Transformer m(c, device, /*trainable=*/false);
  m.set_weights(w.data());
  m.add_lora(lora_cfg(), 5);
  std::vector<float> a = m.adapter_host();
  Rng rng(9);
  for (float& x : a) x = 0.1f * rng.normal();
  a = rounded(a);
  m.set_adapter(a.data());
  return m;
}

model::Batch random_batch(int vocab) {
  Rng rng(3);
  std::vector<std::vector<int32_t>> seqs;
  for (int len : {40, 7, 64}) {
    seqs.emplace_back();
    for (int i = 0; i < len; ++i) seqs.back().push_back(int32_t(rng.next_u32() % uint32_t(vocab)));
  }
  return model::pack_sequences(seqs);
}

TEST(CudaLora, LogprobsAndAdapterGradientsMatchCpu) {
  REQUIRE_GPU();
  const model::ModelConfig c = model::preset_config("tiny", "qwen2");
  model::Transformer cpu = adapted(c, Device::CPU), gpu = adapted(c, Device::CUDA);
  const model::Batch batch = random_batch(c.vocab_size);
  model::TrainState sc, sg;
  sc.forward(cpu, batch);
  sg.forward(gpu, batch);
  const double logp_err = rel_l2(sg.logp_host(), sc.logp_host());
  fmt::print("[ CUDAERR ] lora logp rel L2 {:.3e}\n", logp_err);
  EXPECT_LT(logp_err, 1e-2);
  int64_t n = 0;
  for (int32_t t : batch.targets) n += t >= 0;
  std::vector<float> d(batch.targets.size());
  for (size_t t = 0; t < d.size(); ++t) d[t] = batch.targets[t] >= 0 ? -1.0f / float(n) : 0.0f;
  cpu.zero_grads();
  gpu.zero_grads();
  sc.backward(cpu, d);
  sg.backward(gpu, d);
  const std::vector<float> gc = to_host_f32(cpu.trainable_weights().grads);
  const std::vector<float> gg = to_host_f32(gpu.trainable_weights().grads);
  ASSERT_EQ(gc.size(), gg.size());
  for (const model::ParamSpec& s : cpu.adapter_specs()) {
    std::vector<float> a(gc.begin() + s.offset, gc.begin() + s.offset + s.numel());
    std::vector<float> b(gg.begin() + s.offset, gg.begin() + s.offset + s.numel());
    EXPECT_LT(rel_l2(b, a), 8e-2) << s.name;
  }
  const double all = rel_l2(gg, gc);
  fmt::print("[ CUDAERR ] lora adapter gradient rel L2 {:.3e}\n", all);
  EXPECT_LT(all, 5e-2);
}

TEST(CudaLora, GrpoStepsMoveOnlyTheAdapters) {
  REQUIRE_GPU();
  text::ByteCodec codec;
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  model::override_config(c, "vocab_size", "264");
  model::Transformer m(c, Device::CUDA, /*trainable=*/false);
  m.init_random(5);
  m.add_lora(lora_cfg(), 7);
  const std::vector<float> base = m.weights_host(), adapter = m.adapter_host();
  test::LetterReward reward;
  train::GrpoConfig gc = test::small_grpo();
  gc.lr = 1e-2;
  gc.loss.kl_coef = 0.01;
  train::GrpoTrainer trainer(m, codec, reward, test::letter_problems(32), test::question, gc, 3);
  EXPECT_EQ(trainer.reference(), nullptr);
  for (int s = 0; s < 3; ++s) {
    const train::StepStats st = trainer.step(s);
    ASSERT_TRUE(st.kl.has_value());
    if (s == 0) EXPECT_LT(std::abs(*st.kl), 1e-6) << "a fresh adapter is the base";
    EXPECT_TRUE(std::isfinite(st.loss) && std::isfinite(*st.kl));
    fmt::print("[ CUDAERR ] lora grpo step {} reward {:.3f} kl {:.2e} grad_norm {:.3f}\n", s, st.reward_mean, *st.kl,
               st.grad_norm);
  }
  EXPECT_EQ(m.weights_host(), base);
  EXPECT_NE(m.adapter_host(), adapter);
}

}  // namespace

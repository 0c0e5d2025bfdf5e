// GRPO with LoRA (train.lora.*): the adapters alone climb a reward while the base stays bit for bit;
// the KL reference is the policy with its adapters off (no second copy), so the KL is exactly 0
// while the adapter is fresh; refreshing that reference is refused with a message naming the key.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/error.h"
#include "grpo_test_util.h"

using namespace r1;

namespace {

model::LoraConfig all_linear(int rank) {
  model::LoraConfig l;
  l.rank = rank;
  l.alpha = 2.0 * rank;
  l.targets = {"all-linear"};
  return l;
}

// A random tiny model stands in for a pretrained base. Its tied embedding is drawn wider (std 0.1)
// than the 0.02 of the other weights: with a frozen head of std 0.02 no hidden state can move a
// logit by more than about 1.3 (|E_row| |h| = 0.16 x 8), so no adapter could make a letter likely;
// a trained base's head has a useful range, which the wider draw gives.
model::Transformer lora_base(uint64_t seed) {
  model::Transformer m = test::byte_model(seed);
  float* e = m.params().embed.f32();
  for (int64_t i = 0; i < m.params().embed.numel(); ++i) e[i] *= 5.0f;
  return m;
}

std::vector<float> base_weights(const model::Transformer& m) {
  const float* p = m.params().flat.f32();
  return std::vector<float>(p, p + m.params().flat.numel());
}

TEST(GrpoLora, AdaptersAloneClimbASimpleRewardAndTheBaseStays) {
  text::ByteCodec codec;
  model::Transformer m = lora_base(3);
  m.add_lora(all_linear(8), 17);
  const std::vector<float> before = base_weights(m);
  train::GrpoConfig gc = test::small_grpo(8, 8, 12);
  gc.lr = 1e-2;
  test::LetterReward reward;
  train::GrpoTrainer trainer(m, codec, reward, test::letter_problems(64), test::question, gc, 40);
  double first = 0, last = 0;
  for (int s = 0; s < 40; ++s) {
    const train::StepStats st = trainer.step(s);
    if (s < 5) first += st.reward_mean / 5;
    if (s >= 35) last += st.reward_mean / 5;
  }
  EXPECT_GT(last, first + 0.3) << "reward " << first << " -> " << last;
  EXPECT_TRUE(base_weights(m) == before) << "the base weights moved";
}

TEST(GrpoLora, TheReferenceIsTheBaseWithTheAdaptersOff) {
  text::ByteCodec codec;
  model::Transformer m = lora_base(3);
  m.add_lora(all_linear(4), 17);
  train::GrpoConfig gc = test::small_grpo(4, 4, 10);
  gc.loss.kl_coef = 0.1;
  gc.lr = 1e-2;
  test::EvenByteReward reward;
  train::GrpoTrainer trainer(m, codec, reward, test::letter_problems(64), test::question, gc, 10);
  EXPECT_EQ(trainer.reference(), nullptr) << "no second copy of the weights";
  const train::StepStats s0 = trainer.step(0);
  ASSERT_TRUE(s0.kl.has_value());
  EXPECT_EQ(*s0.kl, 0.0) << "a fresh adapter (B = 0) is the base";
  const train::StepStats s1 = trainer.step(1);
  ASSERT_TRUE(s1.kl.has_value());
  EXPECT_GT(*s1.kl, 0.0) << "the adapter moved at step 0; the reference (adapters off) did not";
}

TEST(GrpoLora, RefreshingTheBaseReferenceIsRefused) {
  text::ByteCodec codec;
  model::Transformer m = lora_base(3);
  m.add_lora(all_linear(4), 17);
  train::GrpoConfig gc = test::small_grpo(4, 4, 10);
  gc.loss.kl_coef = 0.1;
  gc.ref_refresh_steps = 2;
  test::EvenByteReward reward;
  try {
    train::GrpoTrainer trainer(m, codec, reward, test::letter_problems(64), test::question, gc, 10);
    FAIL() << "expected an error";
  } catch (const r1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("grpo.ref_refresh_steps"), std::string::npos) << e.what();
  }
}

}  // namespace

// The GRPO trainer end to end on a tiny byte-level model: a reward that prefers one letter is
// climbed within a few dozen steps (fixed seed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "base/error.h"

#include "text/codec.h"
#include "train/grpo.h"

using namespace r1;

namespace {

// Share of the completion's bytes that are 'a'.
class LetterReward final : public reward::Reward {
 public:
  std::string name() const override { return "letter"; }
  reward::Result score(const reward::Sample& s) const override {
    reward::Result r;
    if (s.completion.empty()) return r;
    r.reward = double(std::count(s.completion.begin(), s.completion.end(), 'a')) / double(s.completion.size());
    return r;
  }
};

// A tiny qwen2-shaped model over the byte codec's 257 ids.
model::Transformer byte_model(uint64_t seed) {
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  model::override_config(c, "vocab_size", "257");
  model::Transformer m(c);
  m.init_random(seed, 0.02f);
  return m;
}

TEST(GrpoTrainer, ClimbsASimpleReward) {
  text::ByteCodec codec;
  model::Transformer m = byte_model(3);
  std::vector<data::Problem> probs;
  for (int i = 0; i < 64; ++i) probs.push_back({i, std::string(1, char('b' + i % 20)), ""});
  train::GrpoConfig gc;
  gc.prompts_per_step = 8;
  gc.group_size = 8;
  gc.max_prompt_tokens = 4;
  gc.max_completion_tokens = 12;
  gc.lr = 3e-3;
  gc.schedule.kind = "constant";
  LetterReward reward;
  train::GrpoTrainer trainer(m, codec, reward, probs, [](const data::Problem& p) { return p.question; }, gc, 40);
  double first = 0, last = 0;
  for (int s = 0; s < 40; ++s) {
    const train::StepStats st = trainer.step(s);
    if (s < 5) first += st.reward_mean / 5;
    if (s >= 35) last += st.reward_mean / 5;
  }
  EXPECT_GT(last, first + 0.3) << "reward " << first << " -> " << last;
}

// Non-finite rewards poison the gradients: each such update is skipped (weights untouched), and the
// run stops with a clear error after max_bad_steps in a row.
class NanReward final : public reward::Reward {
 public:
  std::string name() const override { return "nan"; }
  reward::Result score(const reward::Sample& s) const override {
    reward::Result r;
    (void)s;
    r.reward = std::nan("");
    return r;
  }
};

TEST(GrpoTrainer, NonFiniteUpdatesAreSkippedThenStop) {
  text::ByteCodec codec;
  model::Transformer m = byte_model(5);
  std::vector<float> before(m.params().flat.f32(), m.params().flat.f32() + m.params().flat.numel());
  std::vector<data::Problem> probs;
  for (int i = 0; i < 8; ++i) probs.push_back({i, "q", ""});
  train::GrpoConfig gc;
  gc.prompts_per_step = 4;
  gc.group_size = 4;
  gc.max_prompt_tokens = 4;
  gc.max_completion_tokens = 8;
  gc.max_bad_steps = 3;
  NanReward reward;
  train::GrpoTrainer trainer(m, codec, reward, probs, [](const data::Problem& p) { return p.question; }, gc, 10);
  for (int s = 0; s < 2; ++s) EXPECT_EQ(trainer.step(s).skipped_updates, 1);
  EXPECT_TRUE(std::equal(before.begin(), before.end(), m.params().flat.f32()));
  try {
    trainer.step(2);
    FAIL() << "expected the run to stop";
  } catch (const r1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("3 consecutive non-finite updates"), std::string::npos) << e.what();
  }
}

}  // namespace

// The GRPO trainer end to end on a tiny byte-level model: a reward that prefers one letter is
// climbed within a few dozen steps (fixed seed).
#include <gtest/gtest.h>

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

TEST(GrpoTrainer, ClimbsASimpleReward) {
  text::ByteCodec codec;
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  model::override_config(c, "vocab_size", "257");
  model::Transformer m(c);
  m.init_random(3, 0.02f);
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
    auto mt = trainer.step(s);
    if (s < 5) first += mt["reward/mean"] / 5;
    if (s >= 35) last += mt["reward/mean"] / 5;
  }
  EXPECT_GT(last, first + 0.3) << "reward " << first << " -> " << last;
}

}  // namespace

// Format, language-consistency and composite rewards, and parallel scoring.
#include <gtest/gtest.h>

#include "base/error.h"
#include "reward/composite.h"

using namespace r1::reward;

TEST(RewardFormat, StrictAndLenient) {
  FormatOptions strict;
  EXPECT_TRUE(check_format("<think>a</think>\n<answer>4</answer>\n", strict).ok);
  EXPECT_FALSE(check_format("hi <think>a</think><answer>4</answer>", strict).ok);
  EXPECT_FALSE(check_format("<think>a</think><answer>4</answer> extra", strict).ok);
  EXPECT_FALSE(check_format("<think>a</think><think>b</think><answer>4</answer>", strict).ok);
  EXPECT_FALSE(check_format("<answer>4</answer><think>a</think>", strict).ok);
  EXPECT_FALSE(check_format("<think>a</think><answer> </answer>", strict).ok);
  FormatOptions lenient;
  lenient.strict = false;
  EXPECT_TRUE(check_format("Sure! <think>a</think> so <answer>4</answer> bye", lenient).ok);
  EXPECT_FALSE(check_format("<answer>4</answer>", lenient).ok);
  FormatOptions opened;  // the prompt ends with <think>
  opened.prompt_opens_think = true;
  EXPECT_TRUE(check_format("a</think><answer>4</answer>", opened).ok);
  FormatOptions custom;
  custom.think_open = "<reasoning>";
  custom.think_close = "</reasoning>";
  EXPECT_TRUE(check_format("<reasoning>a</reasoning><answer>4</answer>", custom).ok);
  EXPECT_EQ(FormatReward().score({"<think>a</think><answer>4</answer>", "", {}}).reward, 1.0);
}

TEST(RewardLanguage, ShareOfTargetScriptWords) {
  EXPECT_DOUBLE_EQ(language_share("Let me compute the sum first.", "en").share, 1.0);
  EXPECT_DOUBLE_EQ(language_share("我们先计算", "zh").share, 1.0);
  LanguageShare mixed = language_share("First 我们 compute", "en");  // 2 English words, 2 Han characters
  EXPECT_EQ(mixed.words, 4);
  EXPECT_DOUBLE_EQ(mixed.share, 0.5);
  // Math is not language: LaTeX commands, digits and one-letter variables are not words.
  EXPECT_DOUBLE_EQ(language_share("所以 \\frac{x}{2} = 3 x", "zh").share, 1.0);
  EXPECT_DOUBLE_EQ(language_share("Привет мир", "en").share, 0.0);
  EXPECT_EQ(language_share("1 + 2 = 3", "en").words, 0);
  EXPECT_THROW(language_share("x", "klingon"), r1::Error);
  Result r = LanguageReward().score({"<think>Let us think 然后</think><answer>1</answer>", "", {}});
  EXPECT_NEAR(r.reward, 3.0 / 5.0, 1e-12);
}

TEST(RewardComposite, WeightedSumByName) {
  auto r = make_reward("math+format:0.5");
  EXPECT_EQ(r->name(), "math:1+format:0.5");
  Result ok = r->score({"<think>x</think><answer>\\boxed{4}</answer>", "4", {}});
  EXPECT_DOUBLE_EQ(ok.reward, 1.5);
  EXPECT_EQ(ok.details["math"]["reward"], 1.0);
  EXPECT_EQ(ok.details["format"]["reward"], 1.0);
  EXPECT_DOUBLE_EQ(r->score({"\\boxed{4}", "4", {}}).reward, 1.0);
  EXPECT_EQ(make_reward("math")->name(), "math");
  EXPECT_THROW(make_reward("math+magic"), r1::Error);
  EXPECT_THROW(make_reward("math:abc"), r1::Error);
  RewardConfig cfg;
  cfg.math.extract.methods = {"telepathy"};
  EXPECT_THROW(make_reward("math", cfg), r1::Error);
}

TEST(RewardBatch, ParallelScoresKeepOrderAndMatchSerial) {
  auto r = make_reward("math");
  std::vector<Sample> samples;
  for (int i = 0; i < 400; ++i)
    samples.push_back({"\\boxed{" + std::to_string(i % 7 == 0 ? i + 1 : i) + "}", std::to_string(i), {}});
  auto par = score_batch(*r, samples, 4);
  for (int i = 0; i < 400; ++i) EXPECT_EQ(par[size_t(i)].reward, i % 7 == 0 ? 0.0 : 1.0) << i;
}

// A reward that throws must not take the batch down.
TEST(RewardBatch, ThrowingRewardScoresZero) {
  struct Broken : Reward {
    std::string name() const override { return "broken"; }
    Result score(const Sample&) const override { throw std::runtime_error("boom"); }
  };
  auto before = counters().reward_exceptions.load();
  auto rs = score_batch(Broken{}, std::vector<Sample>(3), 2);
  for (const auto& x : rs) EXPECT_EQ(x.reward, 0.0);
  EXPECT_EQ(counters().reward_exceptions.load(), before + 3);
}

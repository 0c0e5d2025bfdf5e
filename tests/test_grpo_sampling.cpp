// DAPO's dynamic sampling in the trainer: groups whose accuracy is the same for every sample are
// dropped and more prompts are drawn, round after round, until the batch is full (fill 1) or the
// round budget is spent (then the step warns and trains on what it kept); the filter reads the
// reward part it names, so the whole reward (which varies in every group here) keeps everything.
#include <gtest/gtest.h>

#include "base/error.h"
#include "grpo_test_util.h"

using namespace r1;

namespace {

// accuracy ("math") by the problem's answer: "right" always 1, "wrong" always 0, "coin" 1 when the
// completion starts with an even byte; plus 0.1 x the share of even bytes ("format"), which
// varies within every group, as a composite reward reports its parts.
class AccuracyReward final : public reward::Reward {
 public:
  std::string name() const override { return "math+format:0.1"; }
  reward::Result score(const reward::Sample& s) const override {
    double acc = s.answer == "right" ? 1.0 : 0.0;
    if (s.answer == "coin")
      acc = !s.completion.empty() && (static_cast<unsigned char>(s.completion[0]) & 1) == 0;
    const double even = test::EvenByteReward().score(s).reward;
    reward::Result r;
    r.reward = acc + 0.1 * even;
    r.details = {{"math", {{"reward", acc}, {"weight", 1.0}}},
                 {"format", {{"reward", even}, {"weight", 0.1}}}};
    return r;
  }
};

std::vector<data::Problem> problems(const std::vector<std::string>& answers, int each) {
  std::vector<data::Problem> out;
  for (int i = 0; i < each; ++i)
    for (const std::string& a : answers)
      out.push_back({int64_t(out.size()), std::string(1, char('b' + out.size() % 20)), a});
  return out;
}

train::StepStats one_step(const std::vector<data::Problem>& probs, train::GrpoConfig gc,
                          int64_t* cursor = nullptr) {
  text::ByteCodec codec;
  model::Transformer m = test::byte_model(3);
  AccuracyReward reward;
  train::GrpoTrainer trainer(m, codec, reward, probs, test::question, gc, 4);
  train::StepStats st = trainer.step(0);
  if (cursor) *cursor = trainer.cursor();
  return st;
}

train::GrpoConfig dapo(int max_rounds, const std::string& filter = "math") {
  train::GrpoConfig gc = test::small_grpo(4, 4, 8);
  gc.dynamic_sampling = true;
  gc.dynamic_sampling_max_rounds = max_rounds;
  gc.dynamic_sampling_filter = filter;
  return gc;
}

TEST(GrpoDynamicSampling, RefillsUntilTheBatchIsFullOfGroupsThatVaryInAccuracy) {
  const auto probs = problems({"right", "wrong", "coin"}, 12);
  int64_t cursor = 0;
  const train::StepStats st = one_step(probs, dapo(12), &cursor);
  EXPECT_EQ(st.groups, 4);
  EXPECT_EQ(st.batch_fill, 1.0);
  EXPECT_GT(st.sampling_rounds, 1);
  EXPECT_GT(st.filtered_groups, 0.4);       // the always-right and always-wrong problems, 2 in 3
  EXPECT_EQ(st.zero_variance_groups, 0.0);  // ... although their rewards did vary
  EXPECT_GT(cursor, 4);                     // more prompts were drawn than the batch holds
  EXPECT_EQ(st.updates, 1);
}

TEST(GrpoDynamicSampling, TheWholeRewardAsFilterKeepsEveryGroupHere) {
  const auto probs = problems({"right", "wrong", "coin"}, 12);
  const train::StepStats st = one_step(probs, dapo(12, "reward"));
  EXPECT_EQ(st.groups, 4);
  EXPECT_EQ(st.sampling_rounds, 1);
  EXPECT_EQ(st.filtered_groups, 0.0);
}

TEST(GrpoDynamicSampling, OffKeepsConstantAccuracyGroups) {
  const auto probs = problems({"right", "wrong", "coin"}, 12);
  train::GrpoConfig gc = dapo(12);
  gc.dynamic_sampling = false;
  const train::StepStats st = one_step(probs, gc);
  EXPECT_EQ(st.groups, 4);
  EXPECT_EQ(st.sampling_rounds, 1);
  EXPECT_EQ(st.filtered_groups, 0.0);
}

TEST(GrpoDynamicSampling, ShortBatchAfterTheBudgetWarnsAndTrainsOnWhatItKept) {
  const auto probs = problems({"right", "wrong"}, 12);  // no group ever varies in accuracy
  testing::internal::CaptureStderr();
  const train::StepStats st = one_step(probs, dapo(3));
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(st.sampling_rounds, 3);
  EXPECT_EQ(st.groups, 0);
  EXPECT_EQ(st.batch_fill, 0.0);
  EXPECT_EQ(st.filtered_groups, 1.0);
  EXPECT_EQ(st.updates, 0);
  EXPECT_NE(err.find("dynamic sampling filled 0 of 4 groups in 3 rounds (grpo.dynamic_sampling_max_rounds)"),
            std::string::npos)
      << err;
}

TEST(GrpoDynamicSampling, ZeroRoundsIsAnErrorNotZeroUpdates) {
  text::ByteCodec codec;
  model::Transformer m = test::byte_model(3);
  AccuracyReward reward;
  try {
    train::GrpoTrainer t(m, codec, reward, problems({"coin"}, 8), test::question, dapo(0), 4);
    FAIL() << "accepted dynamic_sampling_max_rounds = 0";
  } catch (const r1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("grpo.dynamic_sampling_max_rounds must be >= 1"), std::string::npos)
        << e.what();
  }
}

}  // namespace

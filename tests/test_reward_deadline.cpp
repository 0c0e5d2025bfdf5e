// Every rule reward runs under a deadline that cannot hang the training job: a reward that never
// returns is killed, scores 0 and is counted; one that crashes takes down only its worker process.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "model/transformer.h"
#include "reward/composite.h"
#include "reward/reward_guard.h"
#include "text/codec.h"
#include "train/grpo.h"

using namespace r1;
using namespace r1::reward;

namespace {

// Scores 1, except: "sleep" in the answer or prompt sleeps forever; "crash" segfaults; "slow" takes 0.3 s.
class Misbehaving final : public Reward {
 public:
  std::string name() const override { return "misbehaving"; }
  Result score(const Sample& s) const override {
    if (s.answer == "sleep" || s.prompt.find("sleep") != std::string::npos)
      for (;;) ::pause();
    if (s.answer == "crash") ::raise(SIGSEGV);
    if (s.answer == "slow") ::usleep(300000);
    return Result{1.0, {{"answer", s.answer}}};
  }
};

// Child processes of this process (a killed worker must be reaped, not left as a zombie).
int children() {
  int n = 0;
  std::string task = "/proc/" + std::to_string(::getpid()) + "/task";
  DIR* d = ::opendir(task.c_str());
  for (dirent* e; d && (e = ::readdir(d));) {
    std::ifstream f(task + "/" + e->d_name + "/children");
    for (std::string pid; f >> pid;) ++n;
  }
  if (d) ::closedir(d);
  return n;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST(RewardDeadline, RewardThatSleepsForeverIsKilledScoredZeroAndCounted) {
  GuardedReward guarded(std::make_unique<Misbehaving>(), GuardOptions{0.3});
  std::vector<Sample> samples;
  for (const char* a : {"1", "sleep", "2", "3", "sleep", "4", "5"}) samples.push_back({"c", a, nullptr});
  const auto before = counters().reward_timeouts.load();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Result> rs = score_batch(guarded, samples, 2);
  const double s = seconds_since(t0);
  ASSERT_EQ(rs.size(), samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    if (samples[i].answer == "sleep") {
      EXPECT_EQ(rs[i].reward, 0.0);
      EXPECT_TRUE(rs[i].details.value("timed_out", false)) << rs[i].details.dump();
      EXPECT_NE(rs[i].details.value("reason", "").find("timed out after 0.3 s"), std::string::npos);
    } else {
      EXPECT_EQ(rs[i].reward, 1.0) << i << ": " << rs[i].details.dump();
      EXPECT_EQ(rs[i].details["answer"], samples[i].answer) << "results keep the sample order";
    }
  }
  EXPECT_EQ(counters().reward_timeouts.load(), before + 2);
  EXPECT_LT(s, 5.0) << "two deadlines of 0.3 s, not forever";
  EXPECT_EQ(children(), 0) << "the killed workers are reaped";
}

TEST(RewardDeadline, CrashInARewardCostsOnlyItsSample) {
  GuardedReward guarded(std::make_unique<Misbehaving>(), GuardOptions{10});
  std::vector<Sample> samples;
  for (const char* a : {"1", "crash", "2", "3"}) samples.push_back({"c", a, nullptr});
  const auto before = counters().reward_crashes.load();
  std::vector<Result> rs = score_batch(guarded, samples, 1);
  EXPECT_EQ(rs[1].reward, 0.0);
  EXPECT_TRUE(rs[1].details.value("crashed", false)) << rs[1].details.dump();
  EXPECT_NE(rs[1].details.value("reason", "").find("signal 11"), std::string::npos) << rs[1].details.dump();
  for (size_t i : {0, 2, 3}) EXPECT_EQ(rs[i].reward, 1.0) << rs[i].details.dump();
  EXPECT_EQ(counters().reward_crashes.load(), before + 1);
  EXPECT_EQ(children(), 0);
}

// A crash while other samples are in flight: they are scored again one at a time, and only the
// sample that crashes is blamed.
TEST(RewardDeadline, CrashAmongSamplesInFlightIsBlamedOnItsOwnSample) {
  GuardedReward guarded(std::make_unique<Misbehaving>(), GuardOptions{10});
  std::vector<Sample> samples;
  for (const char* a : {"slow", "crash", "slow", "1"}) samples.push_back({"c", a, nullptr});
  std::vector<Result> rs = score_batch(guarded, samples, 2);
  EXPECT_TRUE(rs[1].details.value("crashed", false)) << rs[1].details.dump();
  for (size_t i : {0, 2, 3}) EXPECT_EQ(rs[i].reward, 1.0) << i << ": " << rs[i].details.dump();
}

// Rewards built by name are guarded, and what they count in the worker reaches this process.
TEST(RewardDeadline, RewardsByNameRunGuardedAndTheirCountersArrive) {
  auto math = make_reward("math+format:0.2");
  EXPECT_NE(dynamic_cast<GuardedReward*>(math.get()), nullptr);
  RewardConfig raw;
  raw.deadline_s = 0;
  EXPECT_EQ(dynamic_cast<GuardedReward*>(make_reward("math", raw).get()), nullptr);
  const auto no_answer = counters().no_answer.load();
  std::vector<Result> rs = score_batch(
      *math, {{"<think>x</think><answer>\\boxed{4}</answer>", "4", nullptr}, {"I give up", "4", nullptr}}, 2);
  EXPECT_DOUBLE_EQ(rs[0].reward, 1.2);
  EXPECT_EQ(rs[0].details["math"]["check"], "exact");
  EXPECT_EQ(rs[1].reward, 0.0);
  EXPECT_EQ(counters().no_answer.load(), no_answer + 1);
}

// The training step itself: a reward that never returns for one prompt's completions costs that
// prompt's samples (0, counted in the step's metrics), not the job.
TEST(RewardDeadline, GrpoStepSurvivesARewardThatNeverReturns) {
  text::ByteCodec codec;
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  model::override_config(c, "vocab_size", "257");
  model::Transformer m(c);
  m.init_random(7, 0.02f);
  std::vector<data::Problem> probs;
  for (int i = 0; i < 4; ++i) probs.push_back({i, i == 2 ? "sleep" : std::string(1, char('b' + i)), ""});
  train::GrpoConfig gc;
  gc.prompts_per_step = 4;
  gc.group_size = 2;
  gc.max_prompt_tokens = 8;
  gc.max_completion_tokens = 4;
  GuardedReward reward(std::make_unique<Misbehaving>(), GuardOptions{0.3});
  train::GrpoTrainer trainer(
      m, codec, reward, probs, [](const data::Problem& p) { return p.question; }, gc, 1);
  const auto t0 = std::chrono::steady_clock::now();
  const train::StepStats st = trainer.step(0);
  EXPECT_LT(seconds_since(t0), 30.0);
  EXPECT_EQ(st.reward_timeouts, 2) << "the two completions of the prompt whose reward hangs";
  EXPECT_DOUBLE_EQ(st.reward_mean, 6.0 / 8.0);
}

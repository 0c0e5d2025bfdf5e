// The GRPO trainer end to end on a tiny byte-level model: a reward that prefers one letter is
// climbed within a few dozen steps (fixed seed); non-finite updates are skipped, then stop the run;
// and each option that acts inside a step is seen in the step's statistics: the KL is exactly 0
// while the reference equals the policy (step 0, and each refresh), KL goes to the loss or to the
// rewards, std scaling changes the update, masking and shaping act on truncated completions, and
// ppo_epochs x mini_batches optimizer steps are taken.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "grpo_test_util.h"

using namespace r1;
using test::LetterReward;

namespace {

train::GrpoTrainer make_trainer(model::Transformer& m, const text::Codec& codec, const reward::Reward& reward,
                                const train::GrpoConfig& gc, int steps = 10) {
  return train::GrpoTrainer(m, codec, reward, test::letter_problems(64), test::question, gc, steps);
}

TEST(GrpoTrainer, ClimbsASimpleReward) {
  text::ByteCodec codec;
  model::Transformer m = test::byte_model(3);
  train::GrpoConfig gc = test::small_grpo(8, 8, 12);
  LetterReward reward;
  train::GrpoTrainer trainer = make_trainer(m, codec, reward, gc, 40);
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
  reward::Result score(const reward::Sample&) const override {
    reward::Result r;
    r.reward = std::nan("");
    return r;
  }
};

TEST(GrpoTrainer, NonFiniteUpdatesAreSkippedThenStop) {
  text::ByteCodec codec;
  model::Transformer m = test::byte_model(5);
  std::vector<float> before(m.params().flat.f32(), m.params().flat.f32() + m.params().flat.numel());
  train::GrpoConfig gc = test::small_grpo(4, 4, 8);
  gc.max_bad_steps = 3;
  NanReward reward;
  train::GrpoTrainer trainer = make_trainer(m, codec, reward, gc);
  for (int s = 0; s < 2; ++s) EXPECT_EQ(trainer.step(s).skipped_updates, 1);
  EXPECT_TRUE(std::equal(before.begin(), before.end(), m.params().flat.f32()));
  try {
    trainer.step(2);
    FAIL() << "expected the run to stop";
  } catch (const r1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("3 consecutive non-finite updates"), std::string::npos) << e.what();
  }
}

// The reference log-probs go through the update's own micro-batches, so a reference equal to the
// policy gives a KL of exactly 0 (not 1e-7), however the batch is cut.
TEST(GrpoTrainer, KlIsExactlyZeroAtStepZeroOnCpu) {
  text::ByteCodec codec;
  model::Transformer m = test::byte_model(3);
  train::GrpoConfig gc = test::small_grpo(4, 4, 10);
  gc.loss.kl_coef = 0.1;
  gc.micro_batch_tokens = 40;  // several micro-batches
  test::EvenByteReward reward;
  train::GrpoTrainer trainer = make_trainer(m, codec, reward, gc);
  const train::StepStats s0 = trainer.step(0);
  ASSERT_TRUE(s0.kl.has_value());
  EXPECT_EQ(*s0.kl, 0.0);
  EXPECT_EQ(s0.updates, 1);
  const train::StepStats s1 = trainer.step(1);  // the policy moved at step 0
  EXPECT_GT(*s1.kl, 0.0);
}

TEST(GrpoTrainer, ReferenceRefreshEveryNSteps) {
  for (int refresh : {0, 2}) {
    text::ByteCodec codec;
    model::Transformer m = test::byte_model(3);
    train::GrpoConfig gc = test::small_grpo(4, 4, 10);
    gc.loss.kl_coef = 0.1;
    gc.ref_refresh_steps = refresh;
    gc.lr = 1e-2;
    test::EvenByteReward reward;
    train::GrpoTrainer trainer = make_trainer(m, codec, reward, gc);
    std::vector<double> kl;
    for (int s = 0; s < 4; ++s) kl.push_back(*trainer.step(s).kl);
    EXPECT_EQ(kl[0], 0.0);
    EXPECT_GT(kl[1], 0.0);
    EXPECT_GT(kl[3], 0.0);
    if (refresh == 2)
      EXPECT_EQ(kl[2], 0.0) << "step 2 starts from a fresh copy of the policy";
    else
      EXPECT_GT(kl[2], kl[1]) << "never refreshed: the policy keeps drifting from the step-0 copy";
  }
}

// With lr 0 every run samples the same completions; the reference is made different from the
// policy so the KL is large. KL in the loss adds beta * KL to the loss and leaves the rewards; KL in
// the reward changes the (kept, shaped) rewards.
TEST(GrpoTrainer, KlInTheLossOrInTheReward) {
  auto run = [](double beta, bool in_reward) {
    text::ByteCodec codec;
    model::Transformer m = test::byte_model(3);
    train::GrpoConfig gc = test::small_grpo(4, 4, 10);
    gc.lr = 0.0;
    gc.loss.reduction = train::LossReduction::TokenMean;
    gc.loss.kl_coef = beta;
    gc.kl_in_reward = in_reward;
    test::EvenByteReward reward;
    train::GrpoTrainer trainer = make_trainer(m, codec, reward, gc);
    if (trainer.reference()) trainer.reference()->init_random(99, 0.3f);
    return trainer.step(0);
  };
  const train::StepStats none = run(0.0, false), loss = run(0.5, false), rew = run(0.5, true);
  EXPECT_FALSE(none.kl.has_value());
  ASSERT_TRUE(loss.kl && rew.kl);
  EXPECT_GT(*loss.kl, 0.05);
  EXPECT_NE(*rew.kl, 0.0);
  // In the loss: the same rewards, the loss up by beta * KL (token mean).
  EXPECT_EQ(loss.reward_mean, none.reward_mean);
  EXPECT_EQ(loss.reward_std, none.reward_std);
  EXPECT_NEAR(loss.loss - none.loss, 0.5 * *loss.kl, 1e-6);
  // In the reward: the same scores, other (penalised) rewards, and no KL term in the loss.
  EXPECT_EQ(rew.reward_mean, none.reward_mean);
  EXPECT_GT(std::abs(rew.reward_std - none.reward_std), 1e-3);
  EXPECT_LT(std::abs(rew.loss - none.loss), 0.5 * 0.5 * *loss.kl);
}

// Dividing by the group's std scales every advantage (std < 1 here): a larger gradient.
TEST(GrpoTrainer, ScaleAdvantageByStdChangesTheUpdate) {
  std::vector<train::StepStats> st;
  for (bool scale : {true, false}) {
    text::ByteCodec codec;
    model::Transformer m = test::byte_model(3);
    train::GrpoConfig gc = test::small_grpo(4, 4, 10);
    gc.scale_advantage_by_std = scale;
    test::EvenByteReward reward;
    st.push_back(make_trainer(m, codec, reward, gc).step(0));
  }
  EXPECT_EQ(st[0].reward_mean, st[1].reward_mean);  // the same rollouts
  EXPECT_GT(st[0].grad_norm, 1.5 * st[1].grad_norm);
}

// Without an end-of-sequence id every completion is cut at the limit.
TEST(GrpoTrainer, MaskTruncatedLeavesCutCompletionsOutOfTheLoss) {
  for (bool mask : {false, true}) {
    test::NoEosCodec codec;
    model::Transformer m = test::byte_model(3);
    const std::vector<float> before = m.weights_host();
    train::GrpoConfig gc = test::small_grpo(4, 4, 6);
    gc.mask_truncated = mask;
    test::EvenByteReward reward;
    const train::StepStats st = make_trainer(m, codec, reward, gc).step(0);
    EXPECT_EQ(st.truncated_frac, 1.0);
    EXPECT_EQ(st.updates, mask ? 0 : 1);
    EXPECT_EQ(m.weights_host() == before, mask);
  }
}

TEST(GrpoTrainer, OverlongShapingPenalisesLongCompletions) {
  for (int buffer : {0, 4}) {
    test::NoEosCodec codec;
    model::Transformer m = test::byte_model(3);
    train::GrpoConfig gc = test::small_grpo(4, 4, 10);
    gc.overlong_buffer = buffer;
    gc.overlong_penalty = 0.5;
    test::EvenByteReward reward;
    const train::StepStats st = make_trainer(m, codec, reward, gc).step(0);
    if (buffer == 0) {
      EXPECT_FALSE(st.overlong_penalty.has_value());
    } else {
      ASSERT_TRUE(st.overlong_penalty.has_value());
      EXPECT_DOUBLE_EQ(*st.overlong_penalty, -0.5);  // every completion at the limit: the full penalty
    }
  }
}

TEST(GrpoTrainer, PpoEpochsTimesMiniBatchesOptimizerSteps) {
  text::ByteCodec codec;
  model::Transformer m = test::byte_model(3);
  train::GrpoConfig gc = test::small_grpo(4, 4, 10);
  gc.ppo_epochs = 2;
  gc.mini_batches = 2;
  test::EvenByteReward reward;
  train::GrpoTrainer trainer = make_trainer(m, codec, reward, gc);
  const train::StepStats st = trainer.step(0);
  EXPECT_EQ(st.updates, 4);
  EXPECT_EQ(trainer.optimizer().steps_taken(), 4);
  ASSERT_EQ(st.epoch_loss.size(), 2u);
  EXPECT_NE(st.epoch_loss[0], st.epoch_loss[1]);
}

// The rollout engine is built once with the trainer and serves every step; a KV pool of one
// sequence's blocks preempts (the count, the pool and its peak are in the step's metrics) and the
// rollouts are those of a pool that holds every sequence.
TEST(GrpoTrainer, OneEngineForTheRunAndItsKvCacheInTheMetrics) {
  test::NoEosCodec codec;
  std::vector<train::StepStats> st;
  for (int64_t kv_tokens : {int64_t(0), int64_t(16)}) {
    model::Transformer m = test::byte_model(3);
    train::GrpoConfig gc = test::small_grpo(4, 4, 10);  // 1-token prompts, 4 x 4 sequences of 11 tokens
    gc.kv_block_size = 4;
    gc.kv_cache_tokens = kv_tokens;
    test::EvenByteReward reward;
    train::GrpoTrainer trainer = make_trainer(m, codec, reward, gc);
    const rollout::Engine* engine = &trainer.engine();
    st.push_back(trainer.step(0));
    const int64_t steps_after_one = trainer.engine().stats().decode_steps;
    trainer.step(1);
    EXPECT_EQ(&trainer.engine(), engine);  // the same engine, pool and all
    EXPECT_GT(trainer.engine().stats().decode_steps, steps_after_one);
  }
  const train::StepStats &roomy = st[0], &tight = st[1];
  EXPECT_EQ(roomy.preemptions, 0);
  EXPECT_EQ(roomy.kv_blocks, 64 * 4);  // rollout_batch 64 sequences of 4 blocks (4 + 10 tokens)
  EXPECT_GT(roomy.kv_blocks_peak, 0);
  EXPECT_EQ(tight.kv_blocks, 4);
  EXPECT_LE(tight.kv_blocks_peak, 4);
  EXPECT_GT(tight.preemptions, 0);
  EXPECT_GT(roomy.concurrency, tight.concurrency);
  EXPECT_EQ(roomy.reward_mean, tight.reward_mean);  // the same completions
  EXPECT_NEAR(roomy.loss, tight.loss, 1e-5);        // old log-probs of a recomputed prefix: float rounding
  const run::Scalars metrics = train::step_metrics(tight);
  auto value = [&](const std::string& name) {
    for (const auto& [k, v] : metrics)
      if (k == name) return v;
    ADD_FAILURE() << name << " is not in the step's metrics";
    return -1.0;
  };
  EXPECT_EQ(value("rollout/preemptions"), double(tight.preemptions));
  EXPECT_EQ(value("rollout/kv_blocks"), 4.0);
  EXPECT_EQ(value("rollout/kv_blocks_peak"), double(tight.kv_blocks_peak));
  EXPECT_EQ(value("rollout/concurrency"), tight.concurrency);
}

// A KV pool too small for one sequence fails when the trainer is built, before any compute, with
// the bytes needed and available.
TEST(GrpoTrainer, KvMemoryFractionTooSmallFailsAtConstruction) {
  text::ByteCodec codec;
  model::Transformer m = test::byte_model(3);
  train::GrpoConfig gc = test::small_grpo(4, 4, 10);
  gc.kv_memory_fraction = 1e-12;
  test::EvenByteReward reward;
  try {
    make_trainer(m, codec, reward, gc);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("rollout.kv_memory_fraction"), std::string::npos) << what;
    EXPECT_NE(what.find("bytes"), std::string::npos) << what;
    EXPECT_NE(what.find("max_seq_len = 14 tokens"), std::string::npos) << what;
  }
}

}  // namespace

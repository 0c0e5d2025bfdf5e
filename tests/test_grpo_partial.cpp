// No idle tail (train/grpo_partial.h): partial rollouts carry unfinished sequences from step to
// step, each token with the log-prob and the version of the policy that sampled it (checked against
// scoring the tokens with every step's weights); with grpo.old_logprobs: trainer, older tokens keep
// that stored log-prob as pi_old; over-provisioning trains on exactly prompts_per_step finished
// groups, oldest first, and carries the rest; the rollout's occupancy (the GPU busy share) is 1 when
// every sequence runs to the same length, below 1 with a long tail, and higher with partial
// rollouts than without on the same long-tailed lengths.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <set>

#include "base/error.h"
#include "grpo_test_util.h"
#include "rollout/engine.h"
#include "train/grpo_partial.h"

using namespace r1;
using namespace r1::train;

namespace {

// The byte codec with its first `stops` ids as stop tokens: a random model stops after a
// geometric number of tokens, a long-tailed length distribution.
class ManyStopsCodec final : public text::Codec {
 public:
  explicit ManyStopsCodec(int stops) : stops_(stops) {}
  std::vector<int32_t> encode(const std::string& t) const override { return bytes_.encode(t); }
  std::string decode(const std::vector<int32_t>& ids) const override { return bytes_.decode(ids); }
  std::string token_text(int32_t id) const override { return bytes_.token_text(id); }
  std::vector<int32_t> eos_ids() const override {
    std::vector<int32_t> ids;
    for (int32_t i = 0; i < stops_; ++i) ids.push_back(i);
    return ids;
  }
  int32_t vocab_size() const override { return bytes_.vocab_size(); }

 private:
  int stops_;
  text::ByteCodec bytes_;
};

GrpoTrainer make_trainer(model::Transformer& m, const text::Codec& codec, const reward::Reward& reward,
                         const GrpoConfig& gc, int steps = 10) {
  return GrpoTrainer(m, codec, reward, test::letter_problems(64), test::question, gc, steps);
}

GrpoConfig partial_grpo(int prompts, int group, int max_tokens, int budget, int overprovision) {
  GrpoConfig gc = test::small_grpo(prompts, group, max_tokens);
  gc.partial_rollout_tokens = budget;
  gc.overprovision_prompts = overprovision;
  gc.lr = 1e-2;  // the weights move visibly from step to step
  return gc;
}

model::Transformer snapshot(const model::Transformer& m) {
  model::Transformer copy(m.config());
  model::copy_weights(copy, m);
  return copy;
}

}  // namespace

TEST(GrpoPartial, CarriedTokensHoldTheLogprobsAndVersionsOfThePolicyThatSampledThem) {
  ManyStopsCodec codec(64);
  model::Transformer m = test::byte_model(3);
  test::EvenByteReward reward;
  GrpoTrainer trainer = make_trainer(m, codec, reward, partial_grpo(2, 4, 12, 3, 2));
  std::vector<model::Transformer> weights;  // before each step: the policy that step samples with
  int64_t checked = 0, mixed = 0, told_apart = 0;
  for (int step = 0; step < 6; ++step) {
    weights.push_back(snapshot(m));
    const StepStats st = trainer.step(step);
    ASSERT_TRUE(st.carried_seqs.has_value());
    for (const Group& g : trainer.in_flight())
      for (const Sequence& s : g.seqs) {
        ASSERT_EQ(s.versions.size(), s.out.tokens.size());
        ASSERT_EQ(s.out.logprobs.size(), s.out.tokens.size());
        std::vector<std::vector<float>> by_step;
        for (const model::Transformer& w : weights) by_step.push_back(test::completion_logprobs(w, g, s));
        std::set<int32_t> versions(s.versions.begin(), s.versions.end());
        mixed += versions.size() > 1;
        for (size_t t = 0; t < s.out.tokens.size(); ++t) {
          const int32_t v = s.versions[t];
          ASSERT_GE(v, 0);
          ASSERT_LE(v, step);
          EXPECT_NEAR(s.out.logprobs[t], by_step[size_t(v)][t], 1e-4) << "token " << t << " of version " << v;
          ++checked;
          for (size_t other = 0; other < by_step.size(); ++other)
            told_apart += other != size_t(v) && std::fabs(by_step[other][t] - s.out.logprobs[t]) > 1e-3;
        }
      }
  }
  EXPECT_GT(checked, 50);
  EXPECT_GT(mixed, 3) << "sequences continued by a later policy";
  EXPECT_GT(told_apart, 20) << "the steps' weights must differ for the check to mean anything";
}

TEST(GrpoPartial, StepsTrainOnFinishedGroupsAndReportTheCarry) {
  ManyStopsCodec codec(24);
  model::Transformer m = test::byte_model(4);
  test::EvenByteReward reward;
  const GrpoConfig gc = partial_grpo(2, 4, 12, 3, 2);
  GrpoTrainer trainer = make_trainer(m, codec, reward, gc);
  double carried = 0, lag = 0;
  for (int step = 0; step < 5; ++step) {
    const StepStats st = trainer.step(step);
    EXPECT_LE(st.groups, gc.prompts_per_step);
    EXPECT_LE(st.response_length_max, gc.max_completion_tokens);
    double left = 0;
    for (const Group& g : trainer.in_flight())
      for (const Sequence& s : g.seqs) left += !rollout_done(s, gc.max_completion_tokens);
    EXPECT_EQ(*st.carried_seqs, left);
    EXPECT_LE(*st.version_lag_max, step);
    carried += *st.carried_seqs;
    lag = std::max(lag, *st.version_lag_max);
    EXPECT_LE(trainer.in_flight().size(), size_t(gc.prompts_per_step + gc.overprovision_prompts));
  }
  EXPECT_GT(carried, 0);
  EXPECT_GE(lag, 1) << "some trained tokens were sampled by an earlier step's policy";
}

// grpo.old_logprobs: trainer recomputes pi_old with the current weights; a token an older policy
// sampled keeps that policy's stored log-prob (else its ratio would hide the drift).
TEST(GrpoPartial, TrainerPiOldKeepsTheStoredLogprobsOfOlderTokens) {
  Group g = test::make_group(0, {5, 6}, {{1, 2, 3, 4}});
  Sequence& s = g.seqs[0];
  s.out.logprobs = {-1.0f, -2.0f, -3.0f, -4.0f};
  s.versions = {3, 3, 4, 5};
  s.old_logp = {-1.5f, -2.5f, -3.5f, -4.5f};
  std::vector<Group> kept = {g};
  keep_sampler_pi_old(kept, 5);
  EXPECT_EQ(kept[0].seqs[0].old_logp, (std::vector<float>{-1.0f, -2.0f, -3.0f, -4.5f}));

  // In a run: the sampler/trainer gap is measured on this step's tokens alone, so it stays at the
  // kernels' rounding although trained tokens lag behind the weights.
  ManyStopsCodec codec(64);
  model::Transformer m = test::byte_model(3);
  test::EvenByteReward reward;
  GrpoConfig gc = partial_grpo(2, 4, 12, 3, 2);
  gc.old_logprobs = OldLogprobs::Trainer;
  GrpoTrainer trainer = make_trainer(m, codec, reward, gc);
  double lag = 0, gap = 0;
  for (int step = 0; step < 6; ++step) {
    const StepStats st = trainer.step(step);
    lag = std::max(lag, *st.version_lag_max);
    if (st.logp_gap_max) gap = std::max(gap, *st.logp_gap_max);
  }
  EXPECT_GE(lag, 1);
  EXPECT_LT(gap, 1e-3);
}

// Over-provisioning with a budget every completion fits: all 5 groups finish in step 0, 2 are
// trained on, the 3 others are carried and trained on first in the next steps.
TEST(GrpoPartial, OverprovisionTrainsOnPromptsPerStepAndCarriesTheOthers) {
  ManyStopsCodec codec(24);
  model::Transformer m = test::byte_model(5);
  test::EvenByteReward reward;
  const GrpoConfig gc = partial_grpo(2, 4, 12, 12, 3);
  GrpoTrainer trainer = make_trainer(m, codec, reward, gc);
  auto draws = [&] {
    std::vector<int64_t> d;
    for (const Group& g : trainer.in_flight()) d.push_back(g.draw);
    return d;
  };
  StepStats st = trainer.step(0);
  EXPECT_EQ(st.groups, 2);
  EXPECT_EQ(*st.carried_seqs, 0);
  EXPECT_EQ(*st.version_lag_max, 0);
  EXPECT_EQ(draws(), (std::vector<int64_t>{2, 3, 4}));
  for (const Group& g : trainer.in_flight()) EXPECT_TRUE(group_done(g, gc.max_completion_tokens));
  EXPECT_EQ(trainer.cursor(), 5);
  st = trainer.step(1);  // draws 5 and 6 join; 2 and 3 are trained on, sampled by step 0's policy
  EXPECT_EQ(st.groups, 2);
  EXPECT_EQ(*st.version_lag_max, 1);
  EXPECT_EQ(draws(), (std::vector<int64_t>{4, 5, 6}));
  EXPECT_EQ(trainer.cursor(), 7);
}

TEST(GrpoPartial, BadSettingsFailBeforeAnyCompute) {
  GrpoConfig gc = test::small_grpo(2, 4, 12);
  gc.overprovision_prompts = 1;
  EXPECT_THROW(validate(gc), Error);
  gc.partial_rollout_tokens = 4;
  EXPECT_NO_THROW(validate(gc));
  gc.partial_rollout_tokens = -3;
  try {
    validate(gc);
    FAIL() << "accepted a negative budget";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("grpo.partial_rollout_tokens"), std::string::npos) << e.what();
  }
}

namespace {

double engine_occupancy(int stops, int max_new) {
  model::Transformer m = test::byte_model(9);
  rollout::EngineConfig ec;
  ec.max_batch = 16;
  ec.max_seq_len = 64;
  rollout::Engine engine(m, ec);
  rollout::GenerateParams gp;
  gp.sampling.seed = 3;
  gp.max_new_tokens = max_new;
  for (int32_t i = 0; i < stops; ++i) gp.stop_ids.push_back(i);
  std::vector<rollout::Request> reqs = {{{40, 41, 42}, 6, 0}, {{50, 51}, 6, 1}};
  engine.generate(reqs, gp);
  EXPECT_GT(engine.stats().decode_steps, 0);
  return rollout::occupancy(engine.stats());
}

}  // namespace

TEST(GrpoPartial, OccupancyIsOneForEqualLengthsAndLowerWithALongTail) {
  EXPECT_EQ(engine_occupancy(0, 20), 1.0);  // no stop token: all 12 run 20 tokens together
  const double tail = engine_occupancy(40, 40);
  EXPECT_GT(tail, 0.0);
  EXPECT_LT(tail, 0.8);
}

// The busy share of GRPO steps with a long-tailed length distribution, without and with partial
// rollouts (and over-provisioning): the budget cuts the tail.
TEST(GrpoPartial, PartialRolloutsRaiseTheOccupancyOfALongTail) {
  auto mean_occupancy = [](int budget, int overprovision) {
    ManyStopsCodec codec(12);
    model::Transformer m = test::byte_model(6);
    test::EvenByteReward reward;
    GrpoConfig gc = partial_grpo(4, 4, 40, budget, overprovision);
    GrpoTrainer trainer = make_trainer(m, codec, reward, gc);
    double sum = 0;
    for (int step = 0; step < 4; ++step) sum += trainer.step(step).occupancy / 4;
    return sum;
  };
  const double off = mean_occupancy(0, 0), on = mean_occupancy(6, 4);
  std::printf(
      "rollout/occupancy, 4 x 4 samples of up to 40 tokens: %.3f without, %.3f with partial rollouts "
      "(6 tokens a step, 4 more prompts)\n",
      off, on);
  EXPECT_GT(off, 0.0);
  EXPECT_LT(off, 0.7);
  EXPECT_GT(on, off + 0.1);
}

// pi_old by the trainer and the sampler/trainer mismatch correction (train/grpo_offpolicy.h), on
// hand-made groups whose sampler log-probs are the model's own moved by known ratios: recomputed
// pi_old makes every ratio of the first update exactly 1, the gap is measured, TIS truncates and
// MIS drops exactly the tokens past the cap, and the loss carries the weights; the recipe keys
// reach a run's metrics.
#include <gtest/gtest.h>

#include <cmath>

#include "base/error.h"
#include "base/fs.h"
#include "dist/world.h"
#include "grpo_test_util.h"
#include "test_util.h"
#include "train/grpo_offpolicy.h"

using namespace r1;
using namespace r1::train;

namespace {

const double kRatio[] = {1.3, 0.7, 1.1, 0.95, 2.5, 0.8, 1.02};  // sampler = trainer - log(ratio)

struct Fixture {
  model::Transformer m = test::byte_model(7);
  std::vector<Group> kept;
  std::vector<std::vector<float>> logp;  // each sequence's own, alone in its batch
  Fixture() {
    kept = {test::make_group(0, {5, 9, 14}, {{3, 7, 7, 1}, {40, 2}, {8, 8, 8, 8, 8, 9}}),
            test::make_group(1, {100, 4}, {{11, 12, 13}, {200}, {66, 67, 68, 69, 70}})};
    const double adv[] = {1.2, -0.4, -0.8, 0.5, -1.5, 1.0};
    int k = 0, i = 0;
    for (Group& g : kept)
      for (Sequence& s : g.seqs) {
        std::vector<float> lp = test::completion_logprobs(m, g, s);
        s.advantage = adv[i++];
        for (size_t t = 0; t < lp.size(); ++t, ++k) s.out.logprobs[t] = float(lp[t] - std::log(kRatio[k % 7]));
        logp.push_back(lp);
      }
  }
  std::vector<MiniBatch> plan(int64_t budget = 9) {
    return plan_mini_batches(kept, 2, 3, 1, budget, dist::host_comm());
  }
};

GrpoLossConfig no_clip_room() {
  GrpoLossConfig c;
  c.clip_low = c.clip_high = 0.0;  // any ratio != 1 is clipped on one side
  return c;
}

}  // namespace

TEST(GrpoOffPolicy, TrainerPiOldMakesTheFirstRatiosExactlyOne) {
  Fixture f;
  const std::vector<MiniBatch> plan = f.plan();
  model::TrainState st;
  const MiniBatchStats sampler = accumulate_gradients(f.m, st, plan[0], no_clip_room(), 1.0f, false);
  EXPECT_GT(sampler.clipped, 3.0) << "the sampler's pi_old clips tokens";
  trainer_old_logprobs(f.m, st, plan, 1.0f);
  const MiniBatchStats trainer = accumulate_gradients(f.m, st, plan[0], no_clip_room(), 1.0f, false);
  EXPECT_EQ(trainer.clipped, 0.0);
  // ratio 1 everywhere: loss = -sum_seq A / n_seq (seq-mean-token-mean)
  double want = 0;
  for (const Group& g : f.kept)
    for (const Sequence& s : g.seqs) want -= s.advantage / 6.0;
  EXPECT_NEAR(trainer.loss, want, 1e-6);
}

TEST(GrpoOffPolicy, GapAndCorrectionsAreTheKnownRatios) {
  Fixture f;
  model::TrainState st;
  trainer_old_logprobs(f.m, st, f.plan(), 1.0f);
  for (IsCorrection c : {IsCorrection::None, IsCorrection::Tis, IsCorrection::Mis}) {
    const SamplerGap gap = correct_sampler_mismatch(f.kept, c, 2.0);
    EXPECT_EQ(gap.tokens, 21);
    EXPECT_NEAR(gap.max_abs, std::log(2.5), 1e-4);
    int k = 0;
    int64_t past = 0;
    for (const Group& g : f.kept)
      for (const Sequence& s : g.seqs) {
        ASSERT_EQ(s.is_weight.size(), c == IsCorrection::None ? 0u : s.out.tokens.size());
        for (size_t t = 0; t < s.out.tokens.size(); ++t, ++k) {
          const double r = kRatio[k % 7];
          past += r > 2.0 ? 1 : 0;
          if (c == IsCorrection::Tis) EXPECT_NEAR(s.is_weight[t], std::min(r, 2.0), 1e-4) << k;
          if (c == IsCorrection::Mis) EXPECT_EQ(s.is_weight[t], (r > 2.0 || r < 0.5) ? 0.0f : 1.0f) << k;
        }
      }
    EXPECT_EQ(gap.masked, c == IsCorrection::None ? 0 : past) << int(c);
    EXPECT_GT(past, 0);
  }
}

TEST(GrpoOffPolicy, LossCarriesTheCorrectionWeights) {
  Fixture f;
  const std::vector<MiniBatch> plan = f.plan(1 << 20);
  model::TrainState st;
  trainer_old_logprobs(f.m, st, plan, 1.0f);
  for (IsCorrection c : {IsCorrection::Tis, IsCorrection::Mis}) {
    correct_sampler_mismatch(f.kept, c, 2.0);
    const MiniBatchStats got = accumulate_gradients(f.m, st, plan[0], GrpoLossConfig(), 1.0f, false);
    double want = 0;  // ratio 1 (trainer pi_old): -w_t A per token, seq-mean-token-mean
    for (const Group& g : f.kept)
      for (const Sequence& s : g.seqs)
        for (float w : s.is_weight) want -= double(w) * s.advantage / (double(s.out.tokens.size()) * 6.0);
    EXPECT_NEAR(got.loss, want, 1e-6) << int(c);
  }
}

TEST(GrpoOffPolicy, CorrectionWithoutTrainerPiOldIsRefusedByKey) {
  GrpoConfig c = test::small_grpo();
  c.is_correction = IsCorrection::Tis;
  try {
    validate(c);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("grpo.old_logprobs: trainer"), std::string::npos) << e.what();
  }
  c.old_logprobs = OldLogprobs::Trainer;
  c.is_cap = 1.0;
  EXPECT_THROW(validate(c), Error);
  EXPECT_THROW(parse_is_correction("ppo"), Error);
}

TEST(GrpoOffPolicy, RecipeKeysReachTheMetrics) {
  test::TempDir dir;
  auto r = test::run_r1("grpo " + test::source_path("recipes/tiny_byte_gsm8k.yaml") + " data.path=" +
                        test::source_path("data/gsm8k_train.jsonl") + " run.dir=" + dir.path() +
                        " run.name=x train.steps=1 grpo.old_logprobs=trainer grpo.is_correction=mis");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> lines = test::read_lines(dir.file("x/metrics.jsonl"));
  ASSERT_EQ(lines.size(), 1u);
  for (const char* key : {"\"logp_gap/max\"", "\"logp_gap/mean\"", "\"is/corrected_frac\"", "\"clip_fraction_first\""})
    EXPECT_NE(lines[0].find(key), std::string::npos) << key << " in " << lines[0];
}

// grpo.sampler_logprobs: with top-k truncation, `sampled` reports each token's log-prob under the
// renormalised kept set, above the trainer's full-softmax one by -log(kept mass) (so the gap the
// step measures is positive); `tempered` reports what the trainer recomputes (on the CPU the same
// numbers up to float rounding).
TEST(GrpoOffPolicy, SampledLogprobsAreOfTheTruncatedDistribution) {
  const std::vector<data::Problem> probs = test::letter_problems(8);
  test::LetterReward reward;
  text::ByteCodec codec;
  double gap[2] = {0, 0};
  for (const bool sampled : {false, true}) {
    model::Transformer m = test::byte_model(5);
    GrpoConfig gc = test::small_grpo(4, 4, 10);
    gc.top_k = 4;
    gc.old_logprobs = OldLogprobs::Trainer;
    gc.sampled_logprobs = sampled;
    GrpoTrainer trainer(m, codec, reward, probs, test::question, gc, 4);
    const StepStats st = trainer.step(0);
    ASSERT_TRUE(st.logp_gap_mean.has_value());
    gap[sampled] = *st.logp_gap_mean;
  }
  EXPECT_LT(gap[0], 1e-4);
  // 4 of 257 near-uniform tokens keep about 4/257 of the mass: log(257/4) = 4.2 per token.
  EXPECT_GT(gap[1], 3.0);
}

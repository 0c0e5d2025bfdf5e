// Each GRPO option at the phase it belongs to, so a test fails when the option is ignored or
// mis-wired: the recipe key reaches its field, each numeric key is validated by name, scoring
// shapes and masks, the filter reads the named reward part, advantages scale or not, the plan
// cuts mini-batches and drops masked sequences, KL goes to the loss or to the reward, each
// reduction is what the update computes across micro-batches, and ppo_epochs repeats the passes.
#include <gtest/gtest.h>

#include <cmath>

#include "base/error.h"
#include "dist/world.h"
#include "grpo_test_util.h"
#include "model/config.h"
#include "run/recipe.h"
#include "train/grpo_run.h"

using namespace r1;
using namespace r1::train;

namespace {

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one naming " << needle;
  } catch (const r1::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(GrpoConfig, EveryNumericKeyIsValidatedByName) {
  const std::vector<std::pair<std::function<void(GrpoConfig&)>, std::string>> bad = {
      {[](GrpoConfig& c) { c.prompts_per_step = 0; }, "grpo.prompts_per_step"},
      {[](GrpoConfig& c) { c.group_size = 1; }, "grpo.group_size"},
      {[](GrpoConfig& c) { c.max_prompt_tokens = 0; }, "grpo.max_prompt_tokens"},
      {[](GrpoConfig& c) { c.max_completion_tokens = 0; }, "grpo.max_completion_tokens"},
      {[](GrpoConfig& c) { c.temperature = 0; }, "grpo.temperature"},
      {[](GrpoConfig& c) { c.top_p = 1.5f; }, "grpo.top_p"},
      {[](GrpoConfig& c) { c.top_k = -1; }, "grpo.top_k"},
      {[](GrpoConfig& c) { c.rollout_batch = 0; }, "grpo.rollout_batch"},
      {[](GrpoConfig& c) { c.kv_memory_fraction = 0; }, "rollout.kv_memory_fraction"},
      {[](GrpoConfig& c) { c.kv_memory_fraction = 1.5; }, "rollout.kv_memory_fraction"},
      {[](GrpoConfig& c) { c.kv_cache_tokens = -1; }, "rollout.kv_cache_tokens"},
      {[](GrpoConfig& c) { c.kv_block_size = 0; }, "rollout.kv_block_size"},
      {[](GrpoConfig& c) { c.loss.clip_low = -0.1; }, "grpo.clip_low"},
      {[](GrpoConfig& c) { c.loss.clip_low = 1.0; }, "grpo.clip_low"},
      {[](GrpoConfig& c) { c.loss.clip_high = -0.2; }, "grpo.clip_high"},
      {[](GrpoConfig& c) { c.loss.clip_low = 0.3; }, "grpo.clip_low (0.3) must be <= grpo.clip_high (0.2)"},
      {[](GrpoConfig& c) { c.loss.kl_coef = -1; }, "grpo.kl_coef"},
      {[](GrpoConfig& c) { c.kl_in_reward = true; }, "grpo.kl_in_reward"},
      {[](GrpoConfig& c) { c.ref_refresh_steps = 5; }, "grpo.ref_refresh_steps"},
      {[](GrpoConfig& c) { c.ref_refresh_steps = -1; }, "grpo.ref_refresh_steps"},
      {[](GrpoConfig& c) { c.loss.norm_constant = -3; }, "grpo.norm_constant"},
      {[](GrpoConfig& c) { c.loss.norm_constant = 512; }, "grpo.norm_constant (512) applies only"},
      {[](GrpoConfig& c) { c.ppo_epochs = 0; }, "grpo.ppo_epochs"},
      {[](GrpoConfig& c) { c.mini_batches = 0; }, "grpo.mini_batches"},
      {[](GrpoConfig& c) { c.mini_batches = 100; }, "grpo.mini_batches (100) exceeds"},
      {[](GrpoConfig& c) { c.micro_batch_tokens = 0; }, "grpo.micro_batch_tokens"},
      {[](GrpoConfig& c) { c.max_bad_steps = 0; }, "grpo.max_bad_steps"},
      {[](GrpoConfig& c) { c.lr = -1e-3; }, "train.lr"},
      {[](GrpoConfig& c) { c.lr = std::nan(""); }, "train.lr"},
      {[](GrpoConfig& c) { c.max_grad_norm = -1; }, "train.max_grad_norm"},
      {[](GrpoConfig& c) { c.adamw.beta1 = 1.0f; }, "train.beta1"},
      {[](GrpoConfig& c) { c.adamw.beta2 = -0.1f; }, "train.beta2"},
      {[](GrpoConfig& c) { c.adamw.weight_decay = -0.1f; }, "train.weight_decay"},
      {[](GrpoConfig& c) { c.dynamic_sampling_max_rounds = 0; },
       "grpo.dynamic_sampling_max_rounds must be >= 1"},
      {[](GrpoConfig& c) { c.dynamic_sampling_filter.clear(); }, "grpo.dynamic_sampling_filter"},
      {[](GrpoConfig& c) { c.overlong_buffer = 10; }, "grpo.overlong_buffer"},
      {[](GrpoConfig& c) { c.overlong_buffer = -1; }, "grpo.overlong_buffer"},
      {[](GrpoConfig& c) { c.overlong_penalty = -1; }, "grpo.overlong_penalty"},
      {[](GrpoConfig& c) { c.partial_rollout_tokens = -1; }, "grpo.partial_rollout_tokens"},
      {[](GrpoConfig& c) {
         c.partial_rollout_tokens = 4;
         c.overprovision_prompts = -2;
       },
       "grpo.overprovision_prompts must be >= 0"},
      {[](GrpoConfig& c) { c.sampled_logprobs = true; }, "grpo.sampler_logprobs: sampled needs grpo.old_logprobs: trainer"},
      {[](GrpoConfig& c) {
         c.sampled_logprobs = true;
         c.old_logprobs = OldLogprobs::Trainer;
         c.partial_rollout_tokens = 4;
       },
       "grpo.sampler_logprobs: sampled cannot be used with grpo.partial_rollout_tokens"},
      {[](GrpoConfig& c) { c.overprovision_prompts = 2; },
       "grpo.overprovision_prompts (2) needs grpo.partial_rollout_tokens"},
  };
  const GrpoConfig good = test::small_grpo(4, 4, 10);
  EXPECT_NO_THROW(validate(good));
  for (const auto& [mutate, key] : bad) {
    GrpoConfig c = good;
    mutate(c);
    expect_error([&] { validate(c); }, key);
  }
  // Clip-higher is valid; so is a Dr. GRPO divisor of 1 or below.
  GrpoConfig c = good;
  c.loss.clip_high = 0.28;
  c.loss.reduction = LossReduction::SeqMeanTokenSumNorm;
  c.loss.norm_constant = 0.5;
  EXPECT_NO_THROW(validate(c));
}

TEST(GrpoConfig, NormConstantIsUsedAsGivenAndZeroMeansTheLengthLimit) {
  GrpoConfig c = test::small_grpo(4, 4, 10);
  c.loss.reduction = LossReduction::SeqMeanTokenSumNorm;
  EXPECT_EQ(update_loss_config(c).norm_constant, 10.0);  // 0: max_completion_tokens
  for (double given : {0.5, 1.0, 300.0}) {
    c.loss.norm_constant = given;
    EXPECT_EQ(update_loss_config(c).norm_constant, given);
  }
}

// A run whose longest prompt + completion passes the model's positions fails at start-up naming the
// keys (the 1.5B run at 512 + 32,768 used to fail in the trainer, after a 14-minute rollout).
TEST(GrpoConfig, LongestSequenceMustFitTheModelsPositions) {
  const model::ModelConfig mc = model::preset_config("qwen2.5-1.5b");  // 32,768 positions
  GrpoConfig c = test::small_grpo(4, 4, 10);
  c.max_prompt_tokens = 512;
  c.max_completion_tokens = 32768 - 512;
  EXPECT_NO_THROW(validate_for_model(c, mc));
  c.max_completion_tokens = 32768;
  expect_error([&] { validate_for_model(c, mc); },
               "grpo.max_prompt_tokens + grpo.max_completion_tokens = 512 + 32768 = 33280 exceeds the model's "
               "max_position_embeddings (32768)");
  expect_error([&] { validate_for_model(c, mc); }, "lower grpo.max_completion_tokens to 32256");
}

TEST(GrpoRecipe, EveryKeyReachesItsField) {
  run::Recipe r(grpo_recipe_defaults());
  r.apply_args({"grpo.prompts_per_step=6",
                "grpo.group_size=5",
                "grpo.max_prompt_tokens=77",
                "grpo.max_completion_tokens=99",
                "grpo.temperature=0.7",
                "grpo.top_p=0.9",
                "grpo.top_k=13",
                "grpo.rollout_batch=11",
                "grpo.scale_advantage_by_std=false",
                "grpo.clip_low=0.15",
                "grpo.clip_high=0.28",
                "grpo.kl_coef=0.04",
                "grpo.kl_estimator=k2",
                "grpo.kl_in_reward=true",
                "grpo.ref_refresh_steps=7",
                "grpo.loss_reduction=seq_mean_token_sum_norm",
                "grpo.norm_constant=0.5",
                "grpo.ppo_epochs=3",
                "grpo.mini_batches=2",
                "grpo.micro_batch_tokens=333",
                "grpo.dynamic_sampling=true",
                "grpo.dynamic_sampling_max_rounds=9",
                "grpo.dynamic_sampling_filter=format",
                "grpo.mask_truncated=true",
                "grpo.overlong_buffer=17",
                "grpo.overlong_penalty=0.75",
                "grpo.max_bad_steps=4",
                "train.lr=2e-5",
                "train.max_grad_norm=0.5",
                "train.beta1=0.8",
                "train.beta2=0.95",
                "train.weight_decay=0.1",
                "train.seed=42",
                "rollout.kv_memory_fraction=0.3",
                "rollout.kv_cache_tokens=4096",
                "rollout.kv_block_size=32",
                "rollout.ignore_eos=true",
                "grpo.old_logprobs=trainer",
                "grpo.partial_rollout_tokens=48",
                "grpo.overprovision_prompts=3"});
  const GrpoConfig g = grpo_config(r);
  EXPECT_EQ(g.prompts_per_step, 6);
  EXPECT_EQ(g.group_size, 5);
  EXPECT_EQ(g.max_prompt_tokens, 77);
  EXPECT_EQ(g.max_completion_tokens, 99);
  EXPECT_FLOAT_EQ(g.temperature, 0.7f);
  EXPECT_FLOAT_EQ(g.top_p, 0.9f);
  EXPECT_EQ(g.top_k, 13);
  EXPECT_EQ(g.rollout_batch, 11);
  EXPECT_FALSE(g.scale_advantage_by_std);
  EXPECT_EQ(g.loss.clip_low, 0.15);
  EXPECT_EQ(g.loss.clip_high, 0.28);
  EXPECT_EQ(g.loss.kl_coef, 0.04);
  EXPECT_EQ(g.loss.kl_estimator, KlEstimator::K2);
  EXPECT_TRUE(g.kl_in_reward);
  EXPECT_EQ(g.ref_refresh_steps, 7);
  EXPECT_EQ(g.loss.reduction, LossReduction::SeqMeanTokenSumNorm);
  EXPECT_EQ(g.loss.norm_constant, 0.5);
  EXPECT_EQ(g.ppo_epochs, 3);
  EXPECT_EQ(g.mini_batches, 2);
  EXPECT_EQ(g.micro_batch_tokens, 333);
  EXPECT_TRUE(g.dynamic_sampling);
  EXPECT_EQ(g.dynamic_sampling_max_rounds, 9);
  EXPECT_EQ(g.dynamic_sampling_filter, "format");
  EXPECT_TRUE(g.mask_truncated);
  EXPECT_EQ(g.overlong_buffer, 17);
  EXPECT_EQ(g.overlong_penalty, 0.75);
  EXPECT_EQ(g.max_bad_steps, 4);
  EXPECT_EQ(g.lr, 2e-5);
  EXPECT_EQ(g.max_grad_norm, 0.5);
  EXPECT_FLOAT_EQ(g.adamw.beta1, 0.8f);
  EXPECT_FLOAT_EQ(g.adamw.beta2, 0.95f);
  EXPECT_FLOAT_EQ(g.adamw.weight_decay, 0.1f);
  EXPECT_EQ(g.seed, 42u);
  EXPECT_EQ(g.kv_memory_fraction, 0.3);
  EXPECT_EQ(g.kv_cache_tokens, 4096);
  EXPECT_EQ(g.partial_rollout_tokens, 48);
  EXPECT_EQ(g.overprovision_prompts, 3);
  EXPECT_EQ(g.kv_block_size, 32);
  EXPECT_TRUE(g.ignore_eos);
  EXPECT_EQ(g.old_logprobs, OldLogprobs::Trainer);
  EXPECT_FALSE(g.sampled_logprobs);  // tempered; sampled excludes the partial rollouts set here:
  run::Recipe r2(grpo_recipe_defaults());
  r2.apply_args({"grpo.old_logprobs=trainer", "grpo.sampler_logprobs=sampled"});
  EXPECT_TRUE(grpo_config(r2).sampled_logprobs);
  const rollout::EngineConfig e = engine_config(g);
  EXPECT_EQ(e.max_batch, 11);
  EXPECT_EQ(e.max_seq_len, 77 + 99);
  EXPECT_EQ(e.kv_memory_fraction, 0.3);
  EXPECT_EQ(e.kv_cache_tokens, 4096);
  EXPECT_EQ(e.kv_block_size, 32);
}

// The byte codec with every even byte an end-of-sequence id: a random model stops within a few
// tokens (each token ends the completion with probability about 1/2).
class EvenEosCodec final : public text::Codec {
 public:
  std::vector<int32_t> encode(const std::string& t) const override { return bytes_.encode(t); }
  std::string decode(const std::vector<int32_t>& ids) const override { return bytes_.decode(ids); }
  std::string token_text(int32_t id) const override { return bytes_.token_text(id); }
  std::vector<int32_t> eos_ids() const override {
    std::vector<int32_t> ids;
    for (int32_t i = 0; i < bytes_.vocab_size(); i += 2) ids.push_back(i);
    return ids;
  }
  int32_t vocab_size() const override { return bytes_.vocab_size(); }

 private:
  text::ByteCodec bytes_;
};

TEST(GrpoRollout, IgnoreEosRunsEveryCompletionToTheLengthLimit) {
  EvenEosCodec codec;
  test::LetterReward reward;
  const std::vector<data::Problem> probs = test::letter_problems(8);
  for (const bool ignore : {false, true}) {
    model::Transformer m = test::byte_model(3);
    GrpoConfig gc = test::small_grpo(4, 4, 12);
    gc.ignore_eos = ignore;
    GrpoTrainer trainer(m, codec, reward, probs, test::question, gc, 4);
    const StepStats st = trainer.step(0);
    if (ignore) {
      EXPECT_EQ(st.response_length_mean, 12.0);
      EXPECT_EQ(st.truncated_frac, 1.0);
    } else {
      EXPECT_LT(st.response_length_mean, 6.0);  // about 2: the stop ids are half the vocabulary
      EXPECT_LT(st.truncated_frac, 0.2);
    }
  }
}

TEST(GrpoRecipe, BadValuesFailNamingTheKey) {
  auto config_with = [](const std::vector<std::string>& args) {
    run::Recipe r(grpo_recipe_defaults());
    r.apply_args(args);
    return grpo_config(r);
  };
  expect_error([&] { config_with({"grpo.clip_high=-0.1"}); }, "grpo.clip_high");
  expect_error([&] { config_with({"grpo.sampler_logprobs=raw"}); }, "grpo.sampler_logprobs must be tempered or sampled");
  expect_error(
      [&] {
        config_with({"grpo.dynamic_sampling=true", "grpo.dynamic_sampling_max_rounds=0"});
      },
      "grpo.dynamic_sampling_max_rounds");
  // The filter must be a part of the reward (reward.spec is math+format:0.2 by default).
  expect_error(
      [&] {
        config_with({"grpo.dynamic_sampling=true", "grpo.dynamic_sampling_filter=code"});
      },
      "grpo.dynamic_sampling_filter 'code' is not a part of reward.spec 'math+format:0.2'");
  EXPECT_NO_THROW(config_with({"grpo.dynamic_sampling=true", "grpo.dynamic_sampling_filter=reward"}));
  EXPECT_NO_THROW(config_with({"grpo.dynamic_sampling=true"}));  // "math", the accuracy part
}

// ---- score ----

TEST(GrpoScore, OverlongPenaltyIsLinearOverTheBuffer) {
  // max 10 tokens, buffer 4: no penalty up to 6 tokens, then -penalty * (L - 6) / 4.
  for (auto [len, want] : {std::pair{3, 0.0}, {6, 0.0}, {7, -0.25}, {8, -0.5}, {10, -1.0}})
    EXPECT_DOUBLE_EQ(overlong_penalty(len, 10, 4, 1.0), want) << len;
  EXPECT_DOUBLE_EQ(overlong_penalty(8, 10, 4, 2.0), -1.0);
  EXPECT_DOUBLE_EQ(overlong_penalty(10, 10, 0, 1.0), 0.0);  // buffer 0: off
}

// A constant reward of 1 with a two-part composite's details ("math" right for even lengths).
class PartsReward final : public reward::Reward {
 public:
  std::string name() const override { return "parts"; }
  reward::Result score(const reward::Sample& s) const override {
    reward::Result r;
    const double math = s.completion.size() % 2 == 0 ? 1.0 : 0.0;
    r.reward = 1.0;
    r.details = {{"math", {{"reward", math}}}, {"format", {{"reward", 0.5}}}};
    return r;
  }
};

std::vector<Group> scored_groups(const GrpoConfig& cfg, const std::vector<int>& lengths,
                                 bool truncated_last) {
  std::vector<std::vector<int32_t>> comps;
  for (int n : lengths) comps.push_back(std::vector<int32_t>(size_t(n), 'x'));
  std::vector<Group> groups = {test::make_group(0, {'q'}, comps)};
  for (size_t i = 0; i < lengths.size(); ++i) groups[0].seqs[i].text = std::string(size_t(lengths[i]), 'x');
  if (truncated_last) groups[0].seqs.back().out.finish = rollout::FinishReason::Length;
  const std::vector<data::Problem> probs = {{0, "q", "1"}};
  PartsReward reward;
  score_groups(groups, reward, probs, cfg);
  return groups;
}

TEST(GrpoScore, OverlongShapingLowersTheRewardNotTheScore) {
  GrpoConfig cfg = test::small_grpo(4, 4, 10);
  cfg.overlong_buffer = 4;
  cfg.overlong_penalty = 1.0;
  const std::vector<Group> g = scored_groups(cfg, {3, 7, 8, 10}, false);
  const double want[] = {1.0, 0.75, 0.5, 0.0};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_DOUBLE_EQ(g[0].seqs[i].score, 1.0);
    EXPECT_DOUBLE_EQ(g[0].seqs[i].reward, want[i]) << i;
  }
  cfg.overlong_buffer = 0;  // off: the reward is the score
  for (const Sequence& s : scored_groups(cfg, {3, 7, 8, 10}, false)[0].seqs) EXPECT_DOUBLE_EQ(s.reward, 1.0);
}

TEST(GrpoScore, MaskTruncatedTakesCutCompletionsOutOfTheLoss) {
  GrpoConfig cfg = test::small_grpo(4, 4, 10);
  for (bool mask : {false, true}) {
    cfg.mask_truncated = mask;
    const std::vector<Group> g = scored_groups(cfg, {3, 4, 5, 10}, true);
    EXPECT_TRUE(g[0].seqs[3].truncated);
    EXPECT_EQ(g[0].seqs[3].in_loss, !mask);
    for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(g[0].seqs[i].in_loss && !g[0].seqs[i].truncated);
  }
}

// ---- filter ----

TEST(GrpoFilter, DynamicSamplingLooksAtTheNamedPart) {
  GrpoConfig cfg = test::small_grpo(4, 4, 10);
  cfg.dynamic_sampling = true;
  cfg.dynamic_sampling_filter = "math";
  // Rewards all equal (1.0), accuracy varies (even/odd lengths): DAPO keeps the group.
  std::vector<Group> g = scored_groups(cfg, {2, 3, 4, 5}, false);
  EXPECT_EQ(g[0].seqs[0].filter_value, 1.0);
  EXPECT_EQ(g[0].seqs[1].filter_value, 0.0);
  GroupVerdict v = judge_group(g[0], true);
  EXPECT_TRUE(v.zero_variance);
  EXPECT_FALSE(v.filtered);
  // Accuracy all equal (even lengths): dropped, whatever the reward does.
  g = scored_groups(cfg, {2, 4, 6, 8}, false);
  EXPECT_TRUE(judge_group(g[0], true).filtered);
  EXPECT_FALSE(judge_group(g[0], false).filtered);  // without dynamic sampling nothing is dropped
  // On "reward", the shaped reward decides.
  cfg.dynamic_sampling_filter = "reward";
  cfg.overlong_buffer = 4;
  g = scored_groups(cfg, {2, 4, 6, 8}, false);
  EXPECT_FALSE(judge_group(g[0], true).filtered);
  // A part the reward does not have names the key.
  cfg.dynamic_sampling_filter = "code";
  expect_error(
      [&] {
        scored_groups(cfg, {2, 4}, false);
      },
      "grpo.dynamic_sampling_filter 'code': the reward 'parts' has no such part (parts: format, math)");
}

// ---- advantages ----

TEST(GrpoAdvantages, StdScalingOnAndOff) {
  std::vector<Group> kept = {test::make_group(0, {1}, {{2}, {3}, {4}, {5}}, {1, 0, 0, 0})};
  const double sd = 0.5;  // unbiased std of {1, 0, 0, 0}
  assign_advantages(kept, true);
  EXPECT_NEAR(kept[0].seqs[0].advantage, 0.75 / (sd + 1e-6), 1e-12);
  EXPECT_NEAR(kept[0].seqs[1].advantage, -0.25 / (sd + 1e-6), 1e-12);
  assign_advantages(kept, false);  // Dr. GRPO
  EXPECT_DOUBLE_EQ(kept[0].seqs[0].advantage, 0.75);
  EXPECT_DOUBLE_EQ(kept[0].seqs[1].advantage, -0.25);
}

// ---- the plan ----

TEST(GrpoPlan, MiniBatchesCoverTheTrainingSequencesOnce) {
  std::vector<Group> kept = {test::make_group(0, {1, 2}, {{3, 4, 5}, {6}, {7, 8}}),
                             test::make_group(1, {9}, {{10, 11}, {12, 13, 14, 15}, {16}})};
  kept[0].seqs[1].in_loss = false;  // masked: in no mini-batch, in no count
  dist::Comm& single = dist::host_comm();
  const std::vector<MiniBatch> plan = plan_mini_batches(kept, 2, 3, 2, 8192, single);
  ASSERT_EQ(plan.size(), 2u);  // 5 training sequences: 3 + 2
  EXPECT_EQ(plan[0].scale.sequences, 3);
  EXPECT_EQ(plan[0].scale.tokens, 3 + 2 + 2);
  EXPECT_EQ(plan[1].scale.sequences, 2);
  EXPECT_EQ(plan[1].scale.tokens, 4 + 1);
  EXPECT_EQ(plan[0].micro[0][1].seq, &kept[0].seqs[2]);
  // A small token budget: more micro-batches, the same scale.
  const std::vector<MiniBatch> fine = plan_mini_batches(kept, 2, 3, 2, 4, single);
  EXPECT_GT(fine[0].micro.size(), 1u);
  EXPECT_EQ(fine[0].scale.tokens, plan[0].scale.tokens);
}

// ---- reference: KL in the reward or in the loss ----

TEST(GrpoReference, KlInRewardPenalisesRewardsAndLeavesTheLoss) {
  std::vector<Group> kept = {test::make_group(0, {1}, {{2, 3}, {4}}, {1.0, 0.0})};
  kept[0].seqs[0].out.logprobs = {-1.0f, -2.0f};
  kept[0].seqs[0].ref_logp = {-1.5f, -1.0f};  // k1 = 0.5 - 1.0
  kept[0].seqs[1].out.logprobs = {-0.5f};
  kept[0].seqs[1].ref_logp = {-0.75f};  // k1 = 0.25
  const double total = apply_kl_penalty(kept, 0.1);
  EXPECT_DOUBLE_EQ(total, -0.5 + 0.25);
  EXPECT_DOUBLE_EQ(kept[0].seqs[0].reward, 1.0 - 0.1 * -0.5);
  EXPECT_DOUBLE_EQ(kept[0].seqs[1].reward, 0.0 - 0.1 * 0.25);
  GrpoConfig cfg = test::small_grpo();
  cfg.loss.kl_coef = 0.1;
  EXPECT_EQ(update_loss_config(cfg).kl_coef, 0.1);  // in the loss
  cfg.kl_in_reward = true;
  EXPECT_EQ(update_loss_config(cfg).kl_coef, 0.0);  // in the reward, not twice
}

}  // namespace

// Token-balanced micro-batches (train/micro_batches.h): fewer and evener than filling each in turn,
// every sequence once, a sequence longer than the budget alone; GRPO, SFT and the reward model
// split their batches so, a step's gradients do not depend on the split beyond summation order,
// and an over-long sequence trains (its forward checkpointed when saving would not fit).
#include <gtest/gtest.h>

#include <cmath>

#include "base/error.h"
#include "base/rng.h"
#include "data/sft_data.h"
#include "dist/world.h"
#include "grpo_test_util.h"
#include "model/activation_memory.h"
#include "tensor/device_memory.h"
#include "train/grpo_offpolicy.h"
#include "train/micro_batches.h"
#include "train/rm.h"
#include "train/sft.h"

using namespace r1;
using namespace r1::train;

namespace {

using Groups = std::vector<std::vector<size_t>>;

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

TEST(MicroBatches, BalancedWhereFillingInTurnIsNot) {
  // Filling in turn: [6], [6, 4], [4] (three forwards, 6/10/4 tokens); balanced: two of 10.
  EXPECT_EQ(balanced_micro_batches({6, 6, 4, 4}, 10), (Groups{{0, 2}, {1, 3}}));
  // 17 tokens over a budget of 8: three micro-batches of 6, 6 and 5 rather than 8, 8, 1.
  const Groups g = balanced_micro_batches({2, 2, 2, 2, 2, 2, 2, 2, 1}, 8);
  ASSERT_EQ(g.size(), 3u);
  std::vector<int64_t> loads;
  for (const auto& grp : g) {
    int64_t n = 0;
    for (size_t i : grp) n += i == 8 ? 1 : 2;
    loads.push_back(n);
  }
  EXPECT_EQ(*std::max_element(loads.begin(), loads.end()) - *std::min_element(loads.begin(), loads.end()), 1);
  EXPECT_EQ(balanced_micro_batches({5}, 100), (Groups{{0}}));
  EXPECT_TRUE(balanced_micro_batches({}, 100).empty());
}

TEST(MicroBatches, SequenceLongerThanTheBudgetGoesAlone) {
  EXPECT_EQ(balanced_micro_batches({3, 50, 4, 2}, 10), (Groups{{0, 2, 3}, {1}}));
  EXPECT_EQ(balanced_micro_batches({50, 60}, 10), (Groups{{0}, {1}}));
}

TEST(MicroBatches, BadInputIsAnError) {
  EXPECT_THROW(balanced_micro_batches({3}, 0), Error);
  EXPECT_THROW(balanced_micro_batches({3, 0}, 10), Error);
}

// Every index once, each group ascending and the groups by first index, within the budget unless
// alone, and the loads of the packed groups within one sequence's length of each other (the
// longest-first rule's guarantee).
TEST(MicroBatches, RandomLengthsKeepEveryInvariant) {
  Rng rng(42);
  for (int trial = 0; trial < 300; ++trial) {
    const size_t n = 1 + rng.next_u32() % 40;
    const int64_t budget = 10 + int64_t(rng.next_u32() % 50);
    std::vector<int64_t> len(n);
    for (int64_t& l : len) l = 1 + int64_t(rng.next_u32() % 70);
    const Groups g = balanced_micro_batches(len, budget);
    std::vector<int> seen(n, 0);
    int64_t lo = INT64_MAX, hi = 0, longest = 0, total = 0;
    size_t packed = 0;
    for (size_t k = 0; k < g.size(); ++k) {
      ASSERT_FALSE(g[k].empty());
      ASSERT_TRUE(std::is_sorted(g[k].begin(), g[k].end()));
      if (k > 0) {
        ASSERT_LT(g[k - 1].front(), g[k].front());
      }
      int64_t load = 0;
      for (size_t i : g[k]) ++seen[i], load += len[i];
      if (g[k].size() > 1 || load <= budget) {
        ASSERT_LE(load, budget) << "trial " << trial;
        lo = std::min(lo, load), hi = std::max(hi, load), ++packed, total += load;
        for (size_t i : g[k]) longest = std::max(longest, len[i]);
      }
    }
    for (int s : seen) ASSERT_EQ(s, 1);
    if (packed > 0) {
      EXPECT_LE(hi - lo, longest) << "trial " << trial;
      EXPECT_GE(int64_t(packed), (total + budget - 1) / budget);
    }
  }
}

// ---- GRPO ----

// Two groups, one completion far longer than the 12-token budget.
std::vector<Group> groups_with_a_long_sequence(const model::Transformer& m) {
  std::vector<int32_t> longest;
  for (int i = 0; i < 40; ++i) longest.push_back(int32_t(20 + i));
  std::vector<Group> kept = {test::make_group(0, {5, 9, 14}, {{3, 7, 7, 1}, {40, 2}, longest}),
                             test::make_group(1, {100, 4}, {{11, 12, 13}, {200}, {66, 67, 68, 69, 70}})};
  const double adv[] = {1.2, -0.4, -0.8, 0.5, -1.5, 1.0};
  int i = 0;
  for (Group& g : kept)
    for (Sequence& s : g.seqs) {
      s.out.logprobs = test::completion_logprobs(m, g, s);
      for (float& lp : s.out.logprobs) lp -= 0.1f;  // ratios of e^0.1: some clipped
      s.advantage = adv[i++];
    }
  return kept;
}

TEST(GrpoMicroBatches, LongSequenceTrainsAloneCheckpointedWithTheSameGradient) {
  model::Transformer m = test::byte_model(7);
  std::vector<Group> kept = groups_with_a_long_sequence(m);
  const GrpoConfig cfg = test::small_grpo(2, 3, 10);
  dist::Comm& single = dist::host_comm();
  auto gradient = [&](int64_t budget, size_t memory_budget, MiniBatchStats* stats) {
    const std::vector<MiniBatch> plan = plan_mini_batches(kept, 2, 3, 1, budget, single);
    EXPECT_EQ(plan.size(), 1u);
    model::TrainState st;
    st.memory_budget = memory_budget;
    m.zero_grads();
    *stats = accumulate_gradients(m, st, plan[0], update_loss_config(cfg), 1.0f, false);
    return std::make_pair(plan[0], to_host_f32(m.grads().flat));
  };
  MiniBatchStats one_stats, split_stats;
  const auto [one_plan, one] = gradient(1 << 20, 0, &one_stats);
  // Auto's budget: just short of what the long sequence (43 tokens) needs saved, so that one
  // forward checkpoints and the shorter micro-batches save.
  const model::ActivationEstimate e = model::estimate_activations(m, 43, 1, false, true);
  const auto [split_plan, split] = gradient(12, e.saving + e.layer - 1, &split_stats);
  ASSERT_EQ(one_plan.micro.size(), 1u);
  bool alone = false;
  for (const MicroBatch& mb : split_plan.micro) {
    int64_t tokens = 0;
    for (const SeqRef& s : mb) tokens += int64_t(s.group->prompt.size() + s.seq->out.tokens.size());
    if (mb.size() == 1 && tokens == 43) {
      alone = true;
    } else {
      EXPECT_LE(tokens, 12);
    }
  }
  EXPECT_TRUE(alone) << "the 43-token sequence is not alone in its micro-batch";
  EXPECT_EQ(split_stats.checkpointed, 1);
  EXPECT_EQ(one_stats.checkpointed, 0);
  EXPECT_NEAR(split_stats.loss, one_stats.loss, 1e-6 * std::max(1.0, std::abs(one_stats.loss)));
  EXPECT_EQ(split_stats.tokens, one_stats.tokens);
  EXPECT_LT(rel_l2(split, one), 1e-5);  // the same sum in another order
}

// The reference log-probs, the trainer's pi_old and the SFT evaluation loss save nothing, even through a trainable
// policy (a LoRA policy is its own reference, the adapters off): their state's arena holds one
// layer's memory, and no backward can follow.
TEST(GrpoMicroBatches, ReferenceAndEvaluationPassesSaveNothing) {
  model::Transformer m = test::byte_model(7);
  std::vector<Group> kept = groups_with_a_long_sequence(m);
  const std::vector<MiniBatch> plan = plan_mini_batches(kept, 2, 3, 1, 1 << 20, dist::host_comm());
  ASSERT_EQ(plan.size(), 1u);
  ASSERT_EQ(plan[0].micro.size(), 1u);
  std::vector<int64_t> rows;
  const model::Batch b = pack(plan[0].micro[0], rows);
  const int64_t T = b.tokens(), C = m.config().hidden_size;
  model::TrainState ref, train;
  reference_logprobs(m, ref, plan, kept, false, 1 << 20, 1.0f);
  train.forward(m, b);
  EXPECT_LE(ref.activation_bytes(), size_t(2 * T * C * 4 + 16 * 256));  // the stream and lnf, rows
  EXPECT_GT(train.activation_bytes(), 3 * ref.activation_bytes());
  EXPECT_THROW(ref.backward(m, std::vector<float>(size_t(T), 0.0f)), Error);
  model::TrainState old;  // pi_old by the trainer (grpo.old_logprobs: trainer)
  trainer_old_logprobs(m, old, plan, 1.0f);
  EXPECT_LE(old.activation_bytes(), size_t(2 * T * C * 4 + 16 * 256));
  EXPECT_THROW(old.backward(m, std::vector<float>(size_t(T), 0.0f)), Error);

  std::vector<data::SftSequence> rows_sft;
  for (const MicroBatch& mb : plan[0].micro)
    for (const SeqRef& s : mb)
      rows_sft.push_back(data::prompt_completion_sequence(s.group->prompt, s.seq->out.tokens));
  model::TrainState eval;
  sft_loss(m, eval, rows_sft, 1 << 20);
  EXPECT_LE(eval.activation_bytes(), size_t(2 * T * C * 4 + 16 * 256));
  EXPECT_THROW(eval.backward(m, std::vector<float>(size_t(T), 0.0f)), Error);
}

// ---- SFT and the reward model ----

std::vector<data::SftSequence> sft_batch() {
  std::vector<data::SftSequence> out;
  for (int len : {30, 7, 12, 9, 5, 11}) {
    std::vector<int32_t> prompt(3), completion(size_t(len - 3));
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t(40 + i + size_t(len));
    for (size_t i = 0; i < completion.size(); ++i) completion[i] = int32_t(60 + (i * 7 + size_t(len)) % 90);
    out.push_back(data::prompt_completion_sequence(prompt, completion));
  }
  return out;
}

TEST(SftMicroBatches, LongSequenceTrainsAndTheStepMatchesOneMicroBatch) {
  const std::vector<data::SftSequence> batch = sft_batch();
  model::Transformer a = test::byte_model(3), b = test::byte_model(3);
  optim::DataParallel oa(a, {}), ob(b, {});
  model::TrainState sa, sb;
  const SftStepResult whole = sft_step(a, sa, oa, batch, 1e-2, 1.0, 1 << 20);
  const SftStepResult split = sft_step(b, sb, ob, batch, 1e-2, 1.0, 16);  // the 30-token row alone
  EXPECT_EQ(whole.micro_batches, 1);
  EXPECT_EQ(split.micro_batches, 4);  // 44 tokens of rows within 16: three, and the long row
  EXPECT_EQ(split.packed_tokens, whole.packed_tokens);
  EXPECT_NEAR(split.loss, whole.loss, 1e-6);
  // The step's gradients (kept after the update) are the same sum in another order.
  EXPECT_LT(rel_l2(to_host_f32(b.grads().flat), to_host_f32(a.grads().flat)), 1e-5);
}

TEST(RmMicroBatches, PairsAreBalancedAndALongPairTrains) {
  model::Transformer lm = test::byte_model(9);
  model::ModelConfig rc = lm.config();
  rc.num_labels = 1;
  model::Transformer a = model::classifier_from(lm, rc, 4, Device::CPU),
                     b = model::classifier_from(lm, rc, 4, Device::CPU);
  std::vector<PreferencePair> pairs;
  for (int len : {25, 4, 6, 5, 3}) {
    PreferencePair p;
    for (int i = 0; i < len; ++i) p.chosen.push_back(int32_t(30 + (i * 3 + len) % 100));
    for (int i = 0; i < len + 1; ++i) p.rejected.push_back(int32_t(50 + (i * 5 + len) % 100));
    pairs.push_back(p);
  }
  model::TrainState sa, sb;
  a.zero_grads();
  b.zero_grads();
  const RmStats whole = rm_loss(a, sa, pairs, 1 << 20, true);
  const RmStats split = rm_loss(b, sb, pairs, 20, true);  // the 51-token pair alone
  EXPECT_EQ(whole.micro_batches, 1);
  EXPECT_EQ(split.micro_batches, 3);  // pairs of 9, 13, 11, 7 tokens: 13 + 7 and 11 + 9, and the long pair
  EXPECT_EQ(split.tokens, whole.tokens);
  EXPECT_NEAR(split.loss, whole.loss, 1e-6);
  EXPECT_LT(rel_l2(to_host_f32(b.grads().flat), to_host_f32(a.grads().flat)), 1e-5);
}

}  // namespace

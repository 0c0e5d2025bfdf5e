// Routing replay through the other paths a token's experts take (train/grpo_moe.h): the paged
// engine's preemption (a resumed sequence's recomputed prefix records nothing twice and nothing
// new), activation checkpointing (a recomputed layer goes through the forward's experts, and the
// loads are counted once), and grpo.old_logprobs: trainer (its pi_old pass replays too).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/rng.h"
#include "grpo_test_util.h"
#include "model/train_state.h"
#include "rollout/engine.h"
#include "rollout/route_record.h"
#include "tensor/device_memory.h"
#include "train/grpo_offpolicy.h"

using namespace r1;

namespace {

model::Transformer tiny_deepseek(uint64_t seed = 5) {
  model::ModelConfig c = model::preset_config("tiny-deepseek-v3");
  model::override_config(c, "vocab_size", "257");
  model::Transformer m(c);
  m.init_random(seed, 0.1f);
  return m;
}

rollout::EngineConfig engine_config(int64_t kv_tokens) {
  rollout::EngineConfig c;
  c.max_batch = 6;
  c.max_seq_len = 64;
  c.kv_block_size = 4;
  c.kv_cache_tokens = kv_tokens;
  return c;
}

// 4 prompts of 5 to 20 tokens, 3 samples each, up to 40 tokens, the experts recorded.
std::vector<rollout::Completion> sample(rollout::Engine& e, std::vector<std::vector<int32_t>>& prompts) {
  std::vector<rollout::Request> reqs;
  Rng rng(21);
  for (int p = 0; p < 4; ++p) {
    prompts.emplace_back();
    for (int i = 0; i < 5 + 5 * p; ++i) prompts.back().push_back(int32_t(1 + rng.next_u32() % 255));
    reqs.push_back({prompts.back(), 3});
  }
  rollout::GenerateParams gp;
  gp.sampling.temperature = 1.0f;
  gp.sampling.seed = 9;
  gp.max_new_tokens = 40;
  gp.record_routes = true;
  return e.generate(reqs, gp);
}

// A new router: every router weight drawn again, so the trainer's choice differs from the
// sampler's.
void redraw_routers(model::Transformer& m) {
  float* w = m.params().flat.f32();
  Rng rng(123);
  for (const auto& s : m.specs())
    if (s.name.ends_with("mlp.gate.weight"))
      for (int64_t i = 0; i < s.numel(); ++i) w[s.offset + i] = 0.5f * rng.normal();
}

std::vector<int32_t> sequence(const std::vector<int32_t>& prompt, const rollout::Completion& c) {
  std::vector<int32_t> s = prompt;
  s.insert(s.end(), c.tokens.begin(), c.tokens.end());
  return s;
}

}  // namespace

// A pool of one sequence's worth of blocks keeps preempting: each resumed sequence recomputes its
// prompt and tokens, and still its record holds every fed token's experts once, in order: those of
// a pool that never preempts.
TEST(MoeRlPaths, PreemptedSequencesRecordTheSameExperts) {
  const model::Transformer m = tiny_deepseek();
  rollout::Engine big(m, engine_config(0)), tiny(m, engine_config(64));
  std::vector<std::vector<int32_t>> prompts, again;
  const auto want = sample(big, prompts);
  const auto got = sample(tiny, again);
  EXPECT_EQ(big.stats().preemptions, 0);
  ASSERT_GT(tiny.stats().preemptions, 3);
  ASSERT_EQ(want.size(), got.size());
  const int64_t K = m.config().moe.num_experts_per_tok;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(want[i].tokens, got[i].tokens) << "completion " << i;
    const int64_t N = int64_t(prompts[size_t(got[i].prompt_index)].size() + got[i].tokens.size());
    ASSERT_EQ(got[i].routes.tokens(), N) << "completion " << i;
    EXPECT_EQ(got[i].routes.layers, want[i].routes.layers);
    EXPECT_EQ(got[i].routes.experts, want[i].routes.experts) << "completion " << i;
    for (const auto& layer : got[i].routes.experts)
      for (int64_t t = 0; t < N; ++t)
        EXPECT_EQ(layer[size_t(t * K)] >= 0, t + 1 < N) << "completion " << i << " token " << t;
  }
}

// The record keeps the experts of the forward that first fed a row: a recomputation that routed a
// token otherwise (a near tie, rounded differently) does not replace them.
TEST(MoeRlPaths, RecordKeepsTheFirstForwardOfARow) {
  const model::Transformer m = tiny_deepseek();
  const int64_t K = m.config().moe.num_experts_per_tok;
  rollout::RouteRecord rec(true);
  auto feed = [&](int32_t expert, int64_t prompt_row, int64_t completion_row) {
    model::ExpertRoutes& f = *rec.forward();
    f = model::unrecorded_routes(m.config(), 2);
    for (auto& layer : f.experts)
      for (int64_t k = 0; k < 2 * K; ++k) layer[size_t(k)] = expert + int32_t(k % K);
    rec.prompt_token(0, prompt_row, 0);
    rec.completion_token(0, completion_row, 1);
  };
  feed(0, 1, 3);  // prompt row 1, completion row 3 (the prompt has 3 rows)
  feed(4, 1, 3);  // a recomputation routes them to other experts
  feed(4, 0, 4);  // rows fed for the first time
  std::vector<rollout::Completion> out(1);
  out[0].tokens = {7, 8, 9};
  rec.finish(out, {3});
  const model::ExpertRoutes& r = out[0].routes;
  ASSERT_EQ(r.tokens(), 6);
  for (const auto& layer : r.experts) {
    EXPECT_EQ(layer[size_t(0 * K)], 4);
    EXPECT_EQ(layer[size_t(1 * K)], 0) << "the prompt row's first record";
    EXPECT_EQ(layer[size_t(2 * K)], model::kUnrouted);
    EXPECT_EQ(layer[size_t(3 * K)], 0) << "the completion row's first record";
    EXPECT_EQ(layer[size_t(4 * K)], 4);
    EXPECT_EQ(layer[size_t(5 * K)], model::kUnrouted) << "never fed";
  }
}

// A checkpointed backward recomputes every MoE layer through the experts its forward used: with
// the sampler's experts replayed where the trainer's router would choose others, the gradients are
// the saving backward's bit for bit, and the loads (what the bias update reads) are counted once.
TEST(MoeRlPaths, CheckpointedBackwardReplaysTheForwardsExperts) {
  model::Transformer m = tiny_deepseek();
  rollout::Engine e(m, engine_config(0));
  std::vector<std::vector<int32_t>> prompts;
  const auto outs = sample(e, prompts);
  redraw_routers(m);
  std::vector<std::vector<int32_t>> seqs;
  model::ExpertRoutes routes;
  for (size_t i = 0; i < 4; ++i) {
    seqs.push_back(sequence(prompts[size_t(outs[i].prompt_index)], outs[i]));
    model::append_routes(routes, outs[i].routes);
  }
  model::Batch b = model::pack_sequences(seqs);
  b.replay = routes;
  std::vector<float> dlogp(b.targets.size());
  for (size_t t = 0; t < dlogp.size(); ++t)
    dlogp[t] = b.targets[t] >= 0 ? -0.1f - 0.01f * float(t % 5) : 0.0f;
  struct Result {
    std::vector<float> logp, grads;
    std::vector<std::vector<int64_t>> counts;
    int64_t replaced = 0;
  };
  auto run = [&](model::Checkpointing mode, bool replay) {
    model::Batch batch = b;
    if (!replay) batch.replay = {};
    model::TrainState st;
    st.checkpointing = mode;
    m.zero_grads();
    st.forward(m, batch);
    st.backward(m, dlogp);
    EXPECT_EQ(st.checkpointed(), mode == model::Checkpointing::On);
    return Result{st.logp_host(), to_host_f32(m.grads().flat), st.expert_counts(),
                  st.replay_counts().replaced};
  };
  const Result save = run(model::Checkpointing::Off, true), ckpt = run(model::Checkpointing::On, true);
  ASSERT_GT(save.replaced, 0) << "the new router should disagree with the sampler somewhere";
  EXPECT_EQ(save.logp, ckpt.logp);
  EXPECT_TRUE(save.grads == ckpt.grads) << "the recomputed layers did not replay the forward's experts";
  EXPECT_EQ(save.counts, ckpt.counts) << "the recomputation counted its tokens again";
  EXPECT_EQ(save.replaced, ckpt.replaced);
  // Without the replay the router chooses, and the gradients are others: the replay mattered.
  const Result own = run(model::Checkpointing::On, false);
  EXPECT_FALSE(own.grads == ckpt.grads);
  EXPECT_NE(own.counts, ckpt.counts);
}

// grpo.old_logprobs: trainer computes pi_old through the sampler's experts when replaying (the
// update's forwards do), and through the router's own choice when not.
TEST(MoeRlPaths, TrainerOldLogprobsReplayTheSamplersExperts) {
  model::Transformer m = tiny_deepseek();
  rollout::Engine e(m, engine_config(0));
  std::vector<std::vector<int32_t>> prompts;
  const auto outs = sample(e, prompts);
  redraw_routers(m);
  train::Group g;
  g.prompt = prompts[0];
  for (const auto& c : outs)
    if (c.prompt_index == 0) {
      g.seqs.emplace_back();
      g.seqs.back().out = c;
    }
  ASSERT_EQ(g.seqs.size(), 3u);
  train::MicroBatch mb;
  for (train::Sequence& s : g.seqs) mb.push_back({&g, &s});
  const std::vector<train::MiniBatch> plan = {train::MiniBatch{{mb}, {}}};
  auto expected = [&](bool replay) {
    std::vector<int64_t> rows;
    const model::Batch b = train::pack(mb, rows, replay);
    model::TrainState st;
    st.forward(m, b, 1.0f, model::Backward::None);
    const std::vector<float> lp = st.logp_host();
    std::vector<std::vector<float>> out;
    for (size_t i = 0; i < mb.size(); ++i)
      out.emplace_back(lp.begin() + rows[i], lp.begin() + rows[i] + int64_t(mb[i].seq->out.tokens.size()));
    return out;
  };
  for (const bool replay : {true, false}) {
    model::TrainState st;
    train::trainer_old_logprobs(m, st, plan, 1.0f, replay);
    const auto want = expected(replay), other = expected(!replay);
    bool differs = false;
    for (size_t i = 0; i < mb.size(); ++i) {
      EXPECT_EQ(g.seqs[i].old_logp, want[i]) << "sequence " << i << (replay ? " (replay)" : "");
      differs = differs || want[i] != other[i];
    }
    EXPECT_TRUE(differs) << "the new router should change some log-prob";
  }
}

// A GRPO step with the bias update, routing replay and the trainer's pi_old gives the same weights
// and the same e_score_correction_bias with activation checkpointing on as off.
TEST(MoeRlPaths, GrpoStepIsTheSameCheckpointedOrNot) {
  text::ByteCodec codec;
  test::LetterReward reward;
  std::vector<std::vector<float>> weights;
  for (const auto mode : {model::Checkpointing::Off, model::Checkpointing::On}) {
    model::Transformer m = tiny_deepseek();
    train::GrpoConfig gc = test::small_grpo(2, 4, 6);
    gc.moe.routing_replay = true;
    gc.moe.bias_update_speed = 1e-2;
    gc.old_logprobs = train::OldLogprobs::Trainer;
    gc.checkpointing = mode;
    train::GrpoTrainer trainer(m, codec, reward, test::letter_problems(8), test::question, gc, 1);
    const train::StepStats st = trainer.step(0);
    EXPECT_EQ(st.checkpointed_micro_batches > 0, mode == model::Checkpointing::On);
    weights.push_back(to_host_f32(m.params().flat));
    const std::vector<float> bias = to_host_f32(m.params().layers[1].moe.score_bias);
    EXPECT_TRUE(std::any_of(bias.begin(), bias.end(), [](float v) { return v != 0.0f; })) << "no bias update";
  }
  EXPECT_TRUE(weights[0] == weights[1]) << "a checkpointed step trained other weights or biases";
}

// Multi-turn rollouts in the CPU engine: observation tokens are appended between the model's
// turns and masked; a generation resumed on the KV cache after an observation equals a fresh
// prefill of the same history; tool calls run on workers while the other sequences decode.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

#include "base/error.h"
#include "model/train_state.h"
#include "model/transformer.h"
#include "rollout/engine.h"

using namespace r1;

namespace {

model::Transformer make_model(uint64_t seed = 11) {
  model::Transformer m(model::preset_config("tiny", "qwen2"));
  m.init_random(seed, 0.15f);
  return m;
}

// One character per token, so a turn's text length is its token count.
std::string one_char(int32_t id) { return std::string(1, char('a' + id % 26)); }

// Turns end after `every` model tokens; each observation is `obs` (ending the episode after
// `end_after` observations when > 0).
rollout::TurnHooks fixed_turns(int every, std::vector<int32_t> obs, int max_turns, int end_after = 0) {
  rollout::TurnHooks h;
  h.max_turns = max_turns;
  h.threads = 2;
  h.ends_turn = [every](int64_t, int64_t, const std::string& text) { return int(text.size()) >= every; };
  auto calls = std::make_shared<std::atomic<int>>(0);
  h.respond = [obs, end_after, calls](const rollout::Turn& t) {
    rollout::Observation o;
    o.tokens = obs;
    (void)t;
    o.end = end_after > 0 && ++*calls >= end_after;
    return o;
  };
  return h;
}

rollout::GenerateParams params(float temperature, int max_new) {
  rollout::GenerateParams gp;
  gp.sampling.temperature = temperature;
  gp.sampling.seed = 7;
  gp.max_new_tokens = max_new;
  gp.token_text = one_char;
  return gp;
}

}  // namespace

TEST(RolloutTurns, MaskCoversExactlyTheModelTokens) {
  model::Transformer m = make_model();
  const std::vector<int32_t> obs = {201, 202, 203};
  rollout::GenerateParams gp = params(1.0f, 40);
  gp.turns = fixed_turns(5, obs, 3);
  rollout::Engine engine(m, {3, 96, 4096});
  std::vector<rollout::Request> reqs = {{{1, 2, 3}, 2, 0}, {{4, 5, 6, 7}, 2, 1}};
  const auto outs = engine.generate(reqs, gp);
  ASSERT_EQ(outs.size(), 4u);
  int64_t model_tokens = 0;
  for (const rollout::Completion& c : outs) {
    ASSERT_EQ(c.from_model.size(), c.tokens.size());
    ASSERT_EQ(c.logprobs.size(), c.tokens.size());
    EXPECT_EQ(c.turns, 3);  // 40 tokens: three turns of 5 and three observations of 3 fit
    // The expected layout: 5 model tokens, 3 observation tokens, three times, then model tokens.
    for (size_t t = 0; t < c.tokens.size(); ++t) {
      const bool in_obs = t < 24 && t % 8 >= 5;
      EXPECT_EQ(c.from_model[t], in_obs ? 0 : 1) << "token " << t;
      if (in_obs) {
        EXPECT_EQ(c.tokens[t], obs[t % 8 - 5]);
        EXPECT_EQ(c.logprobs[t], 0.0f);
      } else {
        EXPECT_LT(c.logprobs[t], 0.0f);
      }
    }
    EXPECT_EQ(rollout::model_token_count(c), int64_t(c.tokens.size()) - 9);
    model_tokens += rollout::model_token_count(c);
  }
  EXPECT_EQ(engine.stats().generated_tokens, model_tokens);
  EXPECT_EQ(engine.stats().turns, 12);
  EXPECT_EQ(engine.stats().observation_tokens, 36);
}

TEST(RolloutTurns, EpisodeEndAndContextLimitFinishTheSequence) {
  model::Transformer m = make_model();
  rollout::GenerateParams gp = params(1.0f, 200);
  gp.turns = fixed_turns(4, {201, 202}, 8, /*end_after=*/1);
  rollout::Engine engine(m, {2, 64, 4096});
  auto outs = engine.generate({{{1, 2, 3}, 1, 0}}, gp);
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0].finish, rollout::FinishReason::Stop);  // the environment ended the episode
  EXPECT_EQ(outs[0].tokens.size(), 6u);                    // 4 model tokens and the observation
  EXPECT_EQ(outs[0].turns, 1);
  // An observation larger than the context is cut, and the sequence ends at the limit.
  gp.turns = fixed_turns(4, std::vector<int32_t>(100, 201), 8);
  outs = engine.generate({{{1, 2, 3}, 1, 0}}, gp);
  EXPECT_EQ(outs[0].finish, rollout::FinishReason::Length);
  EXPECT_LE(int64_t(outs[0].tokens.size()) + 3, 64);
  EXPECT_EQ(rollout::model_token_count(outs[0]), 4);
}

TEST(RolloutTurns, ResumedGenerationEqualsFreshPrefill) {
  model::Transformer m = make_model();
  const std::vector<int32_t> prompt = {9, 8, 7, 6, 5};
  const std::vector<int32_t> obs = {150, 151, 152, 153};
  // Greedy: after the observation, the resumed sequence continues exactly as a fresh generation
  // from the whole history (prompt, first turn, observation) does, with the same log-probs.
  rollout::GenerateParams gp = params(0.0f, 30);
  gp.turns = fixed_turns(6, obs, 1);
  rollout::Engine engine(m, {2, 64, 4096});
  const rollout::Completion multi = engine.generate({{prompt, 1, 0}}, gp)[0];
  ASSERT_EQ(multi.turns, 1);
  ASSERT_EQ(multi.tokens.size(), 30u);
  const size_t history = 6 + obs.size();
  std::vector<int32_t> fresh_prompt = prompt;
  fresh_prompt.insert(fresh_prompt.end(), multi.tokens.begin(), multi.tokens.begin() + int64_t(history));
  rollout::GenerateParams plain = params(0.0f, int(30 - history));
  rollout::Engine fresh_engine(m, {2, 64, 4096});
  const rollout::Completion fresh = fresh_engine.generate({{fresh_prompt, 1, 0}}, plain)[0];
  ASSERT_EQ(fresh.tokens.size(), 30 - history);
  for (size_t t = 0; t < fresh.tokens.size(); ++t) {
    EXPECT_EQ(multi.tokens[history + t], fresh.tokens[t]) << "token " << t;
    EXPECT_NEAR(multi.logprobs[history + t], fresh.logprobs[t], 1e-5) << "token " << t;
  }
  // Sampled, several sequences at once: every model token's log-prob equals the training forward's
  // over the whole trajectory (the cache holds exactly the history, observations included).
  for (float temp : {1.0f, 0.7f}) {
    rollout::GenerateParams sp = params(temp, 40);
    sp.turns = fixed_turns(5, obs, 3);
    const std::vector<rollout::Request> reqs = {{prompt, 3, 0}, {{1, 2}, 2, 1}};
    const auto outs = engine.generate(reqs, sp);
    std::vector<std::vector<int32_t>> seqs;
    for (const auto& c : outs) {
      seqs.push_back(reqs[size_t(c.prompt_index)].prompt);
      seqs.back().insert(seqs.back().end(), c.tokens.begin(), c.tokens.end());
    }
    const model::Batch batch = model::pack_sequences(seqs);
    model::TrainState state;
    const Tensor logp = state.forward(m, batch, temp);
    double max_err = 0;
    int64_t checked = 0;
    for (size_t b = 0; b < outs.size(); ++b) {
      const int32_t start = batch.cu_seqlens[b] + int32_t(reqs[size_t(outs[b].prompt_index)].prompt.size()) - 1;
      EXPECT_GE(outs[b].turns, 1);
      for (size_t i = 0; i < outs[b].tokens.size(); ++i) {
        if (!rollout::is_model_token(outs[b], i)) continue;
        max_err = std::max(max_err, double(std::abs(outs[b].logprobs[i] - logp.f32()[start + int32_t(i)])));
        ++checked;
      }
    }
    EXPECT_GT(checked, 100);
    EXPECT_LT(max_err, 1e-5) << "temperature " << temp;
  }
}

TEST(RolloutTurns, ToolCallsRunWhileOtherSequencesDecode) {
  model::Transformer m = make_model();
  std::atomic<int> running{0}, most{0}, pending{0};
  std::atomic<int64_t> decoded_meanwhile{0};
  std::array<std::atomic<bool>, 4> called{};
  rollout::GenerateParams gp = params(1.0f, 48);
  gp.turns.max_turns = 1;
  gp.turns.threads = 4;
  // Sample 0 of each prompt calls a slow tool after 3 tokens; the others never call. A call is
  // pending from the moment the engine's thread ends the turn until the tool answers, so the count
  // below does not depend on when a worker thread gets a core: an engine that waited for the tool
  // would decode nothing while a call is pending.
  gp.turns.ends_turn = [&](int64_t p, int64_t s, const std::string& text) {
    const bool ends = s == 0 && text.size() >= 3;
    if (ends && !called[size_t(p)].exchange(true)) ++pending;
    return ends;
  };
  gp.turns.respond = [&](const rollout::Turn&) {
    const int now = ++running;
    int prev = most.load();
    while (now > prev && !most.compare_exchange_weak(prev, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    --running;
    --pending;
    return rollout::Observation{{201, 202}, false};
  };
  gp.on_token = [&](int64_t, int64_t s, int32_t) {
    if (s != 0 && pending.load() > 0) ++decoded_meanwhile;
  };
  rollout::Engine engine(m, {12, 80, 4096});
  std::vector<rollout::Request> reqs;
  for (int p = 0; p < 4; ++p) reqs.push_back({{int32_t(1 + p), 2, 3}, 3, p});
  const auto outs = engine.generate(reqs, gp);
  EXPECT_GT(decoded_meanwhile.load(), 0);  // others decoded while calls ran
  EXPECT_GE(most.load(), 2);               // calls ran concurrently
  for (const auto& c : outs) EXPECT_EQ(c.turns, c.sample_index == 0 ? 1 : 0);
}

TEST(RolloutTurns, HooksNeedADecoderAndValidSettings) {
  model::Transformer m = make_model();
  rollout::GenerateParams gp = params(1.0f, 8);
  gp.turns = fixed_turns(2, {1}, 1);
  gp.token_text = nullptr;
  rollout::Engine engine(m, {2, 32, 4096});
  try {
    engine.generate({{{1, 2}, 1, 0}}, gp);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token_text"), std::string::npos) << e.what();
  }
  gp.token_text = one_char;
  gp.turns.threads = 0;
  EXPECT_THROW(engine.generate({{{1, 2}, 1, 0}}, gp), Error);
}

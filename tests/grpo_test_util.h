#pragma once
// Shared pieces of the GRPO tests: a tiny byte-level model, toy rewards, and hand-made groups for
// testing one phase at a time.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "data/problem.h"
#include "model/train_state.h"
#include "model/transformer.h"
#include "reward/reward.h"
#include "tensor/device_memory.h"
#include "text/codec.h"
#include "train/grpo.h"

namespace r1::test {

// A tiny qwen2-shaped model over the byte codec's 257 ids.
inline model::Transformer byte_model(uint64_t seed, const std::string& hidden = "",
                                     const std::string& inter = "", const std::string& layers = "") {
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  model::override_config(c, "vocab_size", "257");
  if (!hidden.empty()) model::override_config(c, "hidden_size", hidden);
  if (!inter.empty()) model::override_config(c, "intermediate_size", inter);
  if (!layers.empty()) model::override_config(c, "num_hidden_layers", layers);
  model::Transformer m(c);
  m.init_random(seed, 0.02f);
  return m;
}

// Share of the completion's bytes that are 'a'.
class LetterReward final : public reward::Reward {
 public:
  std::string name() const override { return "letter"; }
  reward::Result score(const reward::Sample& s) const override {
    reward::Result r;
    if (s.completion.empty()) return r;
    r.reward =
        double(std::count(s.completion.begin(), s.completion.end(), 'a')) / double(s.completion.size());
    return r;
  }
};

// Share of the completion's bytes that are even: about 0.5, with a spread within every group, so
// each group carries a learning signal from the first step.
class EvenByteReward final : public reward::Reward {
 public:
  std::string name() const override { return "even"; }
  reward::Result score(const reward::Sample& s) const override {
    reward::Result r;
    if (s.completion.empty()) return r;
    r.reward = double(std::count_if(s.completion.begin(), s.completion.end(),
                                    [](char c) { return (static_cast<unsigned char>(c) & 1) == 0; })) /
               double(s.completion.size());
    return r;
  }
};

// The byte codec without an end-of-sequence id: every completion runs to the length limit.
class NoEosCodec final : public text::Codec {
 public:
  std::vector<int32_t> encode(const std::string& t) const override { return bytes_.encode(t); }
  std::string decode(const std::vector<int32_t>& ids) const override { return bytes_.decode(ids); }
  std::string token_text(int32_t id) const override { return bytes_.token_text(id); }
  std::vector<int32_t> eos_ids() const override { return {}; }
  int32_t vocab_size() const override { return bytes_.vocab_size(); }

 private:
  text::ByteCodec bytes_;
};

// Problems "b".."u", each its own letter.
inline std::vector<data::Problem> letter_problems(int n) {
  std::vector<data::Problem> probs;
  for (int i = 0; i < n; ++i) probs.push_back({i, std::string(1, char('b' + i % 20)), ""});
  return probs;
}

inline std::string question(const data::Problem& p) { return p.question; }

// A small GRPO setting that runs in well under a second a step on two cores.
inline train::GrpoConfig small_grpo(int prompts = 4, int group = 4, int max_tokens = 10) {
  train::GrpoConfig gc;
  gc.prompts_per_step = prompts;
  gc.group_size = group;
  gc.max_prompt_tokens = 4;
  gc.max_completion_tokens = max_tokens;
  gc.lr = 3e-3;
  gc.schedule.kind = "constant";
  return gc;
}

// A hand-made group: one prompt and its completions, with rewards.
inline train::Group make_group(int64_t kept_index, std::vector<int32_t> prompt,
                               const std::vector<std::vector<int32_t>>& completions,
                               const std::vector<double>& rewards = {}) {
  train::Group g;
  g.kept_index = kept_index;
  g.prompt = std::move(prompt);
  for (size_t i = 0; i < completions.size(); ++i) {
    train::Sequence s;
    s.out.tokens = completions[i];
    s.out.logprobs.assign(completions[i].size(), 0.0f);
    s.out.finish = rollout::FinishReason::Stop;
    s.reward = i < rewards.size() ? rewards[i] : 0.0;
    g.seqs.push_back(std::move(s));
  }
  return g;
}

// Each completion token's log-prob under `m` at `temperature`, the sequence alone in its batch.
inline std::vector<float> completion_logprobs(const model::Transformer& m, const train::Group& g,
                                              const train::Sequence& s, float temperature = 1.0f) {
  std::vector<int32_t> ids = g.prompt;
  ids.insert(ids.end(), s.out.tokens.begin(), s.out.tokens.end());
  model::TrainState st;
  st.forward(m, model::pack_sequences({ids}), temperature);
  const std::vector<float> lp = st.logp_host();
  const auto first = lp.begin() + int64_t(g.prompt.size()) - 1;
  return {first, first + int64_t(s.out.tokens.size())};
}

// GRPO steps of a model of config c (the byte codec's ids) on `device`, with a frozen reference for
// the KL term (bf16 on CUDA): one-letter prompts, 4 x 4 samples of up to 10 bytes rewarded for 'a's,
// two mini-batches per step; finite losses and entropies, and the weights move. init_std: the
// random weights' spread (0: the model's default).
inline void grpo_steps_run(const model::ModelConfig& c, Device device, int steps = 3, float init_std = 0.0f) {
  text::ByteCodec codec;
  model::Transformer m(c, device);
  if (init_std > 0) {
    m.init_random(5, init_std);
  } else {
    m.init_random(5);
  }
  const std::vector<float> before = m.weights_host();
  train::GrpoConfig gc = small_grpo();
  gc.loss.kl_coef = 0.01;
  gc.mini_batches = 2;
  LetterReward reward;
  train::GrpoTrainer trainer(m, codec, reward, letter_problems(32), question, gc, 3);
  ASSERT_NE(trainer.reference(), nullptr);
  EXPECT_EQ(trainer.reference()->device(), device);
  EXPECT_FALSE(trainer.reference()->trainable());
  for (int s = 0; s < steps; ++s) {
    const train::StepStats st = trainer.step(s);
    EXPECT_EQ(st.updates, 2) << "step " << s;
    ASSERT_TRUE(st.kl.has_value());
    EXPECT_TRUE(std::isfinite(st.loss) && std::isfinite(*st.kl) && std::isfinite(st.entropy));
    EXPECT_GT(st.entropy, 0.0);
    fmt::print("[ CUDAERR ] {} {} grpo step {} reward {:.3f} kl {:.2e} grad_norm {:.3f}\n", c.model_type,
               device_name(device), s, st.reward_mean, *st.kl, st.grad_norm);
  }
  EXPECT_NE(m.weights_host(), before);
}

}  // namespace r1::test

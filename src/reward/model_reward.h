#pragma once
// The `model` reward: a trained reward model (`r1 rm`, or any one-label HF *ForSequenceClassification
// of a supported architecture) reads prompt + completion + EOS and its score at the last token is the
// reward. Samples are scored in batched forward passes (score_all); the raw score goes through a
// transform (sigmoid by default) so that it mixes with 0/1 rule rewards.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reward/reward.h"

namespace r1::reward {

struct ModelRewardOptions {
  std::string path;                   // the reward model's HF directory
  std::string device = "cpu";         // cpu | cuda
  std::string tokenizer;              // tokenizer directory, "byte" (built-in), or "" for path
  std::string transform = "sigmoid";  // sigmoid: 1 / (1 + e^-score), in (0, 1); raw: the score itself
  int batch = 16;                     // sequences per forward pass
};

class ModelReward final : public Reward {
 public:
  // Loads the model and the tokenizer; errors name the path and the option at fault.
  explicit ModelReward(const ModelRewardOptions& o);
  // Copies share the loaded model, so every spec that names `model` uses one copy of the weights.
  ModelReward(const ModelReward&) = default;
  std::string name() const override { return "model"; }
  // One sample; concurrent callers take turns (one model, one set of activation buffers).
  Result score(const Sample& s) const override;
  // details: "score" (raw), "tokens"; a sequence longer than the model's context scores 0 with a reason.
  std::vector<Result> score_all(const std::vector<Sample>& samples, int threads) const override;
  // What the model reads for a sample: encode(prompt) + encode(completion) + EOS.
  std::vector<int32_t> token_ids(const Sample& s) const;

 private:
  struct State;
  std::shared_ptr<State> st_;
  ModelRewardOptions opt_;
};

}  // namespace r1::reward

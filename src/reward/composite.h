#pragma once
// Rewards by name: "math", "format", "language", "code", and weighted sums "math+format:0.5".
#include <memory>
#include <string>
#include <vector>

#include "reward/code_reward.h"
#include "reward/language_reward.h"
#include "reward/math_reward.h"

namespace r1::reward {

// Options of every reward a spec may name; each reward reads its own part.
struct RewardConfig {
  MathOptions math;
  FormatOptions format;
  LanguageOptions language;
  CodeOptions code;
};

// reward = Σ weight_i · reward_i; details hold each part under its name.
class CompositeReward : public Reward {
 public:
  struct Part {
    std::unique_ptr<Reward> reward;
    double weight;
  };
  explicit CompositeReward(std::vector<Part> parts) : parts_(std::move(parts)) {}
  std::string name() const override;
  Result score(const Sample& s) const override;

 private:
  std::vector<Part> parts_;
};

// "math", or "math+format:0.2+language:0.1" (weight 1 when omitted). Unknown names are errors.
std::unique_ptr<Reward> make_reward(const std::string& spec, const RewardConfig& cfg = {});

}  // namespace r1::reward

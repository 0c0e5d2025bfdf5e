#pragma once
// Rewards by name: "math", "format", "language", "code", "model" (a neural reward model), weighted
// sums "math+format:0.5", and routing by prompt type (RoutedReward).
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "reward/code_reward.h"
#include "reward/language_reward.h"
#include "reward/math_reward.h"
#include "reward/model_reward.h"

namespace r1::reward {

// Options of every reward a spec may name; each reward reads its own part.
struct RewardConfig {
  MathOptions math;
  FormatOptions format;
  LanguageOptions language;
  CodeOptions code;
  ModelRewardOptions model;
  // Each rule reward scores in a worker process with this deadline per sample (reward_guard.h);
  // 0 scores in-process with none.
  double deadline_s = 120.0;
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
  // Part by part, each over all samples (so a model part runs batched); a sample one part raised
  // on scores 0, as score() would. details "ms": the parts' times for the sample, summed.
  std::vector<Result> score_all(const std::vector<Sample>& samples, int threads) const override;

 private:
  std::vector<Part> parts_;
};

// Samples whose Sample::type has a route are scored by that route's reward, the rest by the
// fallback; details are the chosen reward's plus "route" (the type, or "default").
class RoutedReward : public Reward {
 public:
  RoutedReward(std::unique_ptr<Reward> fallback, std::map<std::string, std::unique_ptr<Reward>> routes)
      : fallback_(std::move(fallback)), routes_(std::move(routes)) {}
  std::string name() const override;
  Result score(const Sample& s) const override;
  // Each reward scores its own samples in one score_all call.
  std::vector<Result> score_all(const std::vector<Sample>& samples, int threads) const override;

 private:
  const Reward& route_for(const Sample& s, std::string* route) const;
  std::unique_ptr<Reward> fallback_;
  std::map<std::string, std::unique_ptr<Reward>> routes_;
};

// The names a spec may use: math, format, language, code, model.
const std::vector<std::string>& reward_kinds();
// "math", or "math+format:0.2+model:0.5" (weight 1 when omitted). Unknown names are errors.
std::unique_ptr<Reward> make_reward(const std::string& spec, const RewardConfig& cfg = {});
// `spec` for every sample, except those of a type named by a route "TYPE=SPEC" ("chat=model",
// "code=code+format:0.1"). Without routes, make_reward(spec). A reward model named by several specs
// is loaded once. Malformed or repeated routes are errors naming the route.
std::unique_ptr<Reward> make_routed_reward(const std::string& spec, const std::vector<std::string>& routes,
                                           const RewardConfig& cfg = {});
// The reward names a spec mentions ("math+model:0.5" -> math, model), not checked to exist.
std::vector<std::string> reward_names(const std::string& spec);

}  // namespace r1::reward

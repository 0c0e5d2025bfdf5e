#include "reward/composite.h"

#include "base/error.h"

namespace r1::reward {

std::string CompositeReward::name() const {
  std::string n;
  for (const Part& p : parts_) {
    if (!n.empty()) n += '+';
    n += fmt::format("{}:{}", p.reward->name(), p.weight);
  }
  return n;
}

Result CompositeReward::score(const Sample& s) const {
  Result r;
  for (const Part& p : parts_) {
    Result part = p.reward->score(s);
    r.reward += p.weight * part.reward;
    part.details["reward"] = part.reward;
    part.details["weight"] = p.weight;
    r.details[p.reward->name()] = std::move(part.details);
  }
  return r;
}

namespace {

std::unique_ptr<Reward> make_one(const std::string& name, const RewardConfig& cfg) {
  if (name == "math") return std::make_unique<MathReward>(cfg.math);
  if (name == "format") return std::make_unique<FormatReward>(cfg.format);
  if (name == "language") return std::make_unique<LanguageReward>(cfg.language);
  if (name == "code") return std::make_unique<CodeReward>(cfg.code);
  fail("unknown reward '{}' (math, format, language, code)", name);
}

}  // namespace

std::unique_ptr<Reward> make_reward(const std::string& spec, const RewardConfig& cfg) {
  std::vector<CompositeReward::Part> parts;
  size_t start = 0;
  for (;;) {
    size_t plus = spec.find('+', start);
    std::string item = spec.substr(start, plus == std::string::npos ? std::string::npos : plus - start);
    size_t colon = item.find(':');
    std::string name = item.substr(0, colon);
    double weight = 1.0;
    if (colon != std::string::npos) {
      try {
        size_t used = 0;
        weight = std::stod(item.substr(colon + 1), &used);
        R1_CHECK(used == item.size() - colon - 1, "x");
      } catch (...) {
        fail("reward spec '{}': bad weight in '{}'", spec, item);
      }
    }
    R1_CHECK(!name.empty(), "reward spec '{}': empty reward name", spec);
    parts.push_back({make_one(name, cfg), weight});
    if (plus == std::string::npos) break;
    start = plus + 1;
  }
  if (parts.size() == 1 && parts[0].weight == 1.0) return std::move(parts[0].reward);
  return std::make_unique<CompositeReward>(std::move(parts));
}

}  // namespace r1::reward

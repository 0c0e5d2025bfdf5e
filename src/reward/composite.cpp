#include "reward/composite.h"

#include <fmt/ranges.h>

#include <algorithm>

#include "base/error.h"
#include "reward/reward_guard.h"

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

std::vector<Result> CompositeReward::score_all(const std::vector<Sample>& samples, int threads) const {
  std::vector<Result> out(samples.size());
  for (const Part& p : parts_) {
    std::vector<Result> part = p.reward->score_all(samples, threads);
    R1_CHECK(part.size() == samples.size(), "reward '{}' returned {} results for {} samples", p.reward->name(),
             part.size(), samples.size());
    for (size_t i = 0; i < samples.size(); ++i) {
      Result& r = out[i];
      Result& x = part[i];
      if (raised(r)) continue;
      const double ms = x.details.value("ms", 0.0);
      x.details.erase("ms");
      if (raised(x)) {
        r = std::move(x);
      } else {
        r.reward += p.weight * x.reward;
        x.details["reward"] = x.reward;
        x.details["weight"] = p.weight;
        r.details[p.reward->name()] = std::move(x.details);
      }
      r.details["ms"] = r.details.value("ms", 0.0) + ms;
    }
  }
  return out;
}

std::string RoutedReward::name() const {
  std::string n = fallback_->name();
  for (const auto& [type, r] : routes_) n += fmt::format("; {}={}", type, r->name());
  return n;
}

const Reward& RoutedReward::route_for(const Sample& s, std::string* route) const {
  auto it = routes_.find(s.type);
  *route = it == routes_.end() ? "default" : it->first;
  return it == routes_.end() ? *fallback_ : *it->second;
}

Result RoutedReward::score(const Sample& s) const {
  std::string route;
  Result r = route_for(s, &route).score(s);
  r.details["route"] = route;
  return r;
}

std::vector<Result> RoutedReward::score_all(const std::vector<Sample>& samples, int threads) const {
  // Sample indices by route ("default": the fallback), each route's samples scored in one call.
  std::map<std::string, std::vector<size_t>> groups;
  for (size_t i = 0; i < samples.size(); ++i)
    groups[routes_.count(samples[i].type) ? samples[i].type : ""].push_back(i);
  std::vector<Result> out(samples.size());
  for (const auto& [type, idx] : groups) {
    const Reward& reward = type.empty() ? *fallback_ : *routes_.at(type);
    std::vector<Sample> mine;
    for (size_t i : idx) mine.push_back(samples[i]);
    std::vector<Result> rs = reward.score_all(mine, threads);
    R1_CHECK(rs.size() == mine.size(), "reward '{}' returned {} results for {} samples", reward.name(), rs.size(),
             mine.size());
    for (size_t k = 0; k < rs.size(); ++k) {
      rs[k].details["route"] = type.empty() ? "default" : type;
      out[idx[k]] = std::move(rs[k]);
    }
  }
  return out;
}

namespace {

struct SpecPart {
  std::string name;
  double weight = 1.0;
};

std::vector<SpecPart> parse_spec(const std::string& spec) {
  std::vector<SpecPart> parts;
  size_t start = 0;
  for (;;) {
    size_t plus = spec.find('+', start);
    std::string item = spec.substr(start, plus == std::string::npos ? std::string::npos : plus - start);
    size_t colon = item.find(':');
    SpecPart p{item.substr(0, colon)};
    if (colon != std::string::npos) {
      try {
        size_t used = 0;
        p.weight = std::stod(item.substr(colon + 1), &used);
        R1_CHECK(used == item.size() - colon - 1, "x");
      } catch (...) {
        fail("reward spec '{}': bad weight in '{}'", spec, item);
      }
    }
    R1_CHECK(!p.name.empty(), "reward spec '{}': empty reward name", spec);
    parts.push_back(p);
    if (plus == std::string::npos) break;
    start = plus + 1;
  }
  return parts;
}

// Builds rewards by name; the reward model is loaded on first use and shared by later specs.
struct Factory {
  const RewardConfig& cfg;
  std::shared_ptr<ModelReward> model;

  std::unique_ptr<Reward> make_one(const std::string& name) {
    if (name == "math") return std::make_unique<MathReward>(cfg.math);
    if (name == "format") return std::make_unique<FormatReward>(cfg.format);
    if (name == "language") return std::make_unique<LanguageReward>(cfg.language);
    if (name == "code") return std::make_unique<CodeReward>(cfg.code);
    if (name == "model") {
      if (!model) model = std::make_shared<ModelReward>(cfg.model);
      return std::make_unique<ModelReward>(*model);
    }
    fail("unknown reward '{}' (known: {})", name, fmt::join(reward_kinds(), ", "));
  }

  std::unique_ptr<Reward> make(const std::string& spec) {
    const std::vector<SpecPart> spec_parts = parse_spec(spec);
    const auto& kinds = reward_kinds();
    for (const SpecPart& p : spec_parts)  // every name checked before a reward model is loaded
      R1_CHECK(std::find(kinds.begin(), kinds.end(), p.name) != kinds.end(), "unknown reward '{}' (known: {})",
               p.name, fmt::join(kinds, ", "));
    // Rule rewards run under the guard's deadline: all together in one worker, or each on its own
    // beside a reward model (which stays in this process, with its device memory).
    const bool with_model = std::any_of(spec_parts.begin(), spec_parts.end(),
                                        [](const SpecPart& p) { return p.name == "model"; });
    auto guard = [&](std::unique_ptr<Reward> r) -> std::unique_ptr<Reward> {
      if (cfg.deadline_s <= 0) return r;
      return std::make_unique<GuardedReward>(std::move(r), GuardOptions{cfg.deadline_s});
    };
    std::vector<CompositeReward::Part> parts;
    for (const SpecPart& p : spec_parts) {
      std::unique_ptr<Reward> r = make_one(p.name);
      parts.push_back({with_model && p.name != "model" ? guard(std::move(r)) : std::move(r), p.weight});
    }
    std::unique_ptr<Reward> whole = parts.size() == 1 && parts[0].weight == 1.0
                                        ? std::move(parts[0].reward)
                                        : std::make_unique<CompositeReward>(std::move(parts));
    return with_model ? std::move(whole) : guard(std::move(whole));
  }
};

}  // namespace

const std::vector<std::string>& reward_kinds() {
  static const std::vector<std::string> kinds = {"math", "format", "language", "code", "model"};
  return kinds;
}

std::vector<std::string> reward_names(const std::string& spec) {
  std::vector<std::string> names;
  for (const SpecPart& p : parse_spec(spec)) names.push_back(p.name);
  return names;
}

std::unique_ptr<Reward> make_reward(const std::string& spec, const RewardConfig& cfg) {
  Factory f{cfg, nullptr};
  return f.make(spec);
}

std::unique_ptr<Reward> make_routed_reward(const std::string& spec, const std::vector<std::string>& routes,
                                           const RewardConfig& cfg) {
  Factory f{cfg, nullptr};
  std::unique_ptr<Reward> fallback = f.make(spec);
  if (routes.empty()) return fallback;
  std::map<std::string, std::unique_ptr<Reward>> by_type;
  for (const std::string& route : routes) {
    const size_t eq = route.find('=');
    R1_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < route.size(),
             "reward route '{}': expected TYPE=SPEC (e.g. chat=model)", route);
    const std::string type = route.substr(0, eq);
    R1_CHECK(!by_type.count(type), "reward route '{}': type '{}' is routed twice", route, type);
    by_type[type] = f.make(route.substr(eq + 1));
  }
  return std::make_unique<RoutedReward>(std::move(fallback), std::move(by_type));
}

}  // namespace r1::reward

#include "eval/majority_vote.h"

#include <unordered_map>

#include "base/error.h"
#include "reward/latex_normalize.h"
#include "reward/math_equivalence.h"
#include "reward/math_extract.h"

namespace r1::eval {

VoteRule parse_vote_rule(const std::string& name) {
  if (name == "string") return VoteRule::String;
  if (name == "verifier") return VoteRule::Verifier;
  fail("unknown vote rule '{}' (string, verifier)", name);
}

std::optional<std::string> vote_answer(const std::string& completion) {
  auto a = reward::extract_answer(completion);
  if (!a) return std::nullopt;
  std::string norm = reward::normalize_latex(a->text);
  if (norm.empty()) return std::nullopt;
  return norm;
}

VoteResult majority_vote(const std::vector<std::optional<std::string>>& answers, VoteRule rule) {
  struct Group {
    size_t first;  // sample index of the group's first answer
    int votes = 0;
  };
  std::vector<Group> groups;                       // in order of first vote
  std::unordered_map<std::string, size_t> group_of;  // answer string -> group: one verifier call per string
  for (size_t i = 0; i < answers.size(); ++i) {
    if (!answers[i]) continue;
    const std::string& a = *answers[i];
    auto known = group_of.find(a);
    size_t g = groups.size();
    if (known != group_of.end()) {
      g = known->second;
    } else {
      if (rule == VoteRule::Verifier)
        for (size_t j = 0; j < groups.size() && g == groups.size(); ++j)
          if (reward::equivalent(*answers[groups[j].first], a).equal) g = j;
      if (g == groups.size()) groups.push_back({i});
      group_of.emplace(a, g);
    }
    groups[g].votes++;
  }
  VoteResult r;
  // Strictly more votes to take the lead: on a tie the earlier group keeps it.
  for (const Group& g : groups)
    if (g.votes > r.votes) r = {int(g.first), *answers[g.first], g.votes};
  return r;
}

}  // namespace r1::eval
